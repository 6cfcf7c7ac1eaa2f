"""Scaling: how many nodes of each type should be on, which to boot, drain or power off.

Demand, in CPUs (GPUs alike):

    need = reserved on nodes that take work + pending + spare
    spare = max(spare_cpus, arrival rate (CPUs/s) x spare_horizon_s)

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
from typing import Sequence

import numpy as np

from tao_core.control.budget import PowerLoop
from tao_core.control.cluster import ClusterView
from tao_core.control.config import ControllerConfig
from tao_core.control.state import BOOTING, DRAINING, OFF, ON
from tao_core.control.types import ScalePlan, TaskRequest

#: at most this many pending tasks are fitted per plan (first-fit decreasing)
_MAX_FIT = 2000
_EPS = 1e-9


def plan(view: ClusterView, cfg: ControllerConfig, loop: PowerLoop, *, now_s: float,
         pending: Sequence[TaskRequest], arrival_rate: tuple[float, float]) -> ScalePlan:
    """Which nodes to boot, power off and drain now (see the module docstring).
    ``arrival_rate``: recent demand in (CPUs/s, GPUs/s). The view is not changed."""
    if len(view) == 0:
        return ScalePlan(reason="no nodes")
    p = _Planner(view, cfg, loop, now_s, pending, arrival_rate)
    p.boot_requested()
    p.boot_fragmented()
    p.boot_on_demand()
    p.shed_over_budget()
    if cfg.scale_down and not p.power_on:
        p.power_off_idle()
        if cfg.consolidate:
            p.drain_one()
    return ScalePlan(power_on=tuple(p.power_on), power_off=tuple(p.power_off), drain=tuple(p.drain),
                     reason="; ".join(p.reasons))


class _Planner:
    """The state of one plan: demand, supply left, predicted power, and the choices so far."""

    def __init__(self, view: ClusterView, cfg: ControllerConfig, loop: PowerLoop, now_s: float,
                 pending: Sequence[TaskRequest], arrival_rate: tuple[float, float]) -> None:
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
        rate_c, rate_g = arrival_rate
        horizon = cfg.spare_horizon_s if cfg.spare_horizon_s is not None else view.max_boot_s()
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
        boot a node that fits each one that fits nowhere."""
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
        for t in tasks:
            c, g = float(t.cpus), float(t.gpus)
            fit = np.flatnonzero((free_c >= c - _EPS) & (free_g >= g - _EPS))
            if fit.size:
                i = int(fit[0])
            else:
                i = self._node_for(c, g)
                if i < 0:
                    continue
                if not self._boot(i):
                    break
                free_c[i] = float(nt.cpus[i])
                free_g[i] = float(nt.gpus[i])
            free_c[i] -= c
            free_g[i] -= g
        if len(self.power_on) > n_before:
            self.reasons.append(f"{len(self.power_on) - n_before} pending task(s) fit no node that is on: "
                                "boot a node that fits")

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
        return self.supply_c < self.boot_c - _EPS, self.supply_g < self.boot_g - _EPS

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
        while the rest covers demand x (1 + scale_down_band); least efficient and hottest first."""
        nt = self.nt
        cfg = self.cfg
        now = self.now_s
        idle_ok = self._idle_mask()
        timeouts = self.view.idle_timeouts_s(cfg.idle_timeout_s, cfg.min_idle_timeout_s)[nt.ti]
        on_idle = idle_ok & (self.st == ON) & ((now - nt.idle_since) >= timeouts) & ((now - nt.on_since) >= cfg.min_on_s)
        if self.shed:
            on_idle[list(self.shed)] = False
        for i in np.flatnonzero(idle_ok & (self.st == DRAINING)).tolist():
            self.power_off.append(nt.ids[i])
        cand = np.flatnonzero(on_idle)
        if cand.size:
            order = cand[np.lexsort((-nt.temp_ratio[cand], -self.eff[cand]))]
            keep_c = self.need_c * (1.0 + cfg.scale_down_band)
            keep_g = self.need_g * (1.0 + cfg.scale_down_band)
            for i in order.tolist():
                c, g = float(nt.cpus[i]), float(nt.gpus[i])
                if self.supply_c - c >= keep_c - _EPS and self.supply_g - g >= keep_g - _EPS:
                    self.power_off.append(nt.ids[i])
                    self.supply_c -= c
                    self.supply_g -= g
        if self.power_off:
            self.reasons.append(f"{len(self.power_off)} idle node(s) past idle timeout, supply covers demand "
                                f"{self.need_c:.1f} CPUs")

    def drain_one(self) -> None:
        """Drain the least efficient lightly used busy node when a more efficient one of its
        kind is on and the rest can hold its work."""
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
