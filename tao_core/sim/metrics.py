"""Metrics of a simulated run and the physical lower bound on the energy of a workload.

Units: joules, watts, seconds.

- ``energy_j``: facility energy = IT energy x PUE.
- ``it_energy_j`` = ``dynamic_energy_j`` + ``idle_energy_j`` + ``boot_energy_j`` +
  ``off_energy_j`` (dynamic: above each ON node's idle draw; idle: the idle draw of ON
  nodes; boot: nodes booting; off: standby draw of nodes that are off).
- ``overhead_share``: share of facility energy not spent on task work, 1 - dynamic / facility
  (idle, boot, off and the PUE overhead). Above 0.5 the run is flagged ``inverted``: most of
  the energy goes to keeping the cluster up rather than to the work.
- ``lower_bound_j``: every CPU-second of work (cpus x duration at speed 1.0) done at the
  lowest watts per CPU-second found over the cluster's node types and the utilization
  breakpoints above zero, min over types and u in {0.1, ..., 1.0} of
  P(u) / (u x cpus x speed); every GPU-second at the lowest busy watts per GPU over speed;
  no idle, no boot; times the PUE. No schedule of that work on that cluster can use less.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

from tao_core.carbon import CarbonSignal, emissions_of_power_g
from tao_core.power.curve import BREAKPOINTS
from tao_core.sim.engine import SimResult
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


def gpu_watts_per_gpu_second(cluster: ClusterSpec) -> float:
    """Lowest watts per GPU-second of speed-1.0 work over the node types with GPUs (inf if none).

    GPU power is linear from idle to busy, so watts per unit of GPU work are lowest fully
    busy: the busy draw of one GPU over the node's speed."""
    used = {n.node_type for n in cluster.nodes}
    vals = [cluster.node_types[n].gpu_busy_w / cluster.node_types[n].speed for n in used if cluster.node_types[n].gpus > 0]
    return min(vals) if vals else math.inf


def lower_bound_j(cluster: ClusterSpec, workload: Workload) -> float:
    """Facility joules no schedule can beat (see the module docstring)."""
    cpu_s = workload.cpu_seconds
    gpu_s = workload.gpu_seconds
    e = cpu_s * cpu_watts_per_cpu_second(cluster)
    if gpu_s > 0:
        e += gpu_s * gpu_watts_per_gpu_second(cluster)
    return e * cluster.pue


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
    start = np.frombuffer(res.start_s, dtype=float) if len(res.start_s) else np.zeros(0)
    end = np.frombuffer(res.end_s_task, dtype=float) if len(res.end_s_task) else np.zeros(0)
    submit = np.fromiter((t.submit_s for t in workload.tasks), dtype=float, count=len(workload.tasks))
    done = ~np.isnan(end)
    ran = ~np.isnan(start)
    waits = (start - submit)[ran]
    completed = int(done.sum())
    out: dict[str, Any] = {
        "energy_j": fac,
        "it_energy_j": it,
        "dynamic_energy_j": dyn,
        "idle_energy_j": idle,
        "boot_energy_j": boot,
        "off_energy_j": off,
        "makespan_s": float(end[done].max() - submit.min()) if completed else 0.0,
        "wait_mean_s": float(waits.mean()) if waits.size else 0.0,
        "wait_p95_s": float(np.percentile(waits, 95)) if waits.size else 0.0,
        "wait_max_s": float(waits.max()) if waits.size else 0.0,
        "peak_power_w": res.peak_power_w,
        "budget_w": res.budget_w,
        "budget_violation_s": res.budget_violation_s,
        "budget_excess_j": res.budget_excess_j,
        "overhead_share": (1.0 - dyn / fac) if fac > 0 else 0.0,
        "tasks_completed": completed,
        "tasks_total": len(workload.tasks),
        "tasks_rejected": res.rejected,
        "boots": sum(n.boots for n in res.nodes),
        "source": "modeled",
        "method": "discrete-event simulation; node power from declared power curves, integrated exactly",
        "sim_wall_s": res.wall_s,
    }
    if res.invalid:
        out["refused_actions"] = len(res.invalid)
        out["refused_examples"] = res.invalid[:5]
    if completed < len(workload.tasks):
        missed = len(workload.tasks) - completed - res.rejected
        if missed > 0:
            out["tasks_never_run"] = missed
    deadline = np.fromiter((t.deadline_s if t.deadline_s is not None else np.nan for t in workload.tasks),
                           dtype=float, count=len(workload.tasks))
    has_dl = ~np.isnan(deadline)
    if has_dl.any():
        late = has_dl & (np.isnan(end) | (end > deadline + 1e-9))
        out["deadlines_total"] = int(has_dl.sum())
        out["deadlines_missed"] = int(late.sum())
    if carbon is not None:
        if not len(res.timeline_t):
            raise ValueError("emissions need the power timeline: run with record_timeline=True")
        grams = emissions_of_power_g(carbon, np.frombuffer(res.timeline_t, dtype=float),
                                     np.frombuffer(res.timeline_w, dtype=float) * cluster.pue, res.end_s)
        out["emissions_kg_co2e"] = grams / 1000.0
        out["carbon_source"] = carbon.source
    out["inverted"] = out["overhead_share"] > 0.5
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
