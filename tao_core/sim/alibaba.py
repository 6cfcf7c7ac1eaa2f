"""Loader for the Alibaba GPU cluster trace 2023 (``cluster-trace-gpu-v2023`` of
alibaba/clusterdata, the trace behind "Beware of Fragmentation", USENIX ATC 2023).

Inputs: the pod list (``openb_pod_list_*.csv``: name, cpu_milli, memory_mib, num_gpu,
gpu_milli, gpu_spec, qos, pod_phase, creation_time, deletion_time, scheduled_time) and the
node list (``openb_node_list_*.csv``: sn, cpu_milli, memory_mib, gpu, model).

Assumptions (each one is a modelling choice, stated in the README):

- CPU power: the SPECpower_ssj2008 curve of the IBM x3550 M3 with two Xeon X5675
  (12 cores, 58.4 W idle, 222 W at 100 %; ``tao_core/data/specpower_servers.csv``) scaled
  linearly to the node's cores (``cpu_milli / 1000``). GPU power comes on top.
- GPU power per GPU (idle, max): V100M16 and V100M32 as the measured Tesla V100-SXM2 row of
  ``gpu_power.csv`` (56.58 W, 300 W); P100 250 W, T4 70 W, A10 150 W max (public TDPs) with
  idle at the same share of max as that measured V100 (56.58 / 300 = 18.9 %). The undisclosed
  models G2 and G3 (8 GPUs per node) are taken as V100-SXM2.
- Boot: ``BOOT_S`` (180 s) at idle power; a node that is off draws ``OFF_W`` (10 W, a
  baseboard management controller's standby draw); speed 1.0 for every node; PUE 1.0.
- Pods: submit time ``creation_time``; run time ``deletion_time - scheduled_time``. Failed
  pods held their resources until deletion and count as work. Pending pods (never scheduled
  in production) run for ``deletion_time - creation_time``, the time they asked for
  resources. A pod without a deletion time runs until the latest time in the trace. CPUs are
  ``cpu_milli / 1000``; GPUs ``num_gpu * gpu_milli / 1000`` (a GPU-sharing pod holds a
  fraction of one GPU; GPUs of a node are one divisible pool). Memory is not modelled.
  The group TAO learns run times per is the pod's QoS class plus ``-gpu`` or ``-cpu``.
- Time is not compressed: the simulator jumps from event to event, so the trace's 149 days
  cost no more than its events.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Optional

from tao_core.control.types import NodeType
from tao_core.errors import InputError
from tao_core.files import read_csv
from tao_core.files.values import name as checked_name
from tao_core.files.values import number
from tao_core.power.curve import PowerCurve
from tao_core.sim.loaders import (
    MAX_NAME_CHARS, MAX_NODE_CPUS, MAX_NODE_GPUS, MAX_NODES, MAX_TASKS, MAX_TIME_S, MAX_WORKLOAD_BYTES,
)
from tao_core.sim.model import ClusterSpec, SimNode, SimTask, Workload

#: SPECpower_ssj2008 curve used for CPU power (IBM x3550 M3, 2 x Xeon X5675, 12 cores),
#: wall watts at 0..100 % load (power_ssj2008-20110406-00368).
CPU_CURVE_W = (58.4, 98, 109, 118, 128, 140, 153, 170, 189, 205, 222)
CPU_CURVE_CORES = 12
V100_IDLE_W, V100_MAX_W = 56.58, 300.0
IDLE_SHARE = V100_IDLE_W / V100_MAX_W
#: (idle W, max W) per GPU for each model of the node list
GPU_MODELS: dict[str, tuple[float, float]] = {
    "V100M16": (V100_IDLE_W, V100_MAX_W),
    "V100M32": (V100_IDLE_W, V100_MAX_W),
    "G1": (V100_IDLE_W, V100_MAX_W),
    "G2": (V100_IDLE_W, V100_MAX_W),
    "G3": (V100_IDLE_W, V100_MAX_W),
    "P100": (250.0 * IDLE_SHARE, 250.0),
    "T4": (70.0 * IDLE_SHARE, 70.0),
    "A10": (150.0 * IDLE_SHARE, 150.0),
}
BOOT_S = 180.0
OFF_W = 10.0

NODE_COLUMNS = ("sn", "cpu_milli", "gpu", "model")
POD_COLUMNS = ("name", "cpu_milli", "num_gpu", "gpu_milli", "pod_phase", "creation_time", "deletion_time", "scheduled_time")


def _records(path: Path, field: str, required: tuple[str, ...], what: str,
             max_rows: int) -> Iterator[tuple[str, dict[str, str]]]:
    """(where, row as a dict) of each data row; the header must hold ``required``."""
    header, rows = read_csv(path, field, max_bytes=MAX_WORKLOAD_BYTES, max_rows=max_rows, what=what)
    missing = [c for c in required if c not in header]
    if missing:
        raise InputError(f"{field} {path}: header: missing column(s) {', '.join(missing)}; "
                         f"is this the Alibaba v2023 {what} list?")
    for line, row in rows:
        yield f"{field} {path}: row {line}", dict(zip(header, row))


def _f(row: dict, key: str, where: str, *, allow_empty: bool = False, hi: float = MAX_TIME_S) -> Optional[float]:
    raw = (row.get(key) or "").strip()
    if raw == "" and allow_empty:
        return None
    return number(raw, f"{where}: {key}", lo=0.0, hi=hi, fix=f"give a number from 0 to {hi:g} (fix or drop the row)")


def cpu_curve_for(cores: float) -> PowerCurve:
    """The X5675 SPECpower curve scaled to ``cores`` cores (watts)."""
    return PowerCurve(CPU_CURVE_W).scaled(cores / CPU_CURVE_CORES)


def load_alibaba_nodes(path: str | Path, *, field: str = "nodes") -> ClusterSpec:
    """The cluster of an ``openb_node_list_*.csv`` with power mapped as the module docstring
    says; ``field`` names the file in errors (``--nodes``)."""
    p = Path(path)
    types: dict[str, NodeType] = {}
    nodes: list[SimNode] = []
    seen: set[str] = set()
    for where, row in _records(p, field, NODE_COLUMNS, "node", MAX_NODES):
        sn = checked_name(row.get("sn") or "", f"{where}: sn", max_chars=MAX_NAME_CHARS, what="node name")
        if sn in seen:
            raise InputError(f"{where}: sn: {sn[:40]!r} appears twice; node names must be unique")
        seen.add(sn)
        cpus = _f(row, "cpu_milli", where, hi=MAX_NODE_CPUS * 1000.0) / 1000.0
        if cpus <= 0:
            raise InputError(f"{where}: cpu_milli: must be > 0")
        gpus = _f(row, "gpu", where, hi=MAX_NODE_GPUS)
        if gpus != int(gpus):
            raise InputError(f"{where}: gpu: {gpus!r} must be a whole number of GPUs")
        gpus = int(gpus)
        model = (row.get("model") or "").strip()
        if gpus > 0:
            if model not in GPU_MODELS:
                raise InputError(f"{where}: model: {model[:40]!r} has no power figures; known: {', '.join(sorted(GPU_MODELS))}")
            idle_w, max_w = GPU_MODELS[model]
        else:
            model, idle_w, max_w = "cpu", 0.0, 0.0
        name = f"{model}-{cpus:g}c-{gpus}g"
        if name not in types:
            types[name] = NodeType(name=name, cpus=cpus, power_curve=cpu_curve_for(cpus), gpus=gpus,
                                   gpu_idle_w=idle_w, gpu_max_w=max_w, speed=1.0, boot_s=BOOT_S, off_w=OFF_W,
                                   gpu_model=None if model == "cpu" else ("V100" if max_w == V100_MAX_W else model))
            if not OFF_W < types[name].idle_w:
                raise InputError(f"{where}: cpu_milli: a node of {cpus:g} CPUs would draw {types[name].idle_w:.3g} W idle "
                                 f"in this model, not more than the {OFF_W:g} W it draws off; the trace's nodes have "
                                 "8 or more CPUs: fix the row")
        nodes.append(SimNode(sn, name))
    if not nodes:
        raise InputError(f"{field} {p}: no node rows; give the trace's node list")
    return ClusterSpec(node_types=types, nodes=nodes, pue=1.0, power_budget_w=None, source=str(p))


def _pod(where: str, row: dict) -> tuple:
    """(name, created, deleted, scheduled, cpus, gpus, phase, qos) of one pod row, checked."""
    name = checked_name(row.get("name") or "", f"{where}: name", max_chars=MAX_NAME_CHARS, what="pod name")
    cpus = _f(row, "cpu_milli", where, hi=MAX_NODE_CPUS * 1000.0) / 1000.0
    if cpus <= 0:
        raise InputError(f"{where}: cpu_milli: must be > 0")
    num_gpu = _f(row, "num_gpu", where, hi=MAX_NODE_GPUS)
    gpu_milli = _f(row, "gpu_milli", where, allow_empty=True, hi=1000.0) or 0.0
    gpus = num_gpu * gpu_milli / 1000.0 if num_gpu > 0 else 0.0
    created = _f(row, "creation_time", where)
    deleted = _f(row, "deletion_time", where, allow_empty=True)
    scheduled = _f(row, "scheduled_time", where, allow_empty=True)
    if deleted is not None and deleted < created:
        raise InputError(f"{where}: deletion_time {deleted:g} is before creation_time {created:g}; fix the row")
    qos = (row.get("qos") or "").strip()[:MAX_NAME_CHARS]
    return (name, created, deleted, scheduled, cpus, gpus, (row.get("pod_phase") or "").strip(),
            qos if qos and qos.isprintable() else "none")


def _pod_task(pod: tuple, end: float, notes: dict[str, int]) -> SimTask:
    """The task of one pod (run times as the module docstring says); counts its assumptions in ``notes``."""
    name, created, deleted, scheduled, cpus, gpus, phase, qos = pod

    def note(k: str) -> None:
        notes[k] = notes.get(k, 0) + 1

    if deleted is None:
        deleted = end
        note("no deletion time: run to the end of the trace")
    start = scheduled if scheduled is not None else created
    if scheduled is None:
        note("never scheduled (run for deletion - creation)")
    if phase == "Failed":
        note("failed (run until deletion)")
    group = f"{qos}-{'gpu' if gpus > 0 else 'cpu'}"
    return SimTask(name, created, max(0.0, deleted - start), cpus, gpus, group, None)


def load_alibaba_pods(path: str | Path, *, field: str = "workload") -> Workload:
    """The workload of an ``openb_pod_list_*.csv`` (run times as the module docstring says);
    ``field`` names the file in errors (``--workload``)."""
    p = Path(path)
    rows = []
    seen: set[str] = set()
    for where, row in _records(p, field, POD_COLUMNS, "pod", MAX_TASKS):
        pod = _pod(where, row)
        if pod[0] in seen:
            raise InputError(f"{where}: name: {pod[0][:40]!r} appears twice; pod names must be unique")
        seen.add(pod[0])
        rows.append(pod)
    if not rows:
        raise InputError(f"{field} {p}: no pod rows; give the trace's pod list")
    end = max(max((r[2] for r in rows if r[2] is not None), default=0.0), max(r[1] for r in rows))
    notes: dict[str, int] = {}
    tasks = [_pod_task(r, end, notes) for r in rows]
    tasks.sort(key=lambda t: t.submit_s)
    return Workload(tasks=tasks, source=str(p), notes=[f"{k}: {v} pods" for k, v in sorted(notes.items())])
