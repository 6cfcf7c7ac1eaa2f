"""Metrics of a simulated run and the physical lower bound on the energy of a workload.

Units: joules, watts, seconds.

- ``energy_j``: facility energy = IT energy x PUE.
- ``it_energy_j`` = ``dynamic_energy_j`` + ``idle_energy_j`` + ``boot_energy_j`` +
  ``off_energy_j`` (dynamic: above each ON node's idle draw; idle: the idle draw of ON
  nodes; boot: nodes booting; off: standby draw of nodes that are off).
- ``task_energy_j``: task work as :mod:`tao_core.accounting.figures` defines it, the energy
  attributed to tasks (each node's dynamic energy by CPU share plus its idle draw for the
  share of its CPUs the tasks held), IT joules.
- ``overhead_share`` and ``inverted``: :func:`tao_core.accounting.figures.overhead_share` and
  :func:`~tao_core.accounting.figures.is_inverted` of task work and facility energy, the one
  definition the ledger reports use: 1 - task work / facility energy, inverted above 0.5
  (more of the energy went to keeping the cluster up than to the work).
- ``service_wait_p95_s``: the p95 wait of the tasks without a deadline (of every task when
  none has one): a task with a deadline said it may wait; its service is the deadline,
  counted in ``deadlines_missed``.
- ``lower_bound_j``: every CPU-second of work (cpus x duration at speed 1.0) done at the
  lowest watts per CPU-second found over the cluster's node types and the utilization
  breakpoints above zero, min over types and u in {0.1, ..., 1.0} of
  P(u) / (u x cpus x speed); every GPU-second at the lowest busy watts per GPU over speed;
  no idle, no boot; times the PUE. No schedule of that work on that cluster can use less.
  Where GPU power limits are modelled (:mod:`tao_core.sim.gpu_limits`), a GPU-second counts
  at the least energy per unit of work over the limits of its group's measured profile.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

from tao_core.accounting.figures import is_inverted, overhead_share
from tao_core.carbon import CarbonSignal, emissions_of_power_g
from tao_core.power.curve import BREAKPOINTS
from tao_core.sim.engine import SimResult
from tao_core.sim.gpu_limits import GpuLimitModel
from tao_core.sim.model import ClusterSpec, Workload


def cpu_watts_per_cpu_second(cluster: ClusterSpec) -> float:
    """Lowest watts per CPU-second of speed-1.0 work over the cluster's node types."""
    used = {n.node_type for n in cluster.nodes}
    best = math.inf
    for name in used:
        nt = cluster.node_types[name]
        for u, p in zip(BREAKPOINTS[1:], nt.power_curve.points_w[1:]):
            best = min(best, p / (u * nt.cpus * nt.speed))
    return best


def _gpu_joules(cluster: ClusterSpec, workload: Workload, gpu_limits: Optional[GpuLimitModel]) -> float:
    """Least joules for the workload's GPU-seconds: per task group, the fewest watts per
    GPU-second of speed-1.0 work over the node types with GPUs, a type with measured power
    limits at its least energy per unit of work over them."""
    used = {n.node_type for n in cluster.nodes}
    gtypes = [cluster.node_types[n] for n in used if cluster.node_types[n].gpus > 0]
    per_group: dict[str, float] = {}
    for t in workload.tasks:
        if t.gpus > 0:
            per_group[t.group] = per_group.get(t.group, 0.0) + t.gpus * t.duration_s
    total = 0.0
    for group, gs in per_group.items():
        best = math.inf
        for nt in gtypes:
            w = nt.gpu_busy_w
            prof = gpu_limits.profile(nt.name, group) if gpu_limits is not None else None
            if prof is not None:
                w = min(w, max(nt.gpu_idle_w, nt.gpu_max_w * min(t * p for t, p in zip(prof.time_factor, prof.power_factor))))
            best = min(best, w / nt.speed)
        total += gs * best
    return total


def gpu_watts_per_gpu_second(cluster: ClusterSpec) -> float:
    """Lowest watts per GPU-second of speed-1.0 work over the node types with GPUs (inf if none).

    GPU power is linear from idle to busy, so watts per unit of GPU work are lowest fully
    busy: the busy draw of one GPU over the node's speed."""
    used = {n.node_type for n in cluster.nodes}
    vals = [cluster.node_types[n].gpu_busy_w / cluster.node_types[n].speed for n in used if cluster.node_types[n].gpus > 0]
    return min(vals) if vals else math.inf


def lower_bound_j(cluster: ClusterSpec, workload: Workload, gpu_limits: Any = "measured") -> float:
    """Facility joules no schedule can beat (see the module docstring). GPU work counts at
    the least energy per unit of work over the measured power limits (``gpu_limits``: a
    :class:`GpuLimitModel`; "measured": the one the simulator uses; None: none)."""
    e = workload.cpu_seconds * cpu_watts_per_cpu_second(cluster)
    if workload.gpu_seconds > 0:
        model = GpuLimitModel(cluster.node_types) if gpu_limits == "measured" else gpu_limits
        e += _gpu_joules(cluster, workload, model)
    return e * cluster.pue


def _arr(a: Any) -> np.ndarray:
    return np.frombuffer(a, dtype=float) if len(a) else np.zeros(0)


def _wait_figures(start: np.ndarray, end: np.ndarray, submit: np.ndarray) -> dict[str, Any]:
    """Makespan and waits (s) of the tasks that ran; ``tasks_completed``."""
    done = ~np.isnan(end)
    waits = (start - submit)[~np.isnan(start)]
    completed = int(done.sum())
    return {
        "makespan_s": float(end[done].max() - submit.min()) if completed else 0.0,
        "wait_mean_s": float(waits.mean()) if waits.size else 0.0,
        "wait_p95_s": float(np.percentile(waits, 95)) if waits.size else 0.0,
        "wait_max_s": float(waits.max()) if waits.size else 0.0,
        "tasks_completed": completed,
    }


def _deadline_figures(workload: Workload, start: np.ndarray, end: np.ndarray, submit: np.ndarray,
                      p95_s: float) -> dict[str, Any]:
    """``service_wait_p95_s`` (the p95 wait of the tasks without a deadline) and, where tasks
    have deadlines, how many there are and how many were missed."""
    deadline = np.fromiter((t.deadline_s if t.deadline_s is not None else np.nan for t in workload.tasks),
                           dtype=float, count=len(workload.tasks))
    has_dl = ~np.isnan(deadline)
    if not has_dl.any():
        return {"service_wait_p95_s": p95_s}
    late = has_dl & (np.isnan(end) | (end > deadline + 1e-9))
    urgent = (start - submit)[~np.isnan(start) & ~has_dl]
    return {"deadlines_total": int(has_dl.sum()), "deadlines_missed": int(late.sum()),
            "service_wait_p95_s": float(np.percentile(urgent, 95)) if urgent.size else 0.0}


def _refusals(res: SimResult, n_tasks: int, completed: int) -> dict[str, Any]:
    """Actions the simulator refused and tasks that never ran (empty when none)."""
    out: dict[str, Any] = {}
    if res.invalid:
        out["refused_actions"] = len(res.invalid)
        out["refused_examples"] = res.invalid[:5]
    missed = n_tasks - completed - res.rejected
    if completed < n_tasks and missed > 0:
        out["tasks_never_run"] = missed
    return out


def _emissions(res: SimResult, cluster: ClusterSpec, carbon: CarbonSignal) -> dict[str, Any]:
    if not len(res.timeline_t):
        raise ValueError("emissions need the power timeline: run with record_timeline=True")
    grams = emissions_of_power_g(carbon, np.frombuffer(res.timeline_t, dtype=float),
                                 np.frombuffer(res.timeline_w, dtype=float) * cluster.pue, res.end_s)
    return {"emissions_kg_co2e": grams / 1000.0, "carbon_source": carbon.source}


def summarize(res: SimResult, cluster: ClusterSpec, workload: Workload, bound_j: Optional[float] = None,
              carbon: Optional[CarbonSignal] = None) -> dict[str, Any]:
    """The per-policy JSON record of ``tao simulate``. With a ``carbon`` signal (on the
    simulation's clock) it also holds the emissions: facility power integrated against the
    signal's intensity, step by step."""
    dyn = sum(n.dynamic_j for n in res.nodes)
    idle = sum(n.idle_j for n in res.nodes)
    boot = sum(n.boot_j for n in res.nodes)
    off = sum(n.off_j for n in res.nodes)
    it = dyn + idle + boot + off
    fac = it * cluster.pue
    task_j = float(_arr(res.attributed_task_j).sum())
    start, end = _arr(res.start_s), _arr(res.end_s_task)
    submit = np.fromiter((t.submit_s for t in workload.tasks), dtype=float, count=len(workload.tasks))
    waits = _wait_figures(start, end, submit)
    share = overhead_share(task_j, fac)
    out: dict[str, Any] = {
        "energy_j": fac,
        "it_energy_j": it,
        "dynamic_energy_j": dyn,
        "idle_energy_j": idle,
        "boot_energy_j": boot,
        "off_energy_j": off,
        "task_energy_j": task_j,
        **waits,
        "peak_power_w": res.peak_power_w,
        "budget_w": res.budget_w,
        "budget_violation_s": res.budget_violation_s,
        "budget_excess_j": res.budget_excess_j,
        "overhead_share": share if share is not None else 0.0,
        "tasks_total": len(workload.tasks),
        "tasks_rejected": res.rejected,
        "boots": sum(n.boots for n in res.nodes),
        "gpu_limited_tasks": res.gpu_limited_tasks,
        "source": "modeled",
        "method": "discrete-event simulation; node power from declared power curves, integrated exactly",
        "sim_wall_s": res.wall_s,
    }
    out.update(_refusals(res, len(workload.tasks), waits["tasks_completed"]))
    out.update(_deadline_figures(workload, start, end, submit, waits["wait_p95_s"]))
    if carbon is not None:
        out.update(_emissions(res, cluster, carbon))
    out["inverted"] = bool(is_inverted(share))
    if bound_j is not None and bound_j > 0:
        out["bound_ratio"] = fac / bound_j
    return out


def implausible(name: str, summary: dict[str, Any], res: SimResult, cluster: ClusterSpec, workload: Workload,
                bound_j: float) -> Optional[str]:
    """Why the run of policy ``name`` cannot be reported (None when it can): a figure that is
    not finite, tasks that never ran, energy below the lower bound, or a task on a node
    without the CPUs or GPUs it holds."""
    for key, v in summary.items():
        if isinstance(v, float) and not math.isfinite(v):
            return f"policy {name}: {key} is {v}; the inputs drive the model out of range"
    total = len(workload.tasks)
    never = total - summary["tasks_completed"] - summary["tasks_rejected"]
    if never > 0:
        why = (f"; the power budget {res.budget_w:g} W may be too small to run them: raise --budget-w"
               if res.budget_w is not None else "; lower --lambda or check the workload")
        return f"policy {name}: {never:,} of {total:,} tasks never ran, so its energy is not that of the workload{why}"
    if summary["tasks_completed"] == total and summary["energy_j"] < bound_j * (1.0 - 1e-9):
        return (f"policy {name}: {summary['energy_j']:.6g} J is below the lower bound {bound_j:.6g} J, which no schedule "
                "can beat; this is a defect of the simulation")
    node = np.asarray(res.node_of_task)
    ran = node >= 0
    if ran.any():
        types = [cluster.node_types[n.node_type] for n in cluster.nodes]
        cap_c = np.array([t.cpus for t in types], dtype=float)[node[ran]]
        cap_g = np.array([t.gpus for t in types], dtype=float)[node[ran]]
        need_c = np.fromiter((t.cpus for t in workload.tasks), dtype=float, count=total)[ran]
        need_g = np.fromiter((t.gpus for t in workload.tasks), dtype=float, count=total)[ran]
        bad = (need_c > cap_c + 1e-9) | (need_g > cap_g + 1e-9)
        if bad.any():
            k = int(np.flatnonzero(ran)[int(np.argmax(bad))])
            t, n = workload.tasks[k], cluster.nodes[int(node[k])]
            nt = cluster.node_types[n.node_type]
            return (f"policy {name}: task {t.task_id[:40]!r} ({t.cpus:g} CPUs, {t.gpus:g} GPUs) ran on {n.node_id}, "
                    f"which has {nt.cpus:g} CPUs and {nt.gpus} GPUs; this is a defect of the policy")
    return None
