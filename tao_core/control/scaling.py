"""Scaling: how many nodes of each type should be on, which to boot, drain or power off.

Demand, in CPUs (GPUs alike):

    need = reserved on nodes that take work + pending + spare
    spare = max(spare_cpus, arrival rate (CPUs/s) x mean of min(run time, spare_horizon_s))

The arrival-rate spare is Little's law: the CPUs the arrivals of one horizon hold at once
are the rate times how long each holds its CPUs within it, and no task holds them longer
than it runs (short tasks arriving during a long boot free their CPUs for the next ones).
The mean is over the latest finished tasks (``TaskPredictor.held_s``); before any finished
each arrival counts for the whole horizon.

Supply is the capacity of nodes ON or BOOTING (a DRAINING node is not supply). The
arrival-rate spare holds nodes on; boots follow reserved + pending + spare_cpus only.

- Boot: (1) nodes a decision asked to wake since the last plan, even when supply covers
  demand (otherwise the task would be deferred to them forever); (2) pending tasks, biggest
  first, are fitted into the free room of ON/BOOTING nodes (first fit); a task that fits
  nowhere boots the OFF node that fits it with the fewest
  ``(peak W x T/T_ref + boot J / boot_amortize_s)`` per copy of the task it holds
  (fragmentation: total free room may suffice while no single node has enough);
  (3) when supply < need: nodes that are off, cheapest first by that numerator /
  ``(cpus x speed)``; when GPUs are short GPU nodes first, by it / ``(gpus x speed)``.
  Under a power budget a boot is skipped when the node's idle watts would not fit in the
  headroom.
- Shed, when the predicted cluster power is at or over the (effective) power budget: idle
  nodes that are on are powered off at once, biggest idle draw first, until it is under.
- Power off, when supply stays >= need x (1 + ``scale_down_band``) without the node: ON (or DRAINING) nodes with no
  reserved work, idle for at least the idle timeout (default: the node type's break-even
  time ``boot J / (idle W - off W)``) and on for at least ``min_on_s``; least efficient and
  hottest first. A node with running or reserved work is never powered off.
- Predictive (``predictive_scaling``, once the arrival forecast has history): capacity is
  held for the work the forecast says will arrive, a newsvendor choice per node type.
  Keeping an idle node over its break-even time ``H`` costs ``(idle W - off W) x H`` (its
  boot energy, by the definition of ``H``); missing it when work comes costs its boot energy
  plus ``lambda`` x its boot time x the tasks it holds at once (they wait for it). So
  capacity is held for the arrivals of the next ``H`` up to the quantile
  ``q = 1 - keep / (keep + miss)`` of the forecast (:mod:`tao_core.control.forecast`): an idle
  node is powered off at once, without waiting out a timeout, when the rest covers reserved
  + pending + that quantile (the forecast says the quiet lasts longer than break-even); and
  nodes are booted ahead when supply is short of reserved + pending + the same quantile of
  the arrivals within the longest boot time plus a mean run time (a forecast burst finds
  nodes up, without nodes idling for it before).
- Drain (``consolidate``), at most one node per call: the least efficient busy node (GPU
  nodes ranked per GPU, others per CPU, each against the best of its kind that is on) whose
  work the other nodes that are on can hold, when supply stays >= need without it and a
  more efficient type is among them. It takes no new work and is powered off once empty.

:func:`plan` reads the cluster through :class:`~tao_core.control.cluster.ClusterView` and
the power loop, and returns a :class:`ScalePlan`; the controller applies it to its view
(BOOTING, OFF, DRAINING) and sends the events.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from dataclasses import dataclass
from typing import Optional

from tao_core.control.budget import PowerLoop
from tao_core.control.cluster import ClusterView
from tao_core.control.config import ControllerConfig
from tao_core.control.forecast import ArrivalForecast
from tao_core.control.state import BOOTING, DRAINING, OFF, ON
from tao_core.control.types import ScalePlan, TaskRequest

#: at most this many pending tasks are fitted per plan (first-fit decreasing)
_MAX_FIT = 2000
_EPS = 1e-9
#: the forecast is used once it holds this many arrivals and this many of its windows
_MIN_ARRIVALS = 20
#: a plan's reason contains this when idle nodes stayed on only for forecast arrivals
HELD_BY_FORECAST = "idle node(s) held for forecast arrivals"
_MIN_WINDOWS = 10


class EarlyOffRecord:
    """The track record of powering idle nodes off before their idle timeout, per node
    type. An early power-off was wrong when a node of its type had to boot within its
    break-even time afterwards (the idle energy it saved is less than the boot). It pays
    while the share of wrong ones stays below ``keep / (keep + miss)``, the newsvendor
    threshold of :meth:`_Planner._fractile`'s costs; the share is exponentially weighted
    (``halflife`` decisions) and starts from ``prior`` right ones."""

    def __init__(self, n_types: int, *, halflife: float = 20.0, prior: float = 3.0) -> None:
        self.decay = 0.5 ** (1.0 / halflife)
        self.prior = prior
        self.wrong = np.zeros(n_types)
        self.total = np.zeros(n_types)
        self._recent: list[list[float]] = [[] for _ in range(n_types)]  # early power-off times per type

    def add_type(self) -> None:
        self.wrong = np.append(self.wrong, 0.0)
        self.total = np.append(self.total, 0.0)
        self._recent.append([])

    def powered_off(self, k: int, now_s: float) -> None:
        self._recent[k].append(now_s)

    def booted(self, k: int, now_s: float, horizon_s: float) -> None:
        """A node of type ``k`` boots: the early power-offs of the last ``horizon_s`` were wrong."""
        self._settle(k, now_s, horizon_s)
        if self._recent[k]:
            self._recent[k].pop()  # the latest one is what this boot undoes
            self._count(k, 1.0)

    def _settle(self, k: int, now_s: float, horizon_s: float) -> None:
        """Early power-offs older than ``horizon_s`` with no boot since were right."""
        kept = []
        for t in self._recent[k]:
            if now_s - t > horizon_s:
                self._count(k, 0.0)
            else:
                kept.append(t)
        self._recent[k] = kept

    def _count(self, k: int, wrong: float) -> None:
        self.wrong[k] = self.wrong[k] * self.decay + wrong
        self.total[k] = self.total[k] * self.decay + 1.0

    def ok(self, now_s: float, horizons_s: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
        """Per type, whether early power-offs have paid so far."""
        for k in range(len(self._recent)):
            self._settle(k, now_s, float(horizons_s[k]))
        share = self.wrong / (self.total + self.prior)
        return share < thresholds


def early_off_thresholds(view: ClusterView, cfg: ControllerConfig, demand: "Demand") -> np.ndarray:
    """Per node type, the share of wrong early power-offs above which they cost more than
    they save: ``keep / (keep + miss)`` with the costs of :meth:`_Planner._fractile`."""
    out = np.empty(len(view.types))
    for k, t in enumerate(view.types):
        boot_j = float(view.type_boot_j[k])
        per = min(t.cpus / max(demand.mean_cpus, _EPS),
                  t.gpus / demand.mean_gpus if t.gpus and demand.mean_gpus > 0 else math.inf)
        miss = boot_j + cfg.lambda_j_per_s * t.boot_s * max(per, 1.0)
        keep = max(boot_j, _EPS)
        out[k] = keep / (keep + miss)
    return out


def idle_timeouts(view: ClusterView, cfg: ControllerConfig, demand: "Demand") -> np.ndarray:
    """Per node type, seconds an idle node stays on before it is powered off:
    ``idle_timeout_s`` when given; else the break-even of what a later boot would cost,
    ``(boot J + lambda x boot s x tasks) / (idle W - off W)``, ``tasks`` = the tasks a node
    holds at once (its CPUs, or GPUs, over the mean a task asks), so that the idle energy
    spent waiting equals what powering it off and booting it again for the next work would
    cost, the waits of that work at ``lambda_j_per_s`` included (the deterministic
    ski-rental rule); at least ``min_idle_timeout_s``."""
    base = view.idle_timeouts_s(cfg.idle_timeout_s, cfg.min_idle_timeout_s)
    if cfg.idle_timeout_s is not None or cfg.lambda_j_per_s <= 0:
        return base
    saved = view.type_idle_w - view.type_off_w
    per_c = view.type_cpus / max(demand.mean_cpus, _EPS)
    per_g = np.where(view.type_gpus > 0, view.type_gpus / demand.mean_gpus, math.inf) if demand.mean_gpus > 0 \
        else np.full(len(view.types), math.inf)
    tasks = np.maximum(np.minimum(per_c, per_g), 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        extra = np.where(saved > 0, cfg.lambda_j_per_s * view.type_boot_s * tasks / np.where(saved > 0, saved, 1.0), 0.0)
    return np.maximum(base + extra, cfg.min_idle_timeout_s)


@dataclass(frozen=True)
class Demand:
    """What the controller knows of demand to come: the recent arrival rate (CPUs/s,
    GPUs/s), the arrival forecast (None: none), the mean CPUs and GPUs one task asks, the
    mean run time at speed 1.0 (s), and per node type whether powering idle nodes off before
    their timeout has paid so far (:class:`EarlyOffRecord`)."""

    arrival_rate: tuple[float, float] = (0.0, 0.0)
    forecast: Optional[ArrivalForecast] = None
    mean_cpus: float = 1.0
    mean_gpus: float = 0.0
    mean_run_s: float = 10.0
    early_off_ok: Optional[np.ndarray] = None  #: per node type: early power-offs have paid (None: all)
    early_off_record: Optional["EarlyOffRecord"] = None  #: where this plan's early power-offs are counted
    #: horizon (s) -> mean of min(run time, horizon) over recent tasks (None: min(horizon, mean_run_s))
    held_s: Optional[Callable[[float], float]] = None

    def held_within(self, horizon_s: float) -> float:
        """How long a task arriving now holds its CPUs within the next ``horizon_s``, on
        average (s): the mean of ``min(run time, horizon_s)`` over recent tasks."""
        if self.held_s is not None:
            return self.held_s(horizon_s)
        return min(horizon_s, max(self.mean_run_s, 0.0))


def plan(view: ClusterView, cfg: ControllerConfig, loop: PowerLoop, *, now_s: float,
         pending: Sequence[TaskRequest], demand: Demand) -> ScalePlan:
    """Which nodes to boot, power off and drain now (see the module docstring), for the
    demand to come (``demand``: arrival rate, forecast, mean run time). The view is not
    changed."""
    if len(view) == 0:
        return ScalePlan(reason="no nodes")
    p = _Planner(view, cfg, loop, now_s, pending, demand)
    p.boot_requested()
    p.boot_fragmented()
    p.boot_on_demand()
    if p.predictive:
        p.boot_ahead()
    p.shed_over_budget()
    if cfg.scale_down and not p.power_on:
        p.power_off_idle()
        if cfg.consolidate and not (cfg.pack_efficient and pending):
            p.drain_one()  # (packing drains no capacity while tasks wait for it)
    if demand.early_off_record is not None:
        _record_early_offs(demand.early_off_record, view, cfg, p, now_s)
    return ScalePlan(power_on=tuple(p.power_on), power_off=tuple(p.power_off), drain=tuple(p.drain),
                     reason="; ".join(p.reasons))


def _record_early_offs(rec: EarlyOffRecord, view: ClusterView, cfg: ControllerConfig, p: "_Planner",
                       now_s: float) -> None:
    """Add a plan's early power-offs and its boots to the track record (a boot of a type
    within its break-even time of an early power-off of that type says it was wrong)."""
    nt = view.nodes
    be = view.idle_timeouts_s(None, cfg.min_idle_timeout_s)
    for nid in p.early_off:
        rec.powered_off(int(nt.ti[nt.index[nid]]), now_s)
    for nid in p.power_on:
        k = int(nt.ti[nt.index[nid]])
        rec.booted(k, now_s, float(be[k]))


class _Planner:
    """The state of one plan: demand, supply left, predicted power, and the choices so far."""

    def __init__(self, view: ClusterView, cfg: ControllerConfig, loop: PowerLoop, now_s: float,
                 pending: Sequence[TaskRequest], demand: Demand) -> None:
        self.view = view
        self.cfg = cfg
        self.loop = loop
        self.now_s = now_s
        self.pending = pending
        nt = self.nt = view.nodes
        self.n = nt.n
        self.st = nt.state
        self.supply_c, self.supply_g, used_c, used_g = view.supply()
        self.used_c, self.used_g = used_c, used_g
        self.pend_c = float(sum(t.cpus for t in pending))
        self.pend_g = float(sum(t.gpus for t in pending))
        self.demand = demand
        fc = demand.forecast
        self.predictive = bool(cfg.predictive_scaling and fc is not None and fc.tasks >= _MIN_ARRIVALS
                               and fc.scored["all"] >= _MIN_WINDOWS - _EPS)
        self._levels: dict[str, tuple[float, float]] = {}
        rate_c, rate_g = demand.arrival_rate
        horizon = cfg.spare_horizon_s if cfg.spare_horizon_s is not None else view.max_boot_s()
        horizon = demand.held_within(horizon)  # Little's law (module doc)
        self.need_c = used_c + self.pend_c + max(cfg.spare_cpus, rate_c * horizon)
        self.need_g = used_g + self.pend_g + rate_g * horizon
        # spare from the arrival rate holds nodes on; it does not boot them (a burst shorter
        # than a boot is over before the node is up). spare_cpus, a fixed floor, does both.
        self.boot_c = used_c + self.pend_c + cfg.spare_cpus
        self.boot_g = used_g + self.pend_g
        self.eff = view.efficiency()
        self.speed = view.speed()
        self.budget = loop.effective_budget_w
        self.p_pred = loop.predict_w(view.modeled_static_w, view.modeled_w - view.modeled_static_w)
        self.power_on: list[str] = []
        self.power_off: list[str] = []
        self.drain: list[str] = []
        self.reasons: list[str] = []
        self.chosen: set[int] = set()
        self.queued_c = 0.0  #: CPUs of pending tasks left to wait (size_boots), not booted for
        self.early_off: list[str] = []  #: nodes powered off by the forecast before their idle timeout
        self.shed: set[int] = set()
        self.off_all = np.flatnonzero(self.st == OFF)
        self._costs_done = False

    def _boot_costs(self) -> None:
        """Per OFF node: ``node_w`` = peak W x T/T_ref + boot J / boot_amortize_s, and the
        boot score = efficiency + amortised boot J per unit of work (inf elsewhere); computed
        once, when a boot is first considered."""
        if self._costs_done:
            return
        self._costs_done = True
        nt = self.nt
        n = self.n
        off = self.off_all
        self.boot_score = np.full(n, math.inf)
        self.node_w = np.full(n, math.inf)
        if not off.size:
            return
        amort = max(self.cfg.boot_amortize_s, 1e-9)
        boot_j = self.view.boot_energy_j()[off]
        self.boot_score[off] = self.eff[off] + boot_j / amort / (nt.cpus[off] * self.speed[off])
        self.node_w[off] = self.view.peak_w()[off] * nt.temp_ratio[off] + boot_j / amort

    # ------------------------------------------------------------------ boot
    def _boot(self, i: int) -> bool:
        """Boot row ``i`` unless its idle watts would not fit under the budget."""
        nt = self.nt
        if self.budget is not None:
            add = (float(nt.idle_w[i]) - float(nt.p_node[i])) * self.loop.static_scale
            if self.p_pred + add >= self.budget:
                self.reasons.append("boot held back by the power budget")
                return False
            self.p_pred += add
        self.chosen.add(i)
        self.power_on.append(nt.ids[i])
        self.supply_c += float(nt.cpus[i])
        self.supply_g += float(nt.gpus[i])
        return True

    def boot_requested(self) -> None:
        """(1) Boot the nodes decisions asked to wake (the penalty chose them)."""
        index = self.nt.index
        for nid in self.view.wake_requests():
            r = index.get(nid)
            if r is not None and self.st[r] == OFF and r not in self.chosen:
                self._boot(int(r))
        if self.power_on:
            self.reasons.append(f"wake {len(self.power_on)} node(s) a decision asked for")

    def boot_fragmented(self) -> None:
        """(2) Fit pending tasks, biggest first, into the free room of nodes ON or BOOTING;
        boot a node that fits each one that fits nowhere (``size_boots``: for CPU-only tasks
        only while the waits it saves, at lambda, outweigh what waking it costs)."""
        if not self.pending or not self.off_all.size:
            return
        self._boot_costs()
        nt = self.nt
        n_before = len(self.power_on)
        room = (self.st == ON) | (self.st == BOOTING)
        room[list(self.chosen)] = True
        free_c = np.where(room, nt.cpus - np.where(room, nt.used_c, 0.0), -1.0)
        free_g = np.where(room, nt.gpus - np.where(room, nt.used_g, 0.0), -1.0)
        tasks = sorted(self.pending, key=lambda t: (t.gpus, t.cpus), reverse=True)[:_MAX_FIT]
        left_n, left_c = self._queue_left(tasks, free_c, free_g)
        for t in tasks:
            c, g = float(t.cpus), float(t.gpus)
            fit = np.flatnonzero((free_c >= c - _EPS) & (free_g >= g - _EPS))
            if fit.size:
                i = int(fit[0])
            else:
                i = self._node_for(c, g)
                if i < 0:
                    continue
                if g <= 0 and self.cfg.size_boots:
                    # CPUs that will serve it once their work ends: nodes on, booting or chosen that can hold it
                    serving = (free_c >= 0.0) & (nt.cpus >= c - _EPS)
                    if not self._worth_booting(i, serving, left_n, left_c):
                        self.queued_c += c  # waits for capacity to free: not demand to boot for
                        continue
                if not self._boot(i):
                    break
                free_c[i] = float(nt.cpus[i])
                free_g[i] = float(nt.gpus[i])
            if g <= 0 and not fit.size:
                left_n -= 1
                left_c -= c
            free_c[i] -= c
            free_g[i] -= g
        if len(self.power_on) > n_before:
            self.reasons.append(f"{len(self.power_on) - n_before} pending task(s) fit no node that is on: "
                                "boot a node that fits")

    @staticmethod
    def _queue_left(tasks: Sequence[TaskRequest], free_c: np.ndarray, free_g: np.ndarray) -> tuple[int, float]:
        """How many CPU-only pending tasks, and how many CPUs they ask, fit no free room now
        (first fit, biggest first, on copies of the free room)."""
        fc, fg = free_c.copy(), free_g.copy()
        n, cpus = 0, 0.0
        for t in tasks:
            c, g = float(t.cpus), float(t.gpus)
            fit = np.flatnonzero((fc >= c - _EPS) & (fg >= g - _EPS))
            if fit.size:
                fc[fit[0]] -= c
                fg[fit[0]] -= g
            elif g <= 0:
                n += 1
                cpus += c
        return n, cpus

    def _worth_booting(self, i: int, serving: np.ndarray, left_n: int, left_c: float) -> bool:
        """Whether booting row ``i`` for the CPU-only tasks that fit nowhere (``left_n`` of
        them, ``left_c`` CPUs) saves more, in waiting at lambda and in energy, than waking it
        costs. Fluid queue: the tasks' work (CPUs x the mean run time) is served by the
        ``capacity`` CPUs of the ``serving`` rows (on, booting or chosen), so their mean wait
        is about work / (2 x capacity); one more node of ``c`` CPUs saves ``left_n x work / 2
        x (1/capacity - 1/(capacity + c))`` task-seconds. Energy: a queue says demand is above
        what is on, so a node more efficient than the serving ones (their watts per unit of
        work at full load, weighted by CPUs) runs its CPUs' worth of that demand over the
        ``boot_amortize_s`` it is expected to stay useful at its own watts instead of theirs."""
        nt = self.nt
        capacity = float(nt.cpus[serving].sum())
        if capacity <= _EPS or left_n <= 0:
            return True
        c = float(nt.cpus[i])
        work = left_c * self.demand.mean_run_s
        saved_s = left_n * work / 2.0 * (1.0 / capacity - 1.0 / (capacity + c))
        eff = self._cpu_eff()
        serve_eff = float((eff[serving] * nt.cpus[serving]).sum()) / capacity
        gain_j = max(0.0, serve_eff - float(eff[i])) * c * float(self.speed[i]) * self.cfg.boot_amortize_s
        k = int(nt.ti[i])
        return self.cfg.lambda_j_per_s * saved_s + gain_j > float(self.view.type_wake_j[k])

    def _cpu_eff(self) -> np.ndarray:
        """Per node, watts of its CPU curve at full load per unit of CPU work (CPUs x speed)
        x T/T_ref: what CPU-only work costs there (a GPU node's GPUs left out)."""
        got = getattr(self, "_cpu_eff_cache", None)
        if got is None:
            nt = self.nt
            full = self.view.curves.watts_rows(nt.ti, np.full(self.n, 10.0))
            got = self._cpu_eff_cache = full / (nt.cpus * self.speed) * nt.temp_ratio
        return got

    def _node_for(self, c: float, g: float) -> int:
        """The OFF node, not chosen yet, that holds a task of ``c`` CPUs and ``g`` GPUs at
        the fewest ``node_w`` per copy of the task it holds (-1 when none fits)."""
        nt = self.nt
        cand = (nt.cpus >= c - _EPS) & (nt.gpus >= g - _EPS) & np.isfinite(self.boot_score)
        if self.chosen:
            cand[list(self.chosen)] = False
        if not cand.any():
            return -1
        copies = np.floor(nt.cpus / max(c, _EPS) + _EPS) if c > 0 else np.full(self.n, math.inf)
        if g > 0:
            copies = np.minimum(copies, np.floor(nt.gpus / g + _EPS))
        copies = np.maximum(copies, 1.0)
        copies = np.where(np.isfinite(copies), copies, 1.0)
        return int(np.argmin(np.where(cand, self.node_w / (copies * self.speed), math.inf)))

    def _short(self) -> tuple[bool, bool]:
        return self.supply_c < self.boot_c - self.queued_c - _EPS, self.supply_g < self.boot_g - _EPS

    def boot_on_demand(self) -> None:
        """(3) When supply is short of demand, boot the cheapest nodes that are off (those a
        decision asked for first; GPU nodes first, per GPU, when GPUs are short)."""
        c_short, g_short = self._short()
        if not (c_short or g_short):
            return
        off_idx = self.off_all
        if self.chosen:
            off_idx = off_idx[~np.isin(off_idx, list(self.chosen))]
        if not off_idx.size:
            return
        self._boot_costs()
        n_before = len(self.power_on)
        for i in self._boot_order(off_idx, g_short).tolist():
            c_short, g_short = self._short()
            if not (c_short or g_short):
                break
            nt = self.nt
            if not ((c_short and nt.cpus[i] > 0) or (g_short and nt.gpus[i] > 0)):
                continue
            if not self._boot(int(i)):
                break
        if len(self.power_on) > n_before:
            self.reasons.append(f"demand {self.boot_c:.1f} CPUs / {self.boot_g:.1f} GPUs above supply: "
                                f"boot {len(self.power_on) - n_before}")

    def _boot_order(self, off_idx: np.ndarray, gpu_short: bool) -> np.ndarray:
        """``off_idx`` sorted: requested first; when GPUs are short GPU nodes first; then cheapest."""
        nt = self.nt
        score = self.boot_score[off_idx]
        pos_of = {int(i): p for p, i in enumerate(off_idx.tolist())}
        requested = np.zeros(off_idx.size, dtype=bool)
        for nid in self.view.wake_requests():
            p = pos_of.get(nt.index.get(nid, -1))
            if p is not None:
                requested[p] = True
        has_gpu = nt.gpus[off_idx] > 0
        if gpu_short:  # GPU nodes ranked per GPU of work
            gw = nt.gpus[off_idx] * self.speed[off_idx]
            score = np.where(has_gpu, self.node_w[off_idx] / np.maximum(gw, 1e-12), score)
        order = np.lexsort((score, ~has_gpu if gpu_short else np.zeros_like(has_gpu), ~requested))
        return off_idx[order]

    # ------------------------------------------------------------------ forecast
    def _fractile(self, k: int) -> float:
        """The newsvendor quantile for node type ``k``: 1 - keep / (keep + miss), keep = its
        boot energy (the idle energy of one break-even time), miss = boot energy + lambda x
        boot time x the tasks it holds at once (see the module docstring)."""
        v = self.view
        t = v.types[k]
        boot_j = float(v.type_boot_j[k])
        d = self.demand
        per = min(t.cpus / max(d.mean_cpus, _EPS), t.gpus / d.mean_gpus if t.gpus and d.mean_gpus > 0 else math.inf)
        miss = boot_j + self.cfg.lambda_j_per_s * t.boot_s * max(per, 1.0)
        keep = max(boot_j, _EPS)
        return 1.0 - keep / (keep + miss)

    def _marginal_types(self) -> tuple[int, Optional[int]]:
        """The node types the next boot would be of: the cheapest per unit of CPU work, and
        the cheapest per GPU among types with GPUs (None without)."""
        v = self.view
        amort = max(self.cfg.boot_amortize_s, 1e-9)
        w = v.type_peak_w + v.type_boot_j / amort
        cpu = int(np.argmin(w / (v.type_cpus * v.type_speed)))
        has_g = v.type_gpus > 0
        gpu = int(np.argmin(np.where(has_g, w / np.maximum(v.type_gpus * v.type_speed, 1e-12), math.inf))) \
            if has_g.any() else None
        return cpu, gpu

    def level(self, what: str) -> tuple[float, float]:
        """(CPUs, GPUs) of forecast arrivals to hold capacity for: ``what`` "keep" (within
        the break-even time of the type the next boot would be of) or "boot" (within the
        longest boot time plus a mean run time). One level for the whole cluster, so a node
        booted ahead is not powered off again by the same forecast. Booting ahead needs a
        forecast that knows when work comes (the phase of the hour or day has the best track
        record), counts what is still to come within the longest boot time (a node booted
        now is ready for it; what of the forecast burst already came is pending work), and is
        0 from persistence or the unconditional spread: a burst that has begun is pending
        work already, and one that has not cannot be timed."""
        got = self._levels.get(what)
        if got is None:
            fc = self.demand.forecast
            assert fc is not None
            method = fc.method()
            if what == "boot" and method not in ("hourly", "daily"):
                self._levels[what] = (0.0, 0.0)
                return 0.0, 0.0
            v = self.view
            out = []
            for k, res in zip(self._marginal_types(), (0, 1)):
                if k is None:
                    out.append(0.0)
                    continue
                if what == "keep":
                    be = float(v.idle_timeouts_s(None, self.cfg.min_idle_timeout_s)[k])
                    window = be if math.isfinite(be) else float(v.type_boot_s[k])
                    out.append(fc.quantile(self.now_s, max(window, 1.0), self._fractile(k), method)[res])
                else:  # what a node booted now is ready for, net of what of it already came
                    out.append(fc.remaining(self.now_s, max(v.max_boot_s(), 1.0), self._fractile(k), method)[res])
            if self.cfg.size_boots:
                out[0] *= self._sized_share(self._marginal_types()[0])
            got = self._levels[what] = (out[0], out[1])
        return got

    def _sized_share(self, k: int) -> float:
        """With ``size_boots``: the share of a forecast burst of CPU work worth capacity, by
        the fluid queue of :meth:`_worth_booting`: ``x`` CPUs of tasks arriving at once are
        best served by ``C = x sqrt(lambda run c / (2 J cpus))`` CPUs (``run`` the mean run
        time, ``c`` the CPUs of a node of type ``k``, ``J`` what waking it costs, ``cpus`` the
        mean CPUs of a task), where one more node saves no more waiting than it costs."""
        v = self.view
        d = self.demand
        j = float(v.type_wake_j[k])
        if j <= 0:
            return 1.0
        x = self.cfg.lambda_j_per_s * d.mean_run_s * float(v.type_cpus[k]) / (2.0 * j * max(d.mean_cpus, _EPS))
        return min(1.0, math.sqrt(x))

    def boot_ahead(self) -> None:
        """Boot the cheapest nodes that are off while supply is short of reserved + pending +
        the forecast arrivals within a boot time plus a run time (see the module docstring)."""
        off_idx = self.off_all
        if self.chosen:
            off_idx = off_idx[~np.isin(off_idx, list(self.chosen))]
        if not off_idx.size:
            return
        xc, xg = self.level("boot")
        if xc <= 0 and xg <= 0:
            return
        self._boot_costs()
        n_before = len(self.power_on)
        nt = self.nt
        base_c = self.used_c + self.pend_c - self.queued_c  # tasks left to wait are not booted for here either
        base_g = self.used_g + self.pend_g
        for i in self._boot_order(off_idx, False).tolist():
            short_c = self.supply_c < base_c + xc - _EPS
            short_g = self.supply_g < base_g + xg - _EPS
            if not (short_c and nt.cpus[i] > 0 or short_g and nt.gpus[i] > 0):
                continue
            if not self._boot(int(i)):
                break
        if len(self.power_on) > n_before:
            self.reasons.append(f"forecast arrivals above supply: boot {len(self.power_on) - n_before} ahead")

    # ------------------------------------------------------------------ power off
    def _idle_mask(self) -> np.ndarray:
        nt = self.nt
        return (nt.n_tasks == 0) & (nt.used_c <= 0) & (nt.used_g <= 0)

    def shed_over_budget(self) -> None:
        """Over the power budget: power idle nodes off at once, biggest idle draw first."""
        if not (self.cfg.scale_down and self.budget is not None and self.p_pred >= self.budget):
            return
        nt = self.nt
        cand = np.flatnonzero(self._idle_mask() & (self.st == ON))
        if not cand.size:
            return
        a = self.loop.static_scale
        save = (nt.p_node - self.view.off_w()) * a
        order = cand[np.lexsort((-nt.temp_ratio[cand], -save[cand]))]
        for i in order.tolist():
            if self.p_pred < self.budget:
                break
            if save[i] <= 0:
                continue
            self.shed.add(i)
            self.power_off.append(nt.ids[i])
            self.p_pred -= float(save[i])
            self.supply_c -= float(nt.cpus[i])
            self.supply_g -= float(nt.gpus[i])
        if self.shed:
            self.reasons.append(f"predicted power over the budget: {len(self.shed)} idle node(s) off")

    def power_off_idle(self) -> None:
        """Power off drained nodes that emptied, and idle nodes past their idle timeout
        while the rest covers demand x (1 + scale_down_band); least efficient and hottest
        first. Predictive: idle nodes at once while the rest covers reserved + pending + the
        forecast arrivals of their break-even time."""
        if self.predictive:
            self._power_off_forecast()
            return
        nt = self.nt
        cfg = self.cfg
        now = self.now_s
        idle_ok = self._idle_mask()
        timeouts = idle_timeouts(self.view, cfg, self.demand)[nt.ti]
        on_idle = idle_ok & (self.st == ON) & ((now - nt.idle_since) >= timeouts) & ((now - nt.on_since) >= cfg.min_on_s)
        if self.shed:
            on_idle[list(self.shed)] = False
        for i in np.flatnonzero(idle_ok & (self.st == DRAINING)).tolist():
            self.power_off.append(nt.ids[i])
        cand = np.flatnonzero(on_idle)
        if cand.size:
            self._switch_off(cand, self.need_c * (1.0 + cfg.scale_down_band), self.need_g * (1.0 + cfg.scale_down_band))
        if self.power_off:
            self.reasons.append(f"{len(self.power_off)} idle node(s) past idle timeout, supply covers demand "
                                f"{self.need_c:.1f} CPUs")

    def _switch_off(self, cand: np.ndarray, keep_c: float, keep_g: float) -> None:
        """Power off idle candidates ``cand`` while the supply left covers ``keep_c`` CPUs and
        ``keep_g`` GPUs: least efficient and hottest first, or (``pack_efficient``) keeping
        the nodes that would carry that demand on the fewest watts."""
        nt = self.nt
        if self.cfg.pack_efficient:
            keep = self._cheapest_cover(cand, keep_c, keep_g)
            for i in cand.tolist():
                if i not in keep:
                    self.power_off.append(nt.ids[i])
                    self.supply_c -= float(nt.cpus[i])
                    self.supply_g -= float(nt.gpus[i])
            return
        order = cand[np.lexsort((-nt.temp_ratio[cand], -self.eff[cand]))]
        for i in order.tolist():
            c, g = float(nt.cpus[i]), float(nt.gpus[i])
            if self.supply_c - c >= keep_c - _EPS and self.supply_g - g >= keep_g - _EPS:
                self.power_off.append(nt.ids[i])
                self.supply_c -= c
                self.supply_g -= g

    def _cheapest_cover(self, cand: np.ndarray, keep_c: float, keep_g: float) -> set[int]:
        """Which of the idle candidates to keep on so that supply covers ``keep_c`` CPUs and
        ``keep_g`` GPUs: greedily the node that, with the cheapest single node for what it
        leaves uncovered, carries the demand on the fewest watts (x T/T_ref), each judged on
        its curve at the load it would run at (a small demand stays on a small node, a
        large one on the nodes efficient at full load)."""
        nt = self.nt
        v = self.view
        need_c = keep_c - (self.supply_c - float(nt.cpus[cand].sum()))
        need_g = keep_g - (self.supply_g - float(nt.gpus[cand].sum()))
        kept: set[int] = set()
        left = cand.tolist()
        while (need_c > _EPS or need_g > _EPS) and left:
            watts = {i: self._cover_w(i, need_c, need_g) for i in left}
            best, best_total = -1, math.inf
            for i in left:
                if watts[i] == math.inf:
                    continue  # GPUs are short: only GPU nodes help
                # this node plus the cheapest single node for what it leaves (one step ahead)
                rc, rg = need_c - float(nt.cpus[i]), need_g - float(nt.gpus[i])
                rest = 0.0 if rc <= _EPS and rg <= _EPS else min(
                    (self._cover_w(j, rc, rg) for j in left if j != i), default=math.inf)
                if watts[i] + rest < best_total:
                    best, best_total = i, watts[i] + rest
            if best < 0:
                best = min(left, key=lambda i: watts[i])
                if watts[best] == math.inf:
                    break
            kept.add(best)
            left.remove(best)
            need_c -= float(nt.cpus[best])
            need_g -= float(nt.gpus[best])
        return kept

    def _cover_w(self, i: int, need_c: float, need_g: float) -> float:
        """Watts (x T/T_ref) row ``i`` would draw carrying as much of ``need_c`` CPUs and
        ``need_g`` GPUs as it holds, on its curve; inf when GPUs are needed and it has none."""
        nt = self.nt
        c, g = float(nt.cpus[i]), float(nt.gpus[i])
        tc, tg = min(max(need_c, 0.0), c), min(max(need_g, 0.0), g)
        if need_g > _EPS and tg <= 0:
            return math.inf
        w = self.view.curves.watts(int(nt.ti[i]), tc / c * 10.0) + float(nt.gpu_static[i]) + tg * float(nt.gpu_dyn[i])
        return w * float(nt.temp_ratio[i])

    def _power_off_forecast(self) -> None:
        nt = self.nt
        idle_ok = self._idle_mask()
        for i in np.flatnonzero(idle_ok & (self.st == DRAINING)).tolist():
            self.power_off.append(nt.ids[i])
        on_idle = idle_ok & (self.st == ON) & ((self.now_s - nt.on_since) >= self.cfg.min_on_s)
        trust = self.demand.early_off_ok
        if trust is not None and not trust.all():
            # a type whose early power-offs were too often followed by a boot of that type
            # within its break-even time waits out its idle timeout again
            timeouts = idle_timeouts(self.view, self.cfg, self.demand)[nt.ti]
            on_idle &= trust[nt.ti] | ((self.now_s - nt.idle_since) >= timeouts)
        if self.shed:
            on_idle[list(self.shed)] = False
        cand = np.flatnonzero(on_idle)
        n_before = len(self.power_off)
        if cand.size:
            # held for the larger of the two, so a node booted ahead is not powered off again
            xc, xg = (max(a, b) for a, b in zip(self.level("keep"), self.level("boot")))
            self._switch_off(cand, self.used_c + self.pend_c + xc, self.used_g + self.pend_g + xg)
            timeouts = idle_timeouts(self.view, self.cfg, self.demand)
            for nid in self.power_off[n_before:]:
                i = nt.index[nid]
                if self.now_s - float(nt.idle_since[i]) < float(timeouts[int(nt.ti[i])]):
                    self.early_off.append(nid)
            held = cand.size - (len(self.power_off) - n_before)
            if held > 0 and (xc > 0 or xg > 0):
                self.reasons.append(f"{held} {HELD_BY_FORECAST}")
        if len(self.power_off) > n_before:
            self.reasons.append(f"{len(self.power_off) - n_before} idle node(s) off: the forecast arrivals of their "
                                "break-even time fit the rest")

    def drain_one(self) -> None:
        """Drain the least efficient lightly used busy node when a more efficient one of its
        kind is on and the rest can hold its work (``pack_efficient``: the busy node whose
        load the others carry on the fewest added watts, when that saves watts)."""
        if self.cfg.pack_efficient:
            self._drain_by_curve()
            return
        nt = self.nt
        st = self.st
        busy = (st == ON) & (nt.n_tasks > 0)
        if np.count_nonzero(busy) <= 1 or not (busy & (nt.used_c <= 0.5 * nt.cpus)).any():
            return  # a drain needs another busy node and a lightly used candidate
        busy = np.flatnonzero(busy)
        is_g = nt.gpus > 0
        eff_dom = np.where(is_g, self.view.gpu_efficiency(), self.eff)
        # rank within a class: GPU nodes by W/GPU, CPU-only nodes by W/CPU, each against the
        # best node of its class that is on
        on = st == ON
        best_g = float(eff_dom[on & is_g].min()) if (on & is_g).any() else math.inf
        best_c = float(eff_dom[on & ~is_g].min()) if (on & ~is_g).any() else math.inf
        rank = eff_dom / np.where(is_g, best_g, best_c)
        worst = busy[np.argmax(rank[busy])]
        c, g = float(nt.cpus[worst]), float(nt.gpus[worst])
        others = on & (np.arange(self.n) != worst)
        better = bool((eff_dom[others & (is_g == is_g[worst])] < eff_dom[worst]).any())
        fits = (float(nt.free_c[others].sum()) >= float(nt.used_c[worst]) + self.pend_c
                and float(nt.free_g[others].sum()) >= float(nt.used_g[worst]) + self.pend_g)
        covered = self.supply_c - c >= self.need_c - _EPS and self.supply_g - g >= self.need_g - _EPS
        if better and covered and fits and nt.used_c[worst] <= 0.5 * c:
            self.drain.append(nt.ids[worst])
            self.reasons.append(f"drain {nt.ids[worst]}: least efficient, its work fits elsewhere")

    def _drain_by_curve(self, candidates: int = 4, min_saving: float = 0.05) -> None:
        """Drain one busy node running below its curve's most efficient utilization when its
        load, carried by the other nodes that are on (filled where each added CPU costs the
        fewest watts on its curve, each up to its own most efficient utilization), draws
        fewer watts than the node does now less its off watts, by at least ``min_saving`` of
        its draw; the nodes tried are the ``candidates`` with the most watts per reserved CPU
        among those whose reserved work is expected to end within their break-even time."""
        nt = self.nt
        on = self.st == ON
        busy = np.flatnonzero(on & (nt.n_tasks > 0))
        if busy.size < 1 or np.count_nonzero(on) < 2:
            return
        # a node whose reserved work runs past its break-even time stays on for it anyway:
        # draining it would only leave its free room unused meanwhile
        be = self.view.idle_timeouts_s(None, self.cfg.min_idle_timeout_s)[nt.ti[busy]]
        busy = busy[self.view.expected_end(self.now_s)[busy] - self.now_s <= be]
        if busy.size < 1:
            return
        per = nt.p_on[busy] * nt.temp_ratio[busy] / np.maximum(nt.used_c[busy], _EPS)
        order = busy[np.argsort(-per)][:candidates]
        if self.predictive:
            xc, xg = (max(a, b) for a, b in zip(self.level("keep"), self.level("boot")))
            need_c, need_g = self.used_c + self.pend_c + xc, self.used_g + self.pend_g + xg
        else:
            need_c, need_g = self.need_c, self.need_g
        spare_c = max(0.0, need_c - self.used_c - self.pend_c)
        spare_g = max(0.0, need_g - self.used_g - self.pend_g)
        off_w = self.view.off_w()
        best, best_save = -1, 0.0
        best_u = self.view.type_best_u
        for j in order.tolist():
            c, g = float(nt.cpus[j]), float(nt.gpus[j])
            if float(nt.used_c[j]) >= best_u[int(nt.ti[j])] * c - _EPS:
                continue  # at or above its most efficient load: the curve says keep it busy
            if self.supply_c - c < need_c - _EPS or self.supply_g - g < need_g - _EPS:
                continue
            # the room left on the others after its load must still hold the spare demand
            # (the arrivals expected before a boot could help), so the drain queues nothing
            others = on & (np.arange(self.n) != j)
            room_c = float(nt.free_c[others].sum()) - float(nt.used_c[j]) - self.pend_c
            room_g = float(nt.free_g[others].sum()) - float(nt.used_g[j]) - self.pend_g
            if room_c < spare_c - _EPS or room_g < spare_g - _EPS:
                continue
            added = self._absorb(j, float(nt.used_c[j]) + self.pend_c, float(nt.used_g[j]) + self.pend_g)
            if added is None:
                continue
            save = (float(nt.p_on[j]) - float(off_w[j])) * float(nt.temp_ratio[j]) - added
            if save > min_saving * float(nt.p_on[j]) and save > best_save:
                best, best_save = j, save
        if best >= 0:
            self.drain.append(nt.ids[best])
            self.reasons.append(f"drain {nt.ids[best]}: the others carry its load on {best_save:.0f} W less")

    def _absorb(self, j: int, cpus: float, gpus: float) -> Optional[float]:
        """Watts (x T/T_ref) the nodes that are on, other than ``j``, add to carry ``cpus``
        CPUs and ``gpus`` GPUs, filling first those where a CPU costs the fewest added watts;
        None when they cannot hold it."""
        nt = self.nt
        others = np.flatnonzero((self.st == ON) & (np.arange(self.n) != j))
        # room up to each node's most efficient utilization: consolidating must not push the
        # others past it (nor leave no headroom for the work still to come)
        best = self.view.type_best_u[nt.ti[others]] * nt.cpus[others]
        free_c = np.maximum(0.0, np.minimum(nt.free_c[others], best - nt.used_c[others]))
        free_g = nt.free_g[others]
        if float(free_c.sum()) < cpus - _EPS or float(free_g.sum()) < gpus - _EPS:
            return None
        take = np.minimum(free_c, cpus)
        x10 = (nt.used_c[others] + take) * nt.inv10[others]
        add = self.view.curves.watts_rows(nt.ti[others], x10) + nt.gpu_static[others] - nt.p_on[others]
        rate = np.where(take > _EPS, add / np.maximum(take, _EPS), math.inf) * nt.temp_ratio[others]
        total, left_c = 0.0, cpus
        for r in np.argsort(rate).tolist():
            if left_c <= _EPS:
                break
            t = min(float(free_c[r]), left_c)
            total += float(rate[r]) * t
            left_c -= t
        if gpus > 0:
            gd = nt.gpu_dyn[others]
            total += gpus * float(np.min(np.where(free_g > _EPS, gd, math.inf)))
        return total
