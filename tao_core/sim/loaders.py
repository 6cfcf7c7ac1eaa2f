"""Load simulator inputs: the cluster spec (JSON) and the workload (CSV).

Every error is a :class:`tao_core.errors.InputError` whose message names the file, the row
or field, and the fix.

Cluster spec (JSON)::

    {"pue": 1.0, "power_budget_w": null,
     "node_types": [{"name": "x5675", "count": 4, "cpus": 12, "gpus": 0, "speed": 1.0,
                     "power_curve_w": [58.4, 98, 109, 118, 128, 140, 153, 170, 189, 205, 222],
                     "gpu_idle_w": 0, "gpu_max_w": 0, "boot_s": 120, "off_w": 10}]}

``power_curve_w``: wall watts of the whole node at 0, 10, ..., 100 % CPU utilization with its
GPUs excluded; each GPU adds ``gpu_idle_w`` idle up to ``gpu_max_w`` fully busy. Optional
fields and defaults: ``gpus`` 0, ``speed`` 1.0, ``gpu_idle_w``/``gpu_max_w`` 0, ``boot_s`` 0,
``boot_w`` (watts while booting; default the node's idle watts), ``off_w`` 0, ``pue`` 1.0,
``power_budget_w`` null.

Workload (CSV, header required)::

    id,submit_s,duration_s,cpus,gpus[,group][,deadline_s][,units_<name>...]

``submit_s``: arrival time in seconds; ``duration_s``: run time at speed 1.0; ``cpus`` > 0
and ``gpus`` >= 0 held while running (fractions allowed); ``group``: what TAO learns
run times per (default ``default``); ``deadline_s``: absolute finish-by time, same clock as
``submit_s`` (empty: none); ``units_<name>`` (any number of such columns, e.g.
``units_tokens``): the units of useful work the task does (a finite number >= 0; empty:
none counted), carried into the ledger as if the task had called ``tao.count(name, n)``.
Rows may come in any order; tasks are sorted by submit time.

Limits (the ``MAX_*`` constants below; each error names the limit): node and task counts,
file sizes, value ranges and name lengths, so memory and run time stay bounded and every
figure finite. Files are read through :mod:`tao_core.files` (regular files, UTF-8, JSON depth,
CSV fields up to 128 KiB).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

from tao_core.control.types import NodeType
from tao_core.errors import InputError
from tao_core.files import load_json_file, read_csv
from tao_core.files.values import name as checked_name
from tao_core.files.values import names, number
from tao_core.power.curve import PowerCurve
from tao_core.sim.model import ClusterSpec, SimTask, Workload, make_nodes
from tao_core.units import UNIT_NAME

NODE_TYPE_FIELDS = {
    "name", "count", "cpus", "gpus", "speed", "power_curve_w", "gpu_idle_w", "gpu_max_w",
    "gpu_power_limit_w", "boot_s", "boot_w", "off_w",
}
WORKLOAD_REQUIRED = ("id", "submit_s", "duration_s", "cpus", "gpus")
WORKLOAD_OPTIONAL = ("group", "deadline_s")
#: prefix of the optional units-of-work columns (``units_tokens``: tokens per task)
UNITS_PREFIX = "units_"

# Limits of what the simulator accepts: they keep memory and run time bounded and every
# figure finite (watts x seconds x nodes stays far below the largest float).
#: nodes in a cluster (all types together); the Alibaba trace has 1,523, the speed benchmark 10,000
MAX_NODES = 100_000
#: node types in a cluster spec
MAX_NODE_TYPES = 1_000
#: tasks in a workload (about 0.35 KB of memory each once loaded)
MAX_TASKS = 2_000_000
#: size of a cluster spec file, bytes
MAX_CLUSTER_BYTES = 16 * 1024 * 1024
#: size of a workload or trace file, bytes
MAX_WORKLOAD_BYTES = 256 * 1024 * 1024
#: CPUs and GPUs of one node (a fraction of a CPU allowed, down to MIN_NODE_CPUS)
MIN_NODE_CPUS = 0.001
MAX_NODE_CPUS = 100_000
MAX_NODE_GPUS = 1_024
#: watts: of one node's CPU curve point or off/boot draw, of one GPU
MAX_NODE_W = 1e6
MAX_GPU_W = 1e5
#: relative speed of a node type
MIN_SPEED, MAX_SPEED = 1e-3, 1e3
#: seconds: boot time; arrival or deadline time; run time of one task at speed 1.0, and on
#: the slowest node type (duration_s / speed: a simulation's cost grows with the time it spans)
MAX_BOOT_S = 1e6
MAX_TIME_S = 1e10
MAX_DURATION_S = 1e9
MAX_RUN_S = 1e9
#: facility watts per IT watt
MAX_PUE = 10.0
#: cluster IT power budget, watts
MAX_BUDGET_W = 1e12
#: characters of a node type name, task id or group
MAX_NAME_CHARS = 256
#: units of work one task may count in one ``units_<name>`` column
MAX_UNITS = 1e18


def node_type_from_dict(d: Any, where: str) -> tuple[NodeType, int]:
    """A NodeType and its count from one ``node_types`` entry; ``where`` prefixes errors."""
    if not isinstance(d, dict):
        raise InputError(f"{where}: expected an object with name, count, cpus, power_curve_w")
    unknown = sorted(set(d) - NODE_TYPE_FIELDS)
    if unknown:
        raise InputError(f"{where}: unknown field(s) {names(unknown)}; allowed: {', '.join(sorted(NODE_TYPE_FIELDS))}")
    if d.get("name") is None:
        raise InputError(f"{where}.name: missing; give each node type a unique non-empty name")
    name = checked_name(d.get("name"), f"{where}.name", max_chars=MAX_NAME_CHARS, what="node type name")
    w = f"{where} ({name})"
    count = int(number(d.get("count"), f"{w}.count", lo=0, hi=MAX_NODES, integer=True,
                       fix=f"give the number of nodes of this type, 0 to {MAX_NODES:,}"))
    cpus = number(d.get("cpus"), f"{w}.cpus", lo=MIN_NODE_CPUS, hi=MAX_NODE_CPUS,
                  fix=f"give the CPU count, {MIN_NODE_CPUS:g} to {MAX_NODE_CPUS:,}")
    gpus = int(number(d.get("gpus", 0), f"{w}.gpus", lo=0, hi=MAX_NODE_GPUS, integer=True,
                      fix=f"give a whole number of GPUs, 0 to {MAX_NODE_GPUS}"))
    speed = number(d.get("speed", 1.0), f"{w}.speed", lo=MIN_SPEED, hi=MAX_SPEED,
                   fix=f"give the speed relative to the reference node, {MIN_SPEED:g} to {MAX_SPEED:g}")
    curve = d.get("power_curve_w")
    if not isinstance(curve, list) or len(curve) != 11:
        got = f", got {len(curve)}" if isinstance(curve, list) else ""
        raise InputError(f"{w}.power_curve_w: expected 11 numbers (watts at 0, 10, ..., 100 % CPU utilization){got}")
    pts = [number(p, f"{w}.power_curve_w[{i}]", lo=0, hi=MAX_NODE_W, fix=f"give watts, 0 to {MAX_NODE_W:g}")
           for i, p in enumerate(curve)]
    try:
        pc = PowerCurve(tuple(pts))
    except ValueError as exc:
        raise InputError(f"{w}.{exc}") from None
    gpu_idle = number(d.get("gpu_idle_w", 0), f"{w}.gpu_idle_w", lo=0, hi=MAX_GPU_W,
                      fix=f"give watts per idle GPU, 0 to {MAX_GPU_W:g}")
    gpu_max = number(d.get("gpu_max_w", 0), f"{w}.gpu_max_w", lo=0, hi=MAX_GPU_W,
                     fix=f"give watts per busy GPU, gpu_idle_w to {MAX_GPU_W:g}")
    if gpu_max < gpu_idle:
        raise InputError(f"{w}.gpu_max_w: {gpu_max:g} is below gpu_idle_w {gpu_idle:g}; give gpu_max_w >= gpu_idle_w")
    limit = d.get("gpu_power_limit_w")
    limit_w = None if limit is None else number(limit, f"{w}.gpu_power_limit_w", lo=0, lo_open=True, hi=MAX_GPU_W,
                                                fix=f"give watts, > 0 and <= {MAX_GPU_W:g}, or null")
    boot_s = number(d.get("boot_s", 0), f"{w}.boot_s", lo=0, hi=MAX_BOOT_S,
                    fix=f"give the boot time in seconds, 0 to {MAX_BOOT_S:g}")
    boot_w_raw = d.get("boot_w")
    boot_w = None if boot_w_raw is None else number(boot_w_raw, f"{w}.boot_w", lo=0, hi=MAX_NODE_W,
                                                    fix=f"give watts, 0 to {MAX_NODE_W:g}, or null")
    off_w = number(d.get("off_w", 0), f"{w}.off_w", lo=0, hi=MAX_NODE_W,
                   fix=f"give the watts drawn while off, 0 to {MAX_NODE_W:g}")
    try:
        nt = NodeType(name=name, cpus=cpus, power_curve=pc, gpus=gpus, gpu_idle_w=gpu_idle, gpu_max_w=gpu_max,
                      gpu_power_limit_w=limit_w, speed=speed, boot_s=boot_s, boot_w=boot_w, off_w=off_w)
    except ValueError as exc:
        raise InputError(f"{w}: {exc}; fix the node type") from None
    if not off_w < nt.idle_w:
        raise InputError(f"{w}.off_w: {off_w:g} W is not below the idle draw, {nt.idle_w:g} W (power_curve_w[0] plus "
                         "gpus x gpu_idle_w); a node that is off draws less than one that is on: fix either")
    return nt, count


def load_cluster(path: str | Path, *, field: str = "cluster") -> ClusterSpec:
    """Read a cluster spec JSON file (format in the module docstring); ``field`` names it
    in errors (``--cluster``)."""
    p = Path(path)
    doc = load_json_file(p, field, max_bytes=MAX_CLUSTER_BYTES)
    return cluster_from_dict(doc, source=str(p), where=f"{field} {p}")


def cluster_from_dict(doc: Any, source: str = "cluster", *, where: Optional[str] = None) -> ClusterSpec:
    """A ClusterSpec from the parsed JSON document; ``source`` is kept as where it came
    from; errors are prefixed by ``where`` (default ``source``)."""
    where = where or source
    if not isinstance(doc, dict):
        raise InputError(f"{where}: expected a JSON object with a node_types list")
    unknown = sorted(set(doc) - {"pue", "power_budget_w", "node_types"})
    if unknown:
        raise InputError(f"{where}: unknown field(s) {names(unknown)}; allowed: pue, power_budget_w, node_types")
    pue = number(doc.get("pue", 1.0), f"{where}: pue", lo=1.0, hi=MAX_PUE,
                 fix=f"give facility/IT power, 1.0 to {MAX_PUE:g}")
    budget_raw = doc.get("power_budget_w")
    budget = None if budget_raw is None else number(
        budget_raw, f"{where}: power_budget_w", lo=0, lo_open=True, hi=MAX_BUDGET_W,
        fix=f"give IT watts (> 0 and <= {MAX_BUDGET_W:g}) or null for no budget")
    types_raw = doc.get("node_types")
    if not isinstance(types_raw, list) or not types_raw:
        raise InputError(f"{where}: node_types: expected a non-empty list of node types")
    if len(types_raw) > MAX_NODE_TYPES:
        raise InputError(f"{where}: node_types: {len(types_raw):,} types, more than the {MAX_NODE_TYPES:,} accepted; "
                         "merge similar types")
    types: dict[str, NodeType] = {}
    counts: list[tuple[str, int]] = []
    total = 0
    for i, d in enumerate(types_raw):
        nt, count = node_type_from_dict(d, f"{where}: node_types[{i}]")
        if nt.name in types:
            raise InputError(f"{where}: node_types[{i}].name: {nt.name!r} is used twice; give each type a unique name")
        total += count
        if total > MAX_NODES:
            raise InputError(f"{where}: node_types[{i}] ({nt.name}).count: the cluster would have {total:,} nodes, "
                             f"more than the {MAX_NODES:,} accepted (the limit keeps memory bounded); lower the counts")
        types[nt.name] = nt
        counts.append((nt.name, count))
    nodes = make_nodes(counts)
    if not nodes:
        raise InputError(f"{where}: node_types: every count is 0; give at least one node")
    return ClusterSpec(node_types=types, nodes=nodes, pue=pue, power_budget_w=budget, source=source)


_FIX_SUBMIT = f"give the arrival time in seconds, 0 to {MAX_TIME_S:g}"
_FIX_DURATION = f"give the run time at speed 1.0 in seconds, 0 to {MAX_DURATION_S:g}"
_FIX_CPUS = f"give the CPUs the task holds, > 0 and <= {MAX_NODE_CPUS:,}"
_FIX_GPUS = f"give the GPUs the task holds, 0 to {MAX_NODE_GPUS}"
_FIX_DEADLINE = "give an absolute time in seconds, or leave it empty"
_FIX_UNITS = f"give the units of work the task does, 0 to {MAX_UNITS:g}, or leave it empty"


def _task(row: list[str], col: dict[str, int], w: str) -> SimTask:
    """One checked task; errors are prefixed by ``w`` (the file and row), built only then."""
    try:
        return _task_fields(row, col)
    except InputError as exc:
        raise InputError(f"{w}: {exc}") from None


def _task_fields(row: list[str], col: dict[str, int]) -> SimTask:
    tid = checked_name(row[col["id"]], "id", max_chars=MAX_NAME_CHARS, what="task id")
    submit = number(row[col["submit_s"]], "submit_s", lo=0, hi=MAX_TIME_S, fix=_FIX_SUBMIT)
    dur = number(row[col["duration_s"]], "duration_s", lo=0, hi=MAX_DURATION_S, fix=_FIX_DURATION)
    cpus = number(row[col["cpus"]], "cpus", lo=0, lo_open=True, hi=MAX_NODE_CPUS, fix=_FIX_CPUS)
    gpus = number(row[col["gpus"]], "gpus", lo=0, hi=MAX_NODE_GPUS, fix=_FIX_GPUS)
    i_grp = col.get("group")
    group = "default"
    if i_grp is not None and row[i_grp].strip():
        group = checked_name(row[i_grp], "group", max_chars=MAX_NAME_CHARS, what="group")
    deadline: Optional[float] = None
    i_dl = col.get("deadline_s")
    if i_dl is not None and row[i_dl].strip():
        deadline = number(row[i_dl], "deadline_s", lo=0, hi=MAX_TIME_S + MAX_DURATION_S, fix=_FIX_DEADLINE)
    units = {c[len(UNITS_PREFIX):]: number(row[i], c, lo=0, hi=MAX_UNITS, fix=_FIX_UNITS)
             for c, i in col.items() if _is_units_column(c) and row[i].strip()}
    return SimTask(tid, submit, dur, cpus, gpus, group, deadline, units)


def load_workload(path: str | Path, *, field: str = "workload") -> Workload:
    """Read a canonical workload CSV (format in the module docstring); ``field`` names it
    in errors (``--workload``)."""
    p = Path(path)
    header, rows = read_csv(p, field, max_bytes=MAX_WORKLOAD_BYTES, max_rows=MAX_TASKS, what="task")
    where = f"{field} {p}"
    missing = [c for c in WORKLOAD_REQUIRED if c not in header]
    if missing:
        raise InputError(f"{where}: header: missing column(s) {', '.join(missing)}; the header must hold "
                         f"{','.join(WORKLOAD_REQUIRED)} (optional: {','.join(WORKLOAD_OPTIONAL)})")
    unknown = [c for c in header if c not in WORKLOAD_REQUIRED + WORKLOAD_OPTIONAL and not _is_units_column(c)]
    if unknown:
        raise InputError(f"{where}: header: unknown column(s) {names(unknown)}; allowed: "
                         f"{','.join(WORKLOAD_REQUIRED + WORKLOAD_OPTIONAL)} and units_<name> (name: lower case "
                         "letters, digits and _, starting with a letter)")
    if len(set(header)) != len(header):
        raise InputError(f"{where}: header: a column appears twice; name each column once")
    col = {c: header.index(c) for c in header}
    tasks: list[SimTask] = []
    seen: set[str] = set()
    for line, row in rows:
        w = f"{where}: row {line}"
        t = _task(row, col, w)
        if t.task_id in seen:
            raise InputError(f"{w}: id: {t.task_id[:40]!r} appears twice; give every task a unique id")
        seen.add(t.task_id)
        tasks.append(t)
    if not tasks:
        raise InputError(f"{where}: no task rows after the header; add at least one task")
    tasks.sort(key=lambda t: t.submit_s)
    return Workload(tasks=tasks, source=str(p))


def _is_units_column(name: str) -> bool:
    return name.startswith(UNITS_PREFIX) and bool(UNIT_NAME.match(name[len(UNITS_PREFIX):]))


def check_fits(cluster: ClusterSpec, workload: Workload) -> None:
    """Raise InputError naming the first task that no node type can ever hold, or that would
    run longer than :data:`MAX_RUN_S` on the slowest node type."""
    types = [cluster.node_types[name] for name in {n.node_type for n in cluster.nodes}]
    slowest = min(types, key=lambda t: t.speed)
    longest = max(workload.tasks, key=lambda t: t.duration_s)
    if longest.duration_s / slowest.speed > MAX_RUN_S:
        raise InputError(
            f"{workload.source}: task {longest.task_id[:40]!r} would run {longest.duration_s / slowest.speed:.3g} s on "
            f"node type {slowest.name!r} (speed {slowest.speed:g}), more than the {MAX_RUN_S:g} s a simulation "
            "accepts; shorten the task or raise the type's speed")
    type_cpus = np.array([t.cpus for t in types], dtype=float)
    order = np.argsort(type_cpus)
    type_cpus = type_cpus[order]
    # most GPUs of any type with at least that many CPUs (suffix maximum over types by CPUs)
    most_gpus = np.maximum.accumulate(np.array([types[i].gpus for i in order], dtype=float)[::-1])[::-1]
    cpus = np.fromiter((t.cpus for t in workload.tasks), dtype=float, count=len(workload.tasks))
    gpus = np.fromiter((t.gpus for t in workload.tasks), dtype=float, count=len(workload.tasks))
    first = np.searchsorted(type_cpus, cpus, side="left")  # first type with enough CPUs
    fits = first < len(type_cpus)
    fits[fits] = most_gpus[first[fits]] >= gpus[fits]
    if not fits.all():
        t = workload.tasks[int(np.argmin(fits))]
        raise InputError(
            f"{workload.source}: task {t.task_id[:40]!r} asks for {t.cpus:g} CPUs and {t.gpus:g} GPUs, more than any "
            f"node type of {cluster.source or 'the cluster'} holds; lower its demand or add a larger node type")
