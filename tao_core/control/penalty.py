"""The placement penalty, scored over every candidate node at once.

For task ``t`` on candidate node ``n``::

    cost(t, n) = E(t, n) * T_n / T_ref  +  mu * barrier(P + dP(t, n), P_budget)  +  lambda * D(t, n)

Terms and units:

- ``E(t, n)``, joules: predicted *marginal* energy of running ``t`` on ``n``:

  * dynamic: ``(P_n(after) - P_n(now, on)) * d(t, n) * c(t, n)``, the watts the node's
    model adds at its reserved load plus this task (CPU curve, and GPU idle-to-busy watts
    for each GPU asked for), times the predicted run time ``d`` (s), times the learned
    energy correction ``c`` (measured / predicted for the task's group, 1.0 cold);
  * keep-on: ``P_idle,n * max(0, start + d - max(end_n, start))``, the node's idle
    watts over the extra time the task keeps it on beyond the work already reserved on
    it (0 when it packs inside a busy node's window, the whole run time on an empty node),
    counted only when the controller may power idle nodes off (``scale_down``). ``end_n``
    is when the node's reserved work is expected to end: its latest predicted end, or as
    far ahead as the node has been busy so far when that is later (a stretch of work that
    has lasted ``a`` seconds is expected to last about as long again: run times are
    heavy-tailed, and a node that has been refilled keeps being refilled);
  * wake: for a node that is off, what waking it costs whatever share of it the task
    uses: its boot energy plus its idle watts (above its off watts) over the idle timeout
    it stays on after its work before it is powered off again (the timeout capped at
    ``boot_amortize_s`` when nodes are never powered off).

- ``T_n / T_ref``, dimensionless: node temperature over the reference temperature, both
  kelvin (default 298.15 K; no reading counts as ``T_ref``). Landauer's bound ``k T ln 2``
  per erased bit scales with absolute temperature; hot nodes also leak more and cost
  more to cool.

- ``barrier(P, B) = -log(1 - P / B)``, dimensionless, weighted by ``mu`` joules:
  ``P`` is the predicted cluster IT power after the placement (modeled power corrected by
  the measured/modeled ratio), ``B`` the IT budget less the closed loop's admission margin.
  It is 0 at ``P = 0``, grows without bound as ``P -> B`` and is infinite at or over ``B``,
  so an over-budget placement is never chosen. With no budget the term is 0.

- ``D(t, n)``, seconds: predicted delay, the wait before the task can start on ``n``
  (0 on a node that is on with room; the remaining boot time of a booting node; the boot
  time of a node that is off) plus its predicted run time there. ``lambda`` (J/s) is what
  one second of delay is worth; sweeping it traces the energy-delay Pareto front.

A node is infeasible (cost ``inf``) when it lacks free CPUs or GPUs, is draining, would
exceed its own power cap (modeled watts after the placement, times the calibration factor,
above the cap; or its last measured watts already at the cap), or (when waking is not
allowed) is off.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional

import numpy as np

from tao_core.control.state import DRAINING, OFF, NodeTable
from tao_core.power.curve import CurveTable, segment


def barrier(power_w: np.ndarray | float, budget_w: Optional[float]) -> np.ndarray | float:
    """``-log(1 - P / B)``; ``inf`` where ``P >= B``; 0 everywhere when ``budget_w`` is None."""
    if budget_w is None:
        return np.zeros_like(np.asarray(power_w, dtype=float)) if np.ndim(power_w) else 0.0
    x = np.asarray(power_w, dtype=float) / float(budget_w)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = -np.log1p(-np.minimum(x, 1.0))
    out = np.where(x >= 1.0, np.inf, np.maximum(out, 0.0) if np.ndim(out) else max(float(out), 0.0))
    return float(out) if np.ndim(out) == 0 else out


@dataclass(slots=True)
class Scores:
    """Per-node arrays of one scoring pass (``dp_w`` may be a cached array: do not modify)."""

    cost: np.ndarray      #: penalty, joule-equivalents; inf = infeasible
    energy_j: np.ndarray  #: predicted marginal energy E (before the temperature factor), J
    delay_s: np.ndarray   #: predicted delay D, s
    dp_w: np.ndarray      #: added modeled node watts (uncorrected; inf = infeasible)
    offset: float = 0.0   #: penalty term common to every node, left out of ``cost`` (add it back to report)


_TINY = 1e-300


class Scorer:
    """Scores every node of a :class:`NodeTable` for one task with a few numpy vector ops.

    For each task shape ``(cpus, gpus)`` seen recently it keeps two per-node arrays: the
    watts the task would add to each node's modeled power if the node were on
    (``dyn``, inf where the node lacks room or takes no work) and the watts it would add
    to the node's power now (``dp``; differs from ``dyn`` only for nodes off or booting).
    The controller updates one row of each when a node changes (:meth:`row_changed`), so
    a decision does not redo the power-curve lookups; a decision is then about twenty
    vector operations and one ``argmin``."""

    def __init__(self, nt: NodeTable, curves: CurveTable, *, allow_wake: bool = True, max_shapes: int = 16) -> None:
        self.nt = nt
        self.curves = curves  #: CPU curves in use, one row per node type (shared with the cluster view)
        self.allow_wake = allow_wake
        self.max_shapes = max_shapes
        self._cache: "OrderedDict[tuple[float, float], tuple[np.ndarray, np.ndarray]]" = OrderedDict()
        self._cache_n = -1
        self._scratch_cap = 0

    def invalidate(self) -> None:
        """Forget every cached shape (after nodes are added or removed, or curves refit)."""
        self._cache.clear()

    # ------------------------------------------------------------ cache
    def _build(self, cpus: float, gpus: float) -> tuple[np.ndarray, np.ndarray]:
        nt = self.nt
        pa = self.curves.watts_rows(nt.ti, (nt.used_c + cpus) * nt.inv10)
        pa += nt.gpu_static
        if gpus:
            pa += gpus * nt.gpu_dyn
        feas = (nt.free_c >= cpus - 1e-9) & (nt.free_g >= gpus - 1e-9) & (nt.state != DRAINING)
        if not self.allow_wake:
            feas &= nt.state != OFF
        dyn = np.where(feas, pa - nt.p_on, np.inf)
        dp = np.where(feas, pa - nt.p_node, np.inf)
        return dyn, dp

    def _get(self, cpus: float, gpus: float) -> tuple[np.ndarray, np.ndarray]:
        if self._cache_n != self.nt.n:
            self._cache.clear()
            self._cache_n = self.nt.n
        key = (cpus, gpus)
        ent = self._cache.get(key)
        if ent is None:
            ent = self._build(cpus, gpus)
            self._cache[key] = ent
            if len(self._cache) > self.max_shapes:
                self._cache.popitem(last=False)
        return ent

    def row_changed(self, i: int, state: int, used_c: float, free_c: float, free_g: float, inv10: float,
                    k: int, gpu_static: float, gpu_dyn: float, p_on: float, p_node: float) -> None:
        """Update row ``i`` (a node of type ``k``) of every cached shape after it changed."""
        if not self._cache or self._cache_n != self.nt.n:
            return
        takes = state != DRAINING and (self.allow_wake or state != OFF)
        w = self.curves.w_list
        sl = self.curves.slope_list
        base = 11 * k
        inf = np.inf
        for (cpus, gpus), (dyn, dp) in self._cache.items():
            if takes and free_c >= cpus - 1e-9 and free_g >= gpus - 1e-9:
                j, f = segment((used_c + cpus) * inv10)
                j += base
                pa = w[j] + sl[j] * f + gpu_static
                if gpus:
                    pa += gpus * gpu_dyn
                dyn[i] = pa - p_on
                dp[i] = pa - p_node
            else:
                dyn[i] = inf
                dp[i] = inf

    def _window(self, now_s: float, out: np.ndarray) -> None:
        """Per node, seconds until its reserved work is expected to end (``end_n - now``;
        see the module docstring; -inf without reserved work), into ``out``."""
        nt = self.nt
        np.subtract(now_s, nt.busy_from, out=out)  # how long it has been busy (-inf: not)
        np.maximum(out, nt.busy_until - now_s, out=out)

    def _scratch(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if self._scratch_cap < n:
            cap = max(16, 2 * n)
            self._e = np.empty(cap)
            self._d = np.empty(cap)
            self._x = np.empty(cap)
            self._c = np.empty(cap)
            self._scratch_cap = cap
        return self._e[:n], self._d[:n], self._x[:n], self._c[:n]

    # ------------------------------------------------------------ scoring
    def score(self, cpus: float, gpus: float, dur_k: np.ndarray, edur_k: np.ndarray,
              now_s: float, lambda_j_per_s: float, mu: float,
              power_now_w: float, ratio: float, budget_w: Optional[float], keep_on: bool,
              any_not_on: bool, any_temp: bool, any_cap: bool) -> Scores:
        """Score all nodes for a task of ``cpus`` CPUs and ``gpus`` GPUs.

        ``dur_k``: predicted run time per node type (s); ``edur_k``: run time times the
        learned energy correction per node type (s); ``power_now_w``: predicted cluster IT watts now (modeled x ``ratio``);
        ``budget_w``: IT budget less admission margin (None: no barrier). Over-budget
        nodes get a large finite barrier here; :meth:`choose` makes them infeasible."""
        nt = self.nt
        n = nt.n
        dyn, dp = self._get(cpus, gpus)
        x = self._scratch(n)[2]
        offset = 0.0
        ti = nt.ti
        d = dur_k[ti]       # run time per node, s
        e = edur_k[ti]
        e *= dyn            # dynamic energy, J (inf where infeasible)
        if any_not_on:
            wait = np.maximum(nt.ready_at - now_s, nt.boot_wait)
            np.maximum(wait, 0.0, out=wait)
            if keep_on:
                self._window(now_s, x)
                x -= wait
                np.maximum(x, 0.0, out=x)
                np.subtract(d, x, out=x)
                np.maximum(x, 0.0, out=x)
                x *= nt.idle_w
                e += x
            e += nt.wake_j
            d += wait  # delay = wait + run time
            dpw = dp
        else:
            if keep_on:
                self._window(now_s, x)
                np.maximum(x, 0.0, out=x)
                np.subtract(d, x, out=x)
                np.maximum(x, 0.0, out=x)
                x *= nt.idle_w
                e += x
            dpw = dyn  # for nodes that are on, added watts now == added watts when on
        cost = e * nt.temp_ratio if any_temp else e.copy()
        if lambda_j_per_s:
            np.multiply(d, lambda_j_per_s, out=x)
            cost += x
        if budget_w is not None and ratio > 0 and not budget_w > 0:
            cost.fill(np.inf)  # a budget with no watts left (it underflowed): nothing is admitted
        elif budget_w is not None and ratio > 0:
            # -mu log(1 - (P + r dP)/B) = -mu log(r/B) - mu log((B - P)/r - dP); the first
            # term is the same for every node: it is kept apart in ``offset``. The log
            # argument is floored (fmax also turns a NaN into the floor); choose() makes
            # nodes at or over the budget infeasible.
            np.subtract((budget_w - power_now_w) / ratio, dpw, out=x)
            np.fmax(x, _TINY, out=x)
            np.log(x, out=x)
            x *= -mu
            cost += x
            offset = mu * (math.log(budget_w) - math.log(ratio))
        if any_cap:
            over_cap = (dpw + nt.p_node) * ratio > nt.cap_w
            over_cap |= nt.cap_block != 0  # measured power already at the cap
            cost[over_cap] = np.inf
        return Scores(cost, e, d, dpw, offset)

    def choose(self, sc: Scores, *, power_now_w: float, ratio: float, budget_w: Optional[float]) -> int:
        """Index of the lowest-cost node that is feasible and within the budget (its cost
        is inf when there is none). Over-budget rows of ``sc.cost`` are set to inf."""
        cost = sc.cost
        j = int(cost.argmin())
        if budget_w is None or cost[j] == np.inf:
            return j
        if power_now_w + float(sc.dp_w[j]) * ratio < budget_w:
            return j
        over = sc.dp_w * ratio + power_now_w >= budget_w
        cost[over] = np.inf
        return int(cost.argmin())
