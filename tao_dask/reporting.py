"""Per-task energy of a Dask run and the JSON report.

The scheduler plugin keeps, for every worker, its cumulative modeled-energy timeline and,
for every finished task, the compute interval Dask reported (``startstops`` of the
``processing -> memory`` transition). :func:`tao_core.attribution.attribute` splits each
worker's energy among the tasks that ran on it and idle, conserving it. Units: joules,
seconds (wall clock), watts.
"""
from __future__ import annotations

from typing import Any, Optional

import pandas as pd

from tao_core.attribution import Attribution, TaskSpan, attribute
from tao_core.telemetry.base import DomainReading, Reading, SourceKind
from tao_dask.state import Span


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
    spans = [TaskSpan(task_id=s.task_id, node_id=s.worker, start_s=s.start_s, end_s=s.end_s, group=s.group)
             for s in spans_of(data)]
    idle_w = {a: n["idle_w"] for a, n in nodes.items() if n.get("idle_w") is not None and a in timelines}
    node_cpus = {a: float(n["nthreads"]) for a, n in nodes.items() if a in timelines}
    return attribute(timelines, spans, idle_w=idle_w, node_cpus=node_cpus)


def spans_of(data: dict[str, Any]) -> list[Span]:
    """The exported spans as :class:`~tao_dask.state.Span` records (one per task run)."""
    return [Span(*row) for row in data["spans"]]


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


def ledger_records(data: dict[str, Any], att: Attribution, run_id: str) -> list[tuple[str, dict[str, Any]]]:
    """The run as ledger records (kinds config, decision, energy, summary; fields as in
    docs/architecture.md "Ledger records")."""
    nodes = {n["address"]: n for n in data["nodes"]}
    cfg = data.get("config") or {}
    recs: list[tuple[str, dict[str, Any]]] = [("config", {
        "run_id": run_id, "engine": "dask", "policy": "tao" if data["placing"] else "dask-default",
        "controller": cfg,
        "cluster": {"pue": cfg.get("pue", 1.0), "power_budget_w": cfg.get("power_budget_w"),
                    "nodes": [{"node_id": a, "node_type": n["node_type"], "cpus": n["nthreads"],
                               "gpus": n.get("gpus", 0)}
                              for a, n in nodes.items()]},
        "telemetry": [{"domain": nodes.get(a, {}).get("name", a), "source": tl["source"], "method": tl["method"]}
                      for a, tl in data["timelines"].items()],
    })]
    recs += [("decision", d) for d in data["decisions"]]
    for r in att.nodes.itertuples(index=False):
        recs.append(("energy", {
            "scope": "node", "id": r.node_id, "node_id": r.node_id, "group": None, "job": None,
            "energy_j": r.total_j, "components": {"other": r.total_j}, "source": r.source, "method": r.method,
            "uncertainty": r.uncertainty, "start_s": r.start_s, "end_s": r.end_s,
            "detail": {"tasks_j": r.tasks_j, "dynamic_j": r.dynamic_j, "idle_j": r.idle_j},
        }))
    for r in att.tasks.itertuples(index=False):
        if r.energy_j != r.energy_j:  # NaN: the worker had no timeline
            continue
        recs.append(("energy", {
            "scope": "task", "id": r.task_id, "node_id": r.node_id, "group": r.group, "job": r.job,
            "energy_j": r.energy_j, "components": {"other": r.energy_j}, "source": r.source,
            "method": r.method, "uncertainty": r.uncertainty, "start_s": r.start_s, "end_s": r.end_s,
        }))
    t = att.tasks
    makespan = float(t["end_s"].max() - t["start_s"].min()) if len(t) else 0.0
    total = att.total_j
    dyn = float(att.nodes["dynamic_j"].sum()) if len(att.nodes) else 0.0
    pue = float(cfg.get("pue", 1.0) or 1.0)
    peak = max((max(tl["power_w"]) for tl in data["timelines"].values() if tl["power_w"]), default=0.0)
    recs.append(("summary", {
        "it_energy_j": total, "facility_energy_j": total * pue, "pue": pue, "dynamic_energy_j": dyn,
        "idle_energy_j": att.idle_j, "boot_energy_j": 0.0,
        "overhead_share": 1.0 - dyn / (total * pue) if total > 0 else None,
        "peak_power_w": peak, "power_budget_w": cfg.get("power_budget_w"), "budget_violation_s": None,
        "makespan_s": makespan, "tasks_completed": int(len(t)),
    }))
    return recs


DEFAULT_REPORT = "tao-dask-report.json"


def report(client: Any, path: Optional[str] = DEFAULT_REPORT, *, fmt: str = "json",
           ledger: Optional[str] = None, name: str = "tao") -> pd.DataFrame:
    """Per-task energy of everything the cluster ran since TAO was registered.

    Returns one row per task run (``task_id`` ``"<key>#<run>"``, ``key``, ``run``,
    ``group``, ``node_id``, ``start_s``, ``end_s``, ``energy_j``, ``dynamic_j``,
    ``static_j``, ``source``, ``method``, ``uncertainty``), energy conserved per worker
    (tasks + idle == the worker's modeled energy). A key Dask computed twice (the same
    collection computed again, a retry) is two runs, two rows.

    Writes the run to a signed, hash-chained ledger (``ledger``, default
    ``<path>.ledger.jsonl``; its signing key ``.key`` and public key ``.pub`` beside it,
    as ``tao_core.governance.Ledger`` does) and the energy report built from it (``fmt``
    json, md or html) to ``path`` (default ``tao-dask-report.json`` in the current
    folder); ``path=None`` writes nothing."""
    data = fetch(client, name)
    att = attribution_of(data)
    att.check_conservation()
    if path:
        from tao_core.governance import Ledger, build_report, write_report

        ledger = ledger or f"{path}.ledger.jsonl"
        run_id = f"dask-{int(data['started_s'])}-{int(data['exported_s'])}"
        with Ledger(ledger) as led:
            for kind, payload in ledger_records(data, att, run_id):
                led.append(kind, payload)
        write_report(build_report(ledger, run_id=run_id), path, fmt)
    return with_keys(att.tasks, data)


def with_keys(tasks: pd.DataFrame, data: dict[str, Any]) -> pd.DataFrame:
    """``tasks`` (one row per ``task_id``) with each run's Dask ``key`` and ``run`` number."""
    runs = {s.task_id: (s.key, s.run) for s in spans_of(data)}
    out = tasks.copy()
    pos = out.columns.get_loc("task_id") + 1
    out.insert(pos, "key", [runs.get(t, (t, 1))[0] for t in out["task_id"]])
    out.insert(pos + 1, "run", [runs.get(t, (t, 1))[1] for t in out["task_id"]])
    return out
