"""What the live autoscaler benchmarks (``ray_live.py``, ``dask_live.py``) share: the phased
workload, the boot and off model every variant is charged with, the lower bound and the table.

Workload: busy phases (one task every ``busy_gap_s``) and quiet phases (one every
``quiet_gap_s``), ``busy, quiet, busy, ..., busy`` with ``cycles`` quiet phases, so that an
autoscaler's idle removal has time to act in every quiet phase.

Energy of a variant, the same for all (every figure modeled): each node's curve at the CPU
utilization of its own processes while it is up (metered), plus ``boot_s x boot_w`` joules
for every node started in the window (the node type's boot energy; the engine's own start-up
of a local node takes a few seconds of real time, the model's boot time is charged as energy
only), plus ``off_w`` for every slot of the pool (a node the cluster may run) while it is
not up. Window: first submission to last result.

Lower bound: the work alone at its best node type (each task's CPU seconds at that type's
lowest dynamic joules per CPU second: the minimum over the curve's points of
``(P(u) - P(0)) / (u x cpus)``), plus the idle watts of the nodes that must be on: at every
instant ``max(min_nodes, ceil(running tasks' CPUs / cpus))`` nodes of that type; the least
over node types. No boot and no off energy.

Units: seconds (wall clock), joules, watts.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from tao_core.control.types import NodeType

#: seconds one node takes to boot in the model (charged at the type's boot watts: its idle draw)
BOOT_S = 30.0
#: watts a node draws while off (standby: BMC, fans stopped)
OFF_W = 5.0


@dataclass(frozen=True)
class Phases:
    """The phased workload (seconds)."""

    busy_s: float
    quiet_s: float
    cycles: int
    busy_gap_s: float
    quiet_gap_s: float

    def arrivals(self) -> list[float]:
        """Submission offsets from the first one (s)."""
        out: list[float] = []
        t = 0.0
        for k in range(2 * self.cycles + 1):
            length, gap = (self.busy_s, self.busy_gap_s) if k % 2 == 0 else (self.quiet_s, self.quiet_gap_s)
            n = max(1, int(length / gap))
            out.extend(t + i * gap for i in range(n))
            t += length
        return out

    def to_dict(self) -> dict:
        return {"busy_s": self.busy_s, "quiet_s": self.quiet_s, "cycles": self.cycles,
                "busy_gap_s": self.busy_gap_s, "quiet_gap_s": self.quiet_gap_s,
                "tasks": len(self.arrivals())}


@dataclass(frozen=True)
class NodeRun:
    """One node (or worker) of a run: its type, when it was up (wall s; ``left_s`` None:
    still up at the end) and the metered joules while up inside the window."""

    name: str
    node_type: str
    joined_s: float
    left_s: float | None
    metered_j: float


@dataclass(frozen=True)
class TaskRun:
    """One task: its start and end (wall s), CPUs it held, CPU seconds it used."""

    start_s: float
    end_s: float
    cpus: float
    cpu_s: float


def charged_energy(nodes: Sequence[NodeRun], types: Mapping[str, NodeType], pool: Mapping[str, int],
                   t0: float, t1: float) -> dict:
    """The energy of one run in ``[t0, t1]``: metered + boot + off (see the module doc)."""
    metered = sum(n.metered_j for n in nodes)
    boots = [n for n in nodes if t0 <= n.joined_s <= t1]
    boot_j = sum(types[n.node_type].boot_energy_j for n in boots)
    off_j = 0.0
    for typ, slots in pool.items():
        up = sum(max(0.0, min(n.left_s if n.left_s is not None else t1, t1) - max(n.joined_s, t0))
                 for n in nodes if n.node_type == typ)
        off_j += types[typ].off_w * max(0.0, slots * (t1 - t0) - up)
    return {"energy_j": metered + boot_j + off_j, "metered_j": metered, "boot_j": boot_j, "off_j": off_j,
            "boots": len(boots), "node_seconds_up": sum(
                max(0.0, min(n.left_s if n.left_s is not None else t1, t1) - max(n.joined_s, t0)) for n in nodes)}


def dynamic_j_per_cpu_s(t: NodeType) -> float:
    """The least dynamic joules per CPU second on ``t``'s curve (minimum over its points)."""
    p = t.power_curve.points_w
    return min((p[k] - p[0]) / (k / 10.0) for k in range(1, 11)) / t.cpus


def _node_seconds(tasks: Sequence[TaskRun], cpus: float, min_nodes: int, t0: float, t1: float) -> float:
    """Integral over [t0, t1] of ``max(min_nodes, ceil(running CPUs / cpus))`` (node s)."""
    events = sorted([(max(t.start_s, t0), t.cpus) for t in tasks if t.end_s > t0 and t.start_s < t1]
                    + [(min(t.end_s, t1), -t.cpus) for t in tasks if t.end_s > t0 and t.start_s < t1])
    total, running, last = 0.0, 0.0, t0
    for when, d in events:
        total += (when - last) * max(min_nodes, math.ceil(running / cpus - 1e-9))
        running, last = running + d, when
    return total + (t1 - last) * max(min_nodes, math.ceil(running / cpus - 1e-9))


def lower_bound(tasks: Sequence[TaskRun], types: Iterable[NodeType], t0: float, t1: float,
                min_nodes: int = 0) -> dict:
    """The lower bound of the module doc, and the node type that gives it."""
    best: dict = {}
    cpu_s = sum(t.cpu_s for t in tasks)
    for nt in types:
        work = cpu_s * dynamic_j_per_cpu_s(nt)
        idle = nt.idle_w * _node_seconds(tasks, nt.cpus, min_nodes, t0, t1)
        if not best or work + idle < best["energy_j"]:
            best = {"energy_j": work + idle, "work_j": work, "mandatory_idle_j": idle, "node_type": nt.name,
                    "task_cpu_s": cpu_s, "min_nodes": min_nodes}
    return best


def load_average() -> list[float]:
    """The machine's 1, 5 and 15 minute load averages (the machine is shared)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def print_table(rows: Mapping[str, dict], goal_vs: str) -> None:
    """One line per variant: energy, its parts, makespan, vs the baseline ``goal_vs``, / bound."""
    base = rows.get(goal_vs)
    print(f"\n{'variant':24s} {'energy J':>9s} {'metered':>8s} {'boot':>7s} {'off':>6s} {'boots':>5s} "
          f"{'makespan':>8s} {'vs ' + goal_vs:>22s} {'x make':>6s} {'bound J':>8s} {'/bound':>6s}")
    for v, r in rows.items():
        e, m = r["energy_j"], r["makespan_s"]
        vs = f"{100 * (e / base['energy_j'] - 1):+.1f} %" if base else ""
        xm = f"{m / base['makespan_s']:.3f}" if base else ""
        lb = r["lower_bound"]["energy_j"]
        print(f"{v:24s} {e:9.0f} {r['metered_j']:8.0f} {r['boot_j']:7.0f} {r['off_j']:6.0f} {r['boots']:5d} "
              f"{m:8.1f} {vs:>22s} {xm:>6s} {lb:8.0f} {e / lb:6.2f}")


def chosen_variants(text: str, known: Sequence[str]) -> list[str] | None:
    """The comma-separated ``--variants`` in ``text``; None (after one line on stderr naming
    the unknown ones and the choices) when any is not in ``known``."""
    import sys

    variants = [v for v in text.split(",") if v]
    bad = [v for v in variants if v not in known]
    if bad:
        print(f"--variants: unknown {bad}; choose from {', '.join(known)}", file=sys.stderr)
        return None
    return variants
