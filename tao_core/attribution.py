"""Per-task energy from node energy timelines and task spans, with nothing lost.

Inputs: for each node, a timeline of cumulative :class:`~tao_core.telemetry.base.Reading`
objects (joules, monotonic seconds), and the spans of the tasks that ran on the nodes
(:class:`TaskSpan`). Output: an :class:`Attribution` with the energy of every task, node,
group and job, in joules.

Method, per node and per interval ``[t0, t1]`` between two consecutive readings, whose
energy ``E`` is the difference of the node's total (top-level domains only, see
``Reading.total_energy_j``):

1. Static part ``S = min(idle_w * (t1 - t0), E)`` (zero when the node's idle watts are not
   given); dynamic part ``D = E - S``.
2. ``D`` is split among the tasks that overlap the interval by CPU share: a task's weight is
   its CPU seconds in the interval, ``cpu_s * overlap / span`` when the span's measured CPU
   time ``cpu_s`` is given (assumed spread evenly over the span), else ``overlap * cpus``.
   If every overlapping task has weight zero (``cpu_s`` of 0), the reserved share
   ``overlap * cpus`` is used instead; if that is zero as well, ``D`` goes to idle.
3. ``S`` is split by each task's share of the node's capacity, ``overlap * cpus /
   (node_cpus * (t1 - t0))``; the unused share goes to idle. When the tasks reserve more
   than the node's capacity (oversubscription) the shares are scaled down to sum to one.
4. With no task in the interval, ``E`` goes to idle.

So for every node, the energy of its tasks plus its idle energy equals the energy read,
to float rounding; :meth:`Attribution.check_conservation` verifies it. Only the time
covered by readings is attributed: the part of a span outside the node's timeline gets
nothing. A task on a node with no timeline (or an empty one) gets ``NaN`` joules and source
``none``.

``node_cpus`` (logical CPUs of each node) defaults, for a node not named, to the peak
number of CPUs its tasks reserved at any one time (at least 1), so that at its busiest the
node's static power is fully charged to its tasks.

Each row's joules are also split into the ledger's components (``cpu_package_j``,
``dram_j``, ``gpu_j``, ``other_j``, see :data:`COMPONENTS`): in each interval a task's
joules are shared among components as the node's interval energy is.

Every row carries the source kind of the readings it came from (``measured-rapl``,
``measured-nvml``, ``modeled``, ``replay``, joined with ``+`` when a node mixes several),
the method, and a relative uncertainty: the energy-weighted mean of the domains'
uncertainties over the intervals the row drew from.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from tao_core.errors import InputError
from tao_core.telemetry.base import Reading

__all__ = ["TaskSpan", "Attribution", "attribute", "ConservationError", "COMPONENTS", "component_of"]

_METHOD = "interval split: dynamic by CPU share, static (idle_w) by capacity share"

#: energy components, as in the ledger's ``energy`` records: top-level domains named
#: ``package-N`` -> cpu_package, ``dram-N`` -> dram, ``gpu-N`` -> gpu, anything else (``node``
#: of the estimator, ``psys``) -> other
COMPONENTS = ("cpu_package", "dram", "gpu", "other")
COMPONENT_COLUMNS = [f"{c}_j" for c in COMPONENTS]
TASK_COLUMNS = [
    "task_id", "group", "job", "node_id", "start_s", "end_s", "energy_j", "dynamic_j",
    "static_j", *COMPONENT_COLUMNS, "source", "method", "uncertainty",
]
NODE_COLUMNS = [
    "node_id", "total_j", "tasks_j", "idle_j", "dynamic_j", "static_j", *COMPONENT_COLUMNS,
    "start_s", "end_s", "source", "method", "uncertainty",
]


def component_of(domain: str) -> str:
    """Ledger component of a top-level domain name (see ``COMPONENTS``)."""
    if domain.startswith("package"):
        return "cpu_package"
    if domain.startswith("dram"):
        return "dram"
    if domain.startswith("gpu"):
        return "gpu"
    return "other"


class ConservationError(AssertionError):
    """Task energy plus idle energy differs from the energy read on a node."""


@dataclass(frozen=True)
class TaskSpan:
    """One task's run on one node, times in the timelines' clock (seconds).

    ``cpus`` is the number of logical CPUs the task reserved; ``cpu_s`` its measured CPU
    time in seconds over the whole span, when known (it sharpens the dynamic split).
    """

    task_id: str
    node_id: str
    start_s: float
    end_s: float
    group: Optional[str] = None
    job: Optional[str] = None
    cpus: float = 1.0
    cpu_s: Optional[float] = None

    def __post_init__(self) -> None:
        for name in ("start_s", "end_s", "cpus"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v):
                raise InputError(f"TaskSpan {self.task_id!r}: {name} must be a finite number, got {v!r}")
        if self.end_s < self.start_s:
            raise InputError(
                f"TaskSpan {self.task_id!r}: end_s ({self.end_s}) is before start_s ({self.start_s}); "
                "pass the finish time as end_s"
            )
        if self.cpus < 0:
            raise InputError(f"TaskSpan {self.task_id!r}: cpus must be >= 0, got {self.cpus}")
        if self.cpu_s is not None and (not math.isfinite(self.cpu_s) or self.cpu_s < 0):
            raise InputError(f"TaskSpan {self.task_id!r}: cpu_s must be None or a finite number >= 0")


@dataclass
class Attribution:
    """Result of :func:`attribute`. All energies in joules, times in seconds.

    ``tasks``: one row per span (columns ``TASK_COLUMNS``). ``nodes``: one row per node
    with a timeline (``total_j`` read, ``tasks_j`` attributed to tasks, ``idle_j`` left
    to idle). ``groups`` and ``jobs``: task energy summed per group and per job.
    """

    tasks: pd.DataFrame
    nodes: pd.DataFrame
    groups: pd.DataFrame = field(init=False)
    jobs: pd.DataFrame = field(init=False)

    def __post_init__(self) -> None:
        self.groups = _rollup(self.tasks, "group")
        self.jobs = _rollup(self.tasks, "job")

    @property
    def total_j(self) -> float:
        """Joules read over all nodes."""
        return float(self.nodes["total_j"].sum()) if len(self.nodes) else 0.0

    @property
    def idle_j(self) -> float:
        """Joules attributed to idle over all nodes."""
        return float(self.nodes["idle_j"].sum()) if len(self.nodes) else 0.0

    def check_conservation(self, rel_tol: float = 1e-9, abs_tol_j: float = 1e-6) -> float:
        """Check, per node, tasks + idle == total read. Returns the largest absolute
        residual in joules; raises :class:`ConservationError` when one exceeds
        ``abs_tol_j + rel_tol * |total|``."""
        worst = 0.0
        for row in self.nodes.itertuples(index=False):
            per_task = self.tasks.loc[self.tasks["node_id"] == row.node_id, "energy_j"]
            tasks_j = float(per_task.sum()) if len(per_task) else 0.0
            resid = abs(tasks_j + row.idle_j - row.total_j)
            worst = max(worst, resid)
            if resid > abs_tol_j + rel_tol * abs(row.total_j):
                raise ConservationError(
                    f"node {row.node_id}: tasks {tasks_j!r} J + idle {row.idle_j!r} J != read {row.total_j!r} J"
                )
        return worst


def _rollup(tasks: pd.DataFrame, key: str) -> pd.DataFrame:
    cols = [key, "tasks", "energy_j", "dynamic_j", "static_j", *COMPONENT_COLUMNS, "source"]
    if tasks.empty:
        return pd.DataFrame(columns=cols)
    out = (
        tasks.groupby(key, sort=True, dropna=False)
        .agg(
            tasks=("task_id", "count"),
            energy_j=("energy_j", "sum"),
            dynamic_j=("dynamic_j", "sum"),
            static_j=("static_j", "sum"),
            **{c: (c, "sum") for c in COMPONENT_COLUMNS},
            source=("source", lambda s: "+".join(sorted(set("+".join(s).split("+"))))),
        )
        .reset_index()
    )
    return out[cols]


def _node_series(readings: Sequence[Reading], node_id: str):
    """Times (n+1), interval energies (n), interval uncertainties (n), source, method, and
    each interval's share of its energy per component (n x 4)."""
    t = np.array([r.t_s for r in readings], dtype=float)
    if np.any(np.diff(t) < 0):
        raise InputError(f"timelines[{node_id!r}]: readings must be in time order (t_s non-decreasing)")
    total = np.array([r.total_energy_j() for r in readings], dtype=float)
    unc = np.zeros(len(readings))
    comp = np.zeros((len(readings), len(COMPONENTS)))
    sources: set[str] = set()
    methods: list[str] = []
    for i, r in enumerate(readings):
        top = [d for d in r.domains.values() if d.parent is None]
        e = sum(max(d.energy_j, 0.0) for d in top)
        unc[i] = sum(d.uncertainty * max(d.energy_j, 0.0) for d in top) / e if e > 0 else (
            max((d.uncertainty for d in top), default=0.0)
        )
        for d in top:
            comp[i, COMPONENTS.index(component_of(d.name))] += d.energy_j
            sources.add(str(d.source))
            if d.method not in methods:
                methods.append(d.method)
    energy = np.diff(total)
    comp_e = np.diff(comp, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        comp_frac = np.where(energy[:, None] != 0, comp_e / np.where(energy[:, None] != 0, energy[:, None], 1.0), 0.0)
    # uncertainty of an interval: that of the reading closing it
    return t, energy, unc[1:], "+".join(sorted(sources)) or "none", "; ".join(methods), comp_frac


def attribute(
    timelines: Mapping[str, Sequence[Reading]],
    spans: Sequence[TaskSpan],
    *,
    idle_w: Mapping[str, float] | None = None,
    node_cpus: Mapping[str, float] | None = None,
) -> Attribution:
    """Split each node's energy among the tasks that ran on it and idle (see module doc).

    ``timelines``: node id -> cumulative readings in time order. ``spans``: the tasks.
    ``idle_w``: node id -> watts the node draws with nothing running (static power).
    ``node_cpus``: node id -> logical CPUs of the node.
    """
    idle_w = dict(idle_w or {})
    node_cpus = dict(node_cpus or {})
    _check_inputs(spans, idle_w, node_cpus)
    by_node: dict[str, list[TaskSpan]] = {}
    for s in spans:
        by_node.setdefault(s.node_id, []).append(s)

    task_rows: list[dict] = []
    node_rows: list[dict] = []
    timelines = {k: v for k, v in timelines.items() if len(v) > 0}  # empty: as if absent
    for node_id, readings in timelines.items():
        nspans = by_node.get(node_id, [])
        cap = node_cpus.get(node_id) or max(_peak_cpus(nspans), 1.0)
        rows, node_row = _attribute_node(node_id, readings, nspans, idle_w.get(node_id, 0.0), cap)
        task_rows += rows
        node_rows.append(node_row)
    for node_id, nspans in by_node.items():
        if node_id not in timelines:
            task_rows += [_task_row(s, math.nan, math.nan, math.nan, "none", f"no energy timeline for node {node_id!r}",
                                    math.nan, [math.nan] * len(COMPONENTS)) for s in nspans]
    tasks = pd.DataFrame(task_rows, columns=TASK_COLUMNS)
    nodes = pd.DataFrame(node_rows, columns=NODE_COLUMNS)
    return Attribution(tasks=tasks, nodes=nodes)


def _check_inputs(spans: Sequence[TaskSpan], idle_w: Mapping[str, float], node_cpus: Mapping[str, float]) -> None:
    """``InputError`` for idle watts or CPU counts that are not finite and positive, or a task id seen twice."""
    for k, v in idle_w.items():
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise InputError(f"idle_w[{k!r}]: must be a finite number of watts >= 0, got {v!r}")
    for k, v in node_cpus.items():
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise InputError(f"node_cpus[{k!r}]: must be a number of CPUs > 0, got {v!r}")
    seen: set[str] = set()
    for s in spans:
        if s.task_id in seen:
            raise InputError(f"spans: task_id {s.task_id!r} appears twice; give each span a unique task_id")
        seen.add(s.task_id)


@dataclass
class _Weights:
    """Per-interval weights of the spans of one node: CPU-seconds used (``cpu``) and CPU-seconds
    reserved (``cap``), their sums over spans, and each span's interval range ``[i0, i1)``."""

    cpu_sum: np.ndarray
    cap_sum: np.ndarray
    parts: list


def _span_weights(t: np.ndarray, nspans: Sequence[TaskSpan]) -> _Weights:
    n = len(t) - 1
    w = _Weights(np.zeros(n), np.zeros(n), [])
    for s in nspans:
        i0 = max(int(np.searchsorted(t, s.start_s, side="right")) - 1, 0)
        i1 = min(int(np.searchsorted(t, s.end_s, side="left")), n)
        if i1 <= i0:
            w.parts.append((s, i0, i0, None, None))
            continue
        ov = np.clip(np.minimum(s.end_s, t[i0 + 1 : i1 + 1]) - np.maximum(s.start_s, t[i0:i1]), 0.0, None)
        w_cap = ov * s.cpus
        span = s.end_s - s.start_s
        w_cpu = (s.cpu_s * ov / span) if (s.cpu_s is not None and span > 0) else w_cap
        w.cpu_sum[i0:i1] += w_cpu
        w.cap_sum[i0:i1] += w_cap
        w.parts.append((s, i0, i1, w_cpu, w_cap))
    return w


def _attribute_node(node_id: str, readings: Sequence[Reading], nspans: Sequence[TaskSpan], idle_w: float,
                    cap: float) -> tuple[list[dict], dict]:
    """One node: its task rows and its node row (``cap``: its CPUs; ``idle_w``: its static W)."""
    t, energy, unc, source, method, comp_frac = _node_series(readings, node_id)
    n = len(energy)
    dt = np.diff(t)
    static = np.minimum(idle_w * dt, np.maximum(energy, 0.0))
    dynamic = energy - static
    w = _span_weights(t, nspans)
    with np.errstate(divide="ignore", invalid="ignore"):
        share_sum = np.where(dt > 0, w.cap_sum / (cap * dt), 0.0)
    scale = np.where(share_sum > 1.0, 1.0 / np.where(share_sum > 1.0, share_sum, 1.0), 1.0)
    use_cpu = w.cpu_sum > 0
    use_cap = ~use_cpu & (w.cap_sum > 0)

    dyn_to_tasks = np.zeros(n)
    stat_to_tasks = np.zeros(n)
    rows = []
    for s, i0, i1, w_cpu, w_cap in w.parts:
        if w_cpu is None:
            rows.append(_task_row(s, 0.0, 0.0, 0.0, source, f"{_METHOD} over {method}", 0.0, [0.0] * len(COMPONENTS)))
            continue
        sl = slice(i0, i1)
        with np.errstate(divide="ignore", invalid="ignore"):
            frac_dyn = np.where(
                use_cpu[sl], w_cpu / np.where(use_cpu[sl], w.cpu_sum[sl], 1.0),
                np.where(use_cap[sl], w_cap / np.where(use_cap[sl], w.cap_sum[sl], 1.0), 0.0),
            )
            frac_st = np.where(dt[sl] > 0, w_cap / (cap * np.where(dt[sl] > 0, dt[sl], 1.0)), 0.0) * scale[sl]
        d = dynamic[sl] * frac_dyn
        st = static[sl] * frac_st
        dyn_to_tasks[sl] += d
        stat_to_tasks[sl] += st
        e = d + st
        u = float((unc[sl] * np.abs(e)).sum() / np.abs(e).sum()) if np.abs(e).sum() > 0 else 0.0
        rows.append(_task_row(s, float(d.sum()) + float(st.sum()), float(d.sum()), float(st.sum()), source,
                              f"{_METHOD} over {method}", u, [float(x) for x in e @ comp_frac[sl]]))
    # idle computed per interval so that tasks + idle == total to rounding
    idle_j = float(((dynamic - dyn_to_tasks) + (static - stat_to_tasks)).sum())
    abs_e = np.abs(energy).sum()
    node_row = {
        "node_id": node_id, "total_j": float(energy.sum()), "tasks_j": float(dyn_to_tasks.sum() + stat_to_tasks.sum()),
        "idle_j": idle_j, "dynamic_j": float(dynamic.sum()), "static_j": float(static.sum()),
        **{c: float(x) for c, x in zip(COMPONENT_COLUMNS, energy @ comp_frac)},
        "start_s": float(t[0]), "end_s": float(t[-1]), "source": source, "method": method,
        "uncertainty": float((unc * np.abs(energy)).sum() / abs_e) if abs_e > 0 else 0.0,
    }
    return rows, node_row


def _task_row(s: TaskSpan, e: float, d: float, st: float, source: str, method: str, u: float,
              comps: Sequence[float]) -> dict:
    return {
        "task_id": s.task_id, "group": s.group, "job": s.job, "node_id": s.node_id,
        "start_s": s.start_s, "end_s": s.end_s, "energy_j": e, "dynamic_j": d, "static_j": st,
        **dict(zip(COMPONENT_COLUMNS, comps)), "source": source, "method": method, "uncertainty": u,
    }


def _peak_cpus(spans: Sequence[TaskSpan]) -> float:
    """Largest sum of ``cpus`` of spans running at the same time."""
    events = sorted([(s.start_s, 1, s.cpus) for s in spans] + [(s.end_s, 0, -s.cpus) for s in spans])
    cur = peak = 0.0
    for _, _, c in events:  # ends (0) sort before starts (1) at equal times
        cur += c
        peak = max(peak, cur)
    return peak
