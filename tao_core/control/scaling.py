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

The plan is applied to the controller's view at once (BOOTING, OFF, DRAINING).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

import numpy as np

from tao_core.control.state import BOOTING, DRAINING, OFF, ON
from tao_core.control.types import DecisionEvent, NodeState, ScalePlan, TaskRequest

if TYPE_CHECKING:  # pragma: no cover
    from tao_core.control.controller import Controller


#: at most this many pending tasks are fitted per plan (first-fit decreasing)
_MAX_FIT = 2000


def idle_timeouts(ctl: "Controller") -> np.ndarray:
    """Seconds of idleness before a node of each type is powered off."""
    cfg = ctl.config
    if cfg.idle_timeout_s is not None:
        return np.full(len(ctl.types), float(cfg.idle_timeout_s))
    out = []
    for m in ctl.models:
        saved_w = m.idle_w - m.declared.off_w
        be = m.boot_energy_j / saved_w if saved_w > 0 else math.inf
        out.append(max(be, cfg.min_idle_timeout_s))
    return np.array(out)


def efficiency(ctl: "Controller") -> np.ndarray:
    """Per node, watts per unit of work at full load, times T/T_ref (lower is better)."""
    nt = ctl.nodes
    peak_k = np.array([m.peak_w for m in ctl.models])
    work_k = ctl._cpus_k * ctl._speed_k
    return (peak_k / work_k)[nt.ti] * nt.temp_ratio


def gpu_efficiency(ctl: "Controller") -> np.ndarray:
    """Per node, watts per GPU of work at full load, times T/T_ref; inf for nodes without
    GPUs (lower is better). Ranks GPU nodes when GPU demand drives a boot or a drain."""
    nt = ctl.nodes
    peak_k = np.array([m.peak_w for m in ctl.models])
    work_k = ctl._gpus_k * ctl._speed_k
    per = np.where(work_k > 0, peak_k / np.maximum(work_k, 1e-12), math.inf)
    return per[nt.ti] * nt.temp_ratio


def plan(ctl: "Controller", now_s: float, pending: Sequence[TaskRequest]) -> ScalePlan:
    cfg = ctl.config
    nt = ctl.nodes
    n = nt.n
    if n == 0:
        return ScalePlan(reason="no nodes")
    st = nt.state
    supply_mask = (st == ON) | (st == BOOTING)
    supply_c = float(nt.cpus[supply_mask].sum())
    supply_g = float(nt.gpus[supply_mask].sum())
    used_c = float(nt.used_c[supply_mask].sum())
    used_g = float(nt.used_g[supply_mask].sum())
    pend_c = float(sum(t.cpus for t in pending))
    pend_g = float(sum(t.gpus for t in pending))
    rate_c, rate_g = ctl.arrival_rate(now_s)
    horizon = cfg.spare_horizon_s
    if horizon is None:
        horizon = float(ctl._boot_s_k.max()) if len(ctl._boot_s_k) else 0.0
    spare_c = max(cfg.spare_cpus, rate_c * horizon)
    spare_g = rate_g * horizon
    need_c = used_c + pend_c + spare_c
    need_g = used_g + pend_g + spare_g
    # spare from the arrival rate holds nodes on; it does not boot them (a burst shorter than
    # a boot is over before the node is up). spare_cpus, a fixed floor, does both.
    boot_c = used_c + pend_c + cfg.spare_cpus
    boot_g = used_g + pend_g
    eff = efficiency(ctl)

    power_on: list[str] = []
    power_off: list[str] = []
    drain: list[str] = []
    reasons: list[str] = []

    budget = ctl.loop.effective_budget_w
    ratio = ctl.loop.static_scale
    p_pred = ctl.predicted_power_w()

    # ---- boot nodes that a decision asked to wake (the penalty chose them), and a node for
    # each pending task that fits in no ON/BOOTING node's free room (fragmentation)
    off_all = np.flatnonzero(st == OFF)
    boot_score = np.full(n, math.inf)
    if off_all.size:
        amort = max(cfg.boot_amortize_s, 1e-9)
        boot_score[off_all] = eff[off_all] + np.asarray(ctl._boot_j_k, dtype=float)[nt.ti[off_all]] / amort / (
            nt.cpus[off_all] * ctl._speed_k[nt.ti[off_all]])
    chosen: set[int] = set()
    node_w = np.full(n, math.inf)  # peak watts + boot joules amortised, per OFF node
    if off_all.size:
        node_w[off_all] = (np.array([m.peak_w for m in ctl.models])[nt.ti[off_all]] * nt.temp_ratio[off_all]
                           + np.asarray(ctl._boot_j_k, dtype=float)[nt.ti[off_all]] / amort)

    def _boot(i: int) -> bool:
        nonlocal p_pred, supply_c, supply_g
        if budget is not None:
            add = (ctl.models[int(nt.ti[i])].idle_w - float(nt.p_node[i])) * ratio
            if p_pred + add >= budget:
                reasons.append("boot held back by the power budget")
                return False
            p_pred += add
        chosen.add(i)
        power_on.append(nt.ids[i])
        supply_c += float(nt.cpus[i])
        supply_g += float(nt.gpus[i])
        return True

    for nid in list(ctl._wake_requests):
        r = nt.index.get(nid)
        if r is not None and st[r] == OFF and r not in chosen:
            _boot(int(r))
    if power_on:
        reasons.append(f"wake {len(power_on)} node(s) a decision asked for")
    if pending and off_all.size:
        n_frag = len(power_on)
        room = supply_mask.copy()
        room[list(chosen)] = True
        free_c = np.where(room, nt.cpus - np.where(room, nt.used_c, 0.0), -1.0)
        free_g = np.where(room, nt.gpus - np.where(room, nt.used_g, 0.0), -1.0)
        # biggest first (first-fit decreasing), at most max_pending_fit tasks per plan
        tasks = sorted(pending, key=lambda t: (t.gpus, t.cpus), reverse=True)[:_MAX_FIT]
        for t in tasks:
            c, g = float(t.cpus), float(t.gpus)
            fit = np.flatnonzero((free_c >= c - 1e-9) & (free_g >= g - 1e-9))
            if fit.size:
                i = int(fit[0])
            else:
                cand = (nt.cpus >= c - 1e-9) & (nt.gpus >= g - 1e-9) & np.isfinite(boot_score)
                if chosen:
                    cand[list(chosen)] = False
                if not cand.any():
                    continue
                copies = np.floor(nt.cpus / max(c, 1e-9) + 1e-9) if c > 0 else np.full(n, math.inf)
                if g > 0:
                    copies = np.minimum(copies, np.floor(nt.gpus / g + 1e-9))
                copies = np.maximum(copies, 1.0)
                if not np.isfinite(copies).all():
                    copies = np.where(np.isfinite(copies), copies, 1.0)
                i = int(np.argmin(np.where(cand, node_w / (copies * ctl._speed_k[nt.ti]), math.inf)))
                if not _boot(i):
                    break
                free_c[i] = float(nt.cpus[i])
                free_g[i] = float(nt.gpus[i])
            free_c[i] -= c
            free_g[i] -= g
        if len(power_on) > n_frag:
            reasons.append(f"{len(power_on) - n_frag} pending task(s) fit no node that is on: boot a node that fits")

    # ---- boot on aggregate demand
    if supply_c < boot_c - 1e-9 or supply_g < boot_g - 1e-9:
        off_idx = np.flatnonzero(st == OFF)
        if chosen:
            off_idx = off_idx[~np.isin(off_idx, list(chosen))]
        if off_idx.size:
            score = boot_score[off_idx]
            n_before = len(power_on)
            wr = ctl._wake_requests
            if wr:
                requested = np.zeros(off_idx.size, dtype=bool)
                pos_of = {int(i): p for p, i in enumerate(off_idx.tolist())}
                for nid in wr:
                    r = nt.index.get(nid)
                    if r is not None and r in pos_of:
                        requested[pos_of[r]] = True
            else:
                requested = np.zeros(off_idx.size, dtype=bool)
            gpu_short = supply_g < boot_g - 1e-9
            has_gpu = nt.gpus[off_idx] > 0
            if gpu_short:  # GPU nodes ranked per GPU of work
                gw = nt.gpus[off_idx] * ctl._speed_k[nt.ti[off_idx]]
                score = np.where(has_gpu, node_w[off_idx] / np.maximum(gw, 1e-12), score)
            # sort: requested first; when GPUs are short GPU nodes first; then cheapest
            order = np.lexsort((score, ~has_gpu if gpu_short else np.zeros_like(has_gpu), ~requested))
            for pos in order.tolist():
                if supply_c >= boot_c - 1e-9 and supply_g >= boot_g - 1e-9:
                    break
                i = int(off_idx[pos])
                c_short = supply_c < boot_c - 1e-9
                g_short = supply_g < boot_g - 1e-9
                if not ((c_short and nt.cpus[i] > 0) or (g_short and nt.gpus[i] > 0)):
                    continue
                if not _boot(i):
                    break
            if len(power_on) > n_before:
                reasons.append(f"demand {boot_c:.1f} CPUs / {boot_g:.1f} GPUs above supply: boot {len(power_on) - n_before}")

    # ---- over the power budget: shed idle nodes at once, biggest idle draw first
    idle_ok = (nt.n_tasks == 0) & (nt.used_c <= 0) & (nt.used_g <= 0)
    shed: set[int] = set()
    if cfg.scale_down and budget is not None and p_pred >= budget:
        cand = np.flatnonzero(idle_ok & (st == ON))
        if cand.size:
            save = (nt.p_node[cand] - ctl._off_w_k[nt.ti[cand]]) * ctl.loop.static_scale
            order = cand[np.lexsort((-nt.temp_ratio[cand], -save))]
            for i in order.tolist():
                if p_pred < budget:
                    break
                s_w = (float(nt.p_node[i]) - float(ctl._off_w_k[nt.ti[i]])) * ctl.loop.static_scale
                if s_w <= 0:
                    continue
                shed.add(i)
                power_off.append(nt.ids[i])
                p_pred -= s_w
                supply_c -= float(nt.cpus[i])
                supply_g -= float(nt.gpus[i])
            if shed:
                reasons.append(f"predicted power over the budget: {len(shed)} idle node(s) off")

    # ---- power off idle nodes (never with reserved work)
    if cfg.scale_down and not power_on:
        timeouts = idle_timeouts(ctl)[nt.ti]
        on_idle = idle_ok & (st == ON) & ((now_s - nt.idle_since) >= timeouts) & ((now_s - nt.on_since) >= cfg.min_on_s)
        if shed:
            on_idle[list(shed)] = False
        drained = idle_ok & (st == DRAINING)
        for i in np.flatnonzero(drained).tolist():
            power_off.append(nt.ids[i])
        cand = np.flatnonzero(on_idle)
        if cand.size:
            # least efficient first, then hottest
            order = cand[np.lexsort((-nt.temp_ratio[cand], -eff[cand]))]
            keep_c = need_c * (1.0 + cfg.scale_down_band)
            keep_g = need_g * (1.0 + cfg.scale_down_band)
            for i in order.tolist():
                c, g = float(nt.cpus[i]), float(nt.gpus[i])
                if supply_c - c >= keep_c - 1e-9 and supply_g - g >= keep_g - 1e-9:
                    power_off.append(nt.ids[i])
                    supply_c -= c
                    supply_g -= g
        if power_off:
            reasons.append(f"{len(power_off)} idle node(s) past idle timeout, supply covers demand {need_c:.1f} CPUs")

        # ---- consolidate: drain one lightly used inefficient node
        if cfg.consolidate:
            busy = np.flatnonzero((st == ON) & (nt.n_tasks > 0))
            if busy.size > 1:
                is_g = nt.gpus > 0
                eff_dom = np.where(is_g, gpu_efficiency(ctl), eff)
                # rank within a class: GPU nodes by W/GPU, CPU-only nodes by W/CPU, each
                # against the best node of its class that is on
                on = st == ON
                best_g = float(eff_dom[on & is_g].min()) if (on & is_g).any() else math.inf
                best_c = float(eff_dom[on & ~is_g].min()) if (on & ~is_g).any() else math.inf
                rank = eff_dom / np.where(is_g, best_g, best_c)
                worst = busy[np.argmax(rank[busy])]
                c, g = float(nt.cpus[worst]), float(nt.gpus[worst])
                others = (st == ON) & (np.arange(n) != worst)
                others_free_c = float(nt.free_c[others].sum())
                others_free_g = float(nt.free_g[others].sum())
                same = others & (is_g == is_g[worst])
                better = bool((eff_dom[same] < eff_dom[worst]).any())
                if (better and supply_c - c >= need_c - 1e-9 and supply_g - g >= need_g - 1e-9
                        and others_free_c >= float(nt.used_c[worst]) + pend_c
                        and others_free_g >= float(nt.used_g[worst]) + pend_g
                        and nt.used_c[worst] <= 0.5 * c):
                    drain.append(nt.ids[worst])
                    reasons.append(f"drain {nt.ids[worst]}: least efficient, its work fits elsewhere")

    # wake requests are hints for this plan only: a task still waiting asks again
    ctl._wake_requests.clear()

    # ---- apply to own view, emit events
    sink = ctl.event_sink if cfg.emit_events else None
    for nid in power_on:
        ctl.set_node_state(nid, NodeState.BOOTING, now_s=now_s)
    for nid in power_off:
        ctl.set_node_state(nid, NodeState.OFF, now_s=now_s)
    for nid in drain:
        ctl.set_node_state(nid, NodeState.DRAINING, now_s=now_s)
    reason = "; ".join(reasons)
    if sink is not None:
        budget_state = ctl.budget_state()
        for kind, ids in (("scale-up", power_on), ("scale-down", power_off), ("drain", drain)):
            for nid in ids:
                ctl._emit(DecisionEvent(t_s=now_s, kind=kind, subject=nid, node_id=nid, reason=reason,
                                        budget=budget_state))
    return ScalePlan(power_on=tuple(power_on), power_off=tuple(power_off), drain=tuple(drain), reason=reason)
