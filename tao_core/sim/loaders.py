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
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Optional

from tao_core.control.types import NodeType
from tao_core.errors import InputError
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


def _num(value: Any, where: str, *, minimum: float | None = None, strict_min: bool = False,
         integer: bool = False, fix: str = "") -> float:
    """A finite number from JSON/CSV, or an InputError naming ``where``."""
    if isinstance(value, bool) or value is None or value == "":
        raise InputError(f"{where}: missing or not a number; {fix or 'give a number'}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{where}: {value!r} is not a number; {fix or 'give a number'}") from None
    if not math.isfinite(x):
        raise InputError(f"{where}: {value!r} is not finite; {fix or 'give a finite number'}")
    if integer and x != int(x):
        raise InputError(f"{where}: {value!r} must be a whole number; {fix or 'give an integer'}")
    if minimum is not None and (x <= minimum if strict_min else x < minimum):
        rel = ">" if strict_min else ">="
        raise InputError(f"{where}: {value!r} must be {rel} {minimum:g}; {fix or 'fix the value'}")
    return x


def node_type_from_dict(d: Any, where: str) -> tuple[NodeType, int]:
    """A NodeType and its count from one ``node_types`` entry; ``where`` prefixes errors."""
    if not isinstance(d, dict):
        raise InputError(f"{where}: expected an object with name, count, cpus, power_curve_w")
    unknown = sorted(set(d) - NODE_TYPE_FIELDS)
    if unknown:
        raise InputError(f"{where}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(NODE_TYPE_FIELDS))}")
    name = d.get("name")
    if not isinstance(name, str) or not name:
        raise InputError(f"{where}.name: missing; give each node type a unique non-empty name")
    w = f"{where} ({name})"
    count = int(_num(d.get("count"), f"{w}.count", minimum=0, integer=True, fix="give the number of nodes of this type"))
    cpus = _num(d.get("cpus"), f"{w}.cpus", minimum=0, strict_min=True, fix="give the CPU count (> 0)")
    gpus = int(_num(d.get("gpus", 0), f"{w}.gpus", minimum=0, integer=True, fix="give a whole number of GPUs (>= 0)"))
    speed = _num(d.get("speed", 1.0), f"{w}.speed", minimum=0, strict_min=True, fix="give the speed relative to the reference node (> 0)")
    curve = d.get("power_curve_w")
    if not isinstance(curve, list):
        raise InputError(f"{w}.power_curve_w: expected a list of 11 numbers (watts at 0, 10, ..., 100 % CPU utilization)")
    pts = [_num(p, f"{w}.power_curve_w[{i}]", minimum=0, fix="give watts >= 0") for i, p in enumerate(curve)]
    try:
        pc = PowerCurve(tuple(pts))
    except ValueError as exc:
        raise InputError(f"{w}.{exc}") from None
    gpu_idle = _num(d.get("gpu_idle_w", 0), f"{w}.gpu_idle_w", minimum=0, fix="give watts per idle GPU (>= 0)")
    gpu_max = _num(d.get("gpu_max_w", 0), f"{w}.gpu_max_w", minimum=0, fix="give watts per busy GPU (>= gpu_idle_w)")
    if gpu_max < gpu_idle:
        raise InputError(f"{w}.gpu_max_w: {gpu_max:g} is below gpu_idle_w {gpu_idle:g}; give gpu_max_w >= gpu_idle_w")
    limit = d.get("gpu_power_limit_w")
    limit_w = None if limit is None else _num(limit, f"{w}.gpu_power_limit_w", minimum=0, strict_min=True, fix="give watts (> 0) or null")
    boot_s = _num(d.get("boot_s", 0), f"{w}.boot_s", minimum=0, fix="give the boot time in seconds (>= 0)")
    boot_w_raw = d.get("boot_w")
    boot_w = None if boot_w_raw is None else _num(boot_w_raw, f"{w}.boot_w", minimum=0, fix="give watts (>= 0) or null")
    off_w = _num(d.get("off_w", 0), f"{w}.off_w", minimum=0, fix="give the watts drawn while off (>= 0)")
    nt = NodeType(name=name, cpus=cpus, power_curve=pc, gpus=gpus, gpu_idle_w=gpu_idle, gpu_max_w=gpu_max,
                  gpu_power_limit_w=limit_w, speed=speed, boot_s=boot_s, boot_w=boot_w, off_w=off_w)
    return nt, count


def load_cluster(path: str | Path) -> ClusterSpec:
    """Read a cluster spec JSON file (format in the module docstring)."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise InputError(f"{p}: cannot read the cluster spec ({exc.strerror}); give an existing JSON file") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{p}: line {exc.lineno} column {exc.colno}: not valid JSON ({exc.msg})") from None
    return cluster_from_dict(doc, source=str(p))


def cluster_from_dict(doc: Any, source: str = "cluster") -> ClusterSpec:
    """A ClusterSpec from the parsed JSON document; errors are prefixed by ``source``."""
    if not isinstance(doc, dict):
        raise InputError(f"{source}: expected a JSON object with a node_types list")
    unknown = sorted(set(doc) - {"pue", "power_budget_w", "node_types"})
    if unknown:
        raise InputError(f"{source}: unknown field(s) {', '.join(unknown)}; allowed: pue, power_budget_w, node_types")
    pue = _num(doc.get("pue", 1.0), f"{source}: pue", minimum=1.0, fix="give facility/IT power, >= 1.0")
    budget_raw = doc.get("power_budget_w")
    budget = None if budget_raw is None else _num(budget_raw, f"{source}: power_budget_w", minimum=0, strict_min=True,
                                                  fix="give IT watts (> 0) or null for no budget")
    types_raw = doc.get("node_types")
    if not isinstance(types_raw, list) or not types_raw:
        raise InputError(f"{source}: node_types: expected a non-empty list of node types")
    types: dict[str, NodeType] = {}
    counts: list[tuple[str, int]] = []
    for i, d in enumerate(types_raw):
        nt, count = node_type_from_dict(d, f"{source}: node_types[{i}]")
        if nt.name in types:
            raise InputError(f"{source}: node_types[{i}].name: {nt.name!r} is used twice; give each type a unique name")
        types[nt.name] = nt
        counts.append((nt.name, count))
    nodes = make_nodes(counts)
    if not nodes:
        raise InputError(f"{source}: node_types: every count is 0; give at least one node")
    return ClusterSpec(node_types=types, nodes=nodes, pue=pue, power_budget_w=budget, source=source)


def _workload_columns(header: list[str], p: Path) -> dict[str, int]:
    """Column index by name of a workload header; InputError on missing or unknown columns."""
    missing = [c for c in WORKLOAD_REQUIRED if c not in header]
    if missing:
        raise InputError(f"{p}: header: missing column(s) {', '.join(missing)}; the header must hold "
                         f"{','.join(WORKLOAD_REQUIRED)} (optional: {','.join(WORKLOAD_OPTIONAL)})")
    unknown = [c for c in header if c not in WORKLOAD_REQUIRED + WORKLOAD_OPTIONAL and not _is_units_column(c)]
    if unknown:
        raise InputError(f"{p}: header: unknown column(s) {', '.join(unknown)}; allowed: "
                         f"{','.join(WORKLOAD_REQUIRED + WORKLOAD_OPTIONAL)} and units_<name> (name: lower case "
                         "letters, digits and _, starting with a letter)")
    return {c: header.index(c) for c in header}


def _task(row: list[str], col: dict[str, int], tid: str, w: str) -> SimTask:
    """The task of one data row (``w`` names the file and row in errors)."""
    i_grp, i_dl = col.get("group"), col.get("deadline_s")
    submit = _num(row[col["submit_s"]], f"{w}: submit_s", minimum=0, fix="give the arrival time in seconds (>= 0)")
    dur = _num(row[col["duration_s"]], f"{w}: duration_s", minimum=0,
               fix="give the run time at speed 1.0 in seconds (>= 0)")
    cpus = _num(row[col["cpus"]], f"{w}: cpus", minimum=0, strict_min=True, fix="give the CPUs the task holds (> 0)")
    gpus = _num(row[col["gpus"]], f"{w}: gpus", minimum=0, fix="give the GPUs the task holds (>= 0)")
    group = row[i_grp].strip() if i_grp is not None and row[i_grp].strip() else "default"
    deadline: Optional[float] = None
    if i_dl is not None and row[i_dl].strip():
        deadline = _num(row[i_dl], f"{w}: deadline_s", minimum=0, fix="give an absolute time in seconds, or leave it empty")
    units = {c[len(UNITS_PREFIX):]: _num(row[i], f"{w}: {c}", minimum=0,
                                         fix="give the units the task produces (a number >= 0), or leave it empty")
             for c, i in col.items() if _is_units_column(c) and row[i].strip()}
    return SimTask(tid, submit, dur, cpus, gpus, group, deadline, units)


def load_workload(path: str | Path) -> Workload:
    """Read a canonical workload CSV (format in the module docstring)."""
    p = Path(path)
    try:
        fh = p.open(newline="")
    except OSError as exc:
        raise InputError(f"{p}: cannot read the workload ({exc.strerror}); give an existing CSV file") from None
    tasks: list[SimTask] = []
    with fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise InputError(f"{p}: empty file; the first line must be the header {','.join(WORKLOAD_REQUIRED)}") from None
        header = [h.strip() for h in header]
        col = _workload_columns(header, p)
        seen: set[str] = set()
        ncol = len(header)
        for row in reader:
            line = reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != ncol:
                raise InputError(f"{p}: row {line}: {len(row)} fields, the header has {ncol}; fix the row")
            w = f"{p}: row {line}"
            tid = row[col["id"]].strip()
            if not tid:
                raise InputError(f"{w}: id: empty; give every task a unique id")
            if tid in seen:
                raise InputError(f"{w}: id: {tid!r} appears twice; give every task a unique id")
            seen.add(tid)
            tasks.append(_task(row, col, tid, w))
    if not tasks:
        raise InputError(f"{p}: no task rows after the header; add at least one task")
    tasks.sort(key=lambda t: t.submit_s)
    return Workload(tasks=tasks, source=str(p))


def _is_units_column(name: str) -> bool:
    return name.startswith(UNITS_PREFIX) and bool(UNIT_NAME.match(name[len(UNITS_PREFIX):]))


def check_fits(cluster: ClusterSpec, workload: Workload) -> None:
    """Raise InputError naming the first task that no node type can ever hold."""
    types = [cluster.node_types[name] for name in {n.node_type for n in cluster.nodes}]
    max_cpu = max(t.cpus for t in types)
    for t in workload.tasks:
        if t.cpus > max_cpu or not any(t.cpus <= nt.cpus and t.gpus <= nt.gpus for nt in types):
            raise InputError(
                f"{workload.source}: task {t.task_id!r} asks for {t.cpus:g} CPUs and {t.gpus:g} GPUs, more than any node "
                f"type of {cluster.source or 'the cluster'} holds; lower its demand or add a larger node type")
