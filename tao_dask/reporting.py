"""Per-task energy of a Dask run and the JSON report.

The scheduler plugin keeps, for every worker, its cumulative modeled-energy timeline and,
for every finished task, the compute interval Dask reported (``startstops`` of the
``processing -> memory`` transition). :func:`tao_core.attribution.attribute` splits each
worker's energy among the tasks that ran on it and idle, conserving it. Units: joules,
seconds (wall clock), watts.
"""
from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Optional

import pandas as pd

from tao_core.attribution import Attribution, TaskSpan, attribute
from tao_core.telemetry.base import DomainReading, Reading, SourceKind


def attribution_of(data: dict[str, Any], *, since_s: Optional[float] = None,
                   until_s: Optional[float] = None) -> Attribution:
    """Attribute the exported plugin state ``data`` (see ``TAOSchedulerPlugin.export``).

    ``since_s``/``until_s`` (wall clock) cut the timelines to a window; energy outside it
    is not counted."""
    nodes = {n["address"]: n for n in data["nodes"]}
    timelines: dict[str, list[Reading]] = {}
    for addr, tl in data["timelines"].items():
        t, e = list(tl["t_s"]), list(tl["energy_j"])
        t, e = _window(t, e, since_s, until_s)
        if len(t) < 2:
            continue
        unc = float(tl.get("uncertainty", 0.1))
        timelines[addr] = [
            Reading(t_s=ti, domains={"node": DomainReading("node", ei, SourceKind(tl["source"]), tl["method"],
                                                         uncertainty=unc)})
            for ti, ei in zip(t, e)
        ]
    spans = []
    for key, prefix, worker, t0, t1 in data["spans"]:
        spans.append(TaskSpan(task_id=key, node_id=worker, start_s=t0, end_s=t1, group=prefix))
    idle_w = {a: n["idle_w"] for a, n in nodes.items() if n.get("idle_w") is not None and a in timelines}
    node_cpus = {a: float(n["nthreads"]) for a, n in nodes.items() if a in timelines}
    return attribute(timelines, spans, idle_w=idle_w, node_cpus=node_cpus)


def _window(t: list[float], e: list[float], lo: Optional[float], hi: Optional[float]):
    """Cut a cumulative series to [lo, hi], interpolating the cut points."""
    import numpy as np

    if not t:
        return t, e
    ta, ea = np.asarray(t, float), np.asarray(e, float)
    a = ta[0] if lo is None else max(lo, ta[0])
    b = ta[-1] if hi is None else min(hi, ta[-1])
    if b <= a:
        return [], []
    inner = (ta > a) & (ta < b)
    tt = np.concatenate([[a], ta[inner], [b]])
    return tt.tolist(), np.interp(tt, ta, ea).tolist()


def energy_between(data: dict[str, Any], t0: float, t1: float) -> tuple[float, dict[str, float]]:
    """Modeled joules of every worker between wall times ``t0`` and ``t1`` (total, per
    worker address). A worker counts while it is up: one that left is counted until Dask
    removed it (its last sampled power carried to that moment) and as 0 W afterwards."""
    import numpy as np

    left = {n["address"]: n["left_s"] for n in data["nodes"]}
    per: dict[str, float] = {}
    for addr, tl in data["timelines"].items():
        t = np.asarray(tl["t_s"], float)
        e = np.asarray(tl["energy_j"], float)
        if len(t) < 2:
            continue
        end = left.get(addr)
        if end is not None and end > t[-1]:
            e = np.append(e, e[-1] + tl["power_w"][-1] * (end - t[-1]))
            t = np.append(t, end)
        a, b = max(t0, t[0]), min(t1, t[-1])
        per[addr] = float(np.interp(b, t, e) - np.interp(a, t, e)) if b > a else 0.0
    return sum(per.values()), per


def fetch(client: Any, name: str = "tao") -> dict[str, Any]:
    """The scheduler plugin's state, as plain data."""
    def _export(dask_scheduler: Any, name: str = name) -> dict[str, Any]:
        return dask_scheduler.plugins[name].export()

    return client.run_on_scheduler(_export)


def _atomic_json(path: str, obj: Any) -> None:
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tao-report-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1, default=str)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def build(data: dict[str, Any], att: Attribution) -> dict[str, Any]:
    """The report as a JSON-able dict (ledger field names, docs/architecture.md)."""
    nodes = {n["address"]: n for n in data["nodes"]}
    rows = []
    for r in att.nodes.itertuples(index=False):
        rows.append({"scope": "node", "id": r.node_id, "node_id": r.node_id,
                     "node_type": nodes.get(r.node_id, {}).get("node_type"),
                     "energy_j": r.total_j, "tasks_j": r.tasks_j, "idle_j": r.idle_j,
                     "components": {"other": r.total_j}, "source": r.source, "method": r.method,
                     "uncertainty": r.uncertainty, "start_s": r.start_s, "end_s": r.end_s})
    groups = [{"scope": "group", "id": g.group, "group": g.group, "tasks": int(g.tasks),
               "energy_j": float(g.energy_j), "source": g.source} for g in att.groups.itertuples(index=False)]
    t = att.tasks
    makespan = float(t["end_s"].max() - t["start_s"].min()) if len(t) else 0.0
    total = att.total_j
    idle = att.idle_j
    return {
        "engine": "dask",
        "cluster": {"nodes": [{"node_id": a, "name": n["name"], "node_type": n["node_type"],
                               "cpus": n["nthreads"], "gpus": 0, "joined_s": n["joined_s"],
                               "left_s": n["left_s"]} for a, n in nodes.items()]},
        "telemetry": sorted({(tl["source"], tl["method"]) for tl in data["timelines"].values()}),
        "summary": {"it_energy_j": total, "idle_energy_j": idle, "dynamic_energy_j": float(t["dynamic_j"].sum()) if len(t) else 0.0,
                    "tasks_energy_j": total - idle, "makespan_s": makespan, "tasks_completed": int(len(t)),
                    "conservation_residual_j": att.check_conservation()},
        "placement": {"active": data["placing"], "counts": data["counts"], "placed_on": data["placed_on"]},
        "energy": rows + groups,
        "decisions": len(data["decisions"]),
    }


def report(client: Any, path: Optional[str] = None, *, name: str = "tao") -> pd.DataFrame:
    """Per-task energy of everything the cluster ran since TAO was registered.

    Returns one row per task (``task_id``, ``group``, ``node_id``, ``start_s``, ``end_s``,
    ``energy_j``, ``dynamic_j``, ``static_j``, ``source``, ``method``, ``uncertainty``);
    writes the JSON report to ``path`` when given (atomically)."""
    data = fetch(client, name)
    att = attribution_of(data)
    if path:
        _atomic_json(path, build(data, att))
    return att.tasks
