"""Per-task energy on Ray: node timelines from the samplers plus the spans the wrapped
tasks reported go through :func:`tao_core.attribution.attribute`; the result becomes
ledger-style records (config, energy per task/node/group/job, decisions, summary) and,
through :mod:`tao_core.governance`, the JSON energy report.

A node that TAO powered off (removed from the cluster) has no readings after its removal;
from then to the end of the report window it is modeled at its node type's ``off_w`` watts
(0 W unless configured), and its rows say so.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import time
import uuid
from typing import Any, Optional

import numpy as np
import pandas as pd

from tao_core.attribution import Attribution, TaskSpan, attribute
from tao_core.telemetry.base import DomainReading, Reading, SourceKind

OFF_METHOD = "node powered off by TAO: off_w of its node type, modeled"
RELEASED_METHOD = "node released to Ray's autoscaler: idle_w of its node type until it left, modeled"


def _kind(src: str) -> SourceKind:
    try:
        return SourceKind(src.split("+")[0])
    except ValueError:
        return SourceKind.MODELED


def reading_of(row: tuple) -> Reading:
    """One sampler timeline row (t_s, total_j, power_w, util, source, method, uncertainty)
    as a cumulative Reading of the domain ``node``."""
    t, total, power, _util, src, method, unc = row
    d = DomainReading(name="node", energy_j=float(total), source=_kind(src), method=method,
                      power_w=power, uncertainty=float(unc))
    return Reading(t_s=float(t), domains={"node": d})


def readings(rt: Any, nid: str, t_end: Optional[float] = None) -> list[Reading]:
    """The node's timeline as cumulative Readings (wall-clock t_s), extended with modeled
    off power after its removal up to ``t_end``."""
    out = []
    last = None
    for row in rt.timelines.get(nid, ()):
        out.append(reading_of(row))
        last = (row[0], row[1], row[4], row[6])
    removed = rt.removed_at.get(nid)
    released = getattr(rt, "released_at", {}).get(nid)
    if last is None or t_end is None or t_end <= last[0]:
        return out
    t, e = float(last[0]), float(last[1])
    nt = rt.node_types[rt.node_type[nid]]
    if released is not None:  # sampler stopped, node left to Ray's autoscaler: idle until it leaves
        t_gone = min(removed if removed is not None else t_end, t_end)
        if t_gone > t:
            e += float(nt.idle_w) * (t_gone - t)
            t = t_gone
            d = DomainReading(name="node", energy_j=e, source=SourceKind.MODELED, method=RELEASED_METHOD,
                              power_w=float(nt.idle_w), uncertainty=float(last[3]))
            out.append(Reading(t_s=t, domains={"node": d}))
    if removed is not None and t_end > t:
        off_w = float(nt.off_w)
        e += off_w * (t_end - t)
        d = DomainReading(name="node", energy_j=e, source=SourceKind.MODELED, method=OFF_METHOD,
                          power_w=off_w, uncertainty=float(last[3]))
        out.append(Reading(t_s=float(t_end), domains={"node": d}))
    return out


def energy_between(rt: Any, t0: float, t1: float) -> dict[str, float]:
    """Joules each node drew in [t0, t1] (linear interpolation of its cumulative energy;
    after removal, its ``off_w``; before its first reading, nothing)."""
    out = {}
    for nid in rt.nodes:
        gone = nid in rt.removed_at or nid in getattr(rt, "released_at", {})
        rs = readings(rt, nid, t_end=t1 if gone else None)
        if len(rs) < 2:
            continue
        t = np.array([r.t_s for r in rs])
        e = np.array([r.total_energy_j() for r in rs])
        a, b = max(t0, t[0]), min(t1, t[-1])
        if b <= a:
            out[nid] = 0.0
            continue
        out[nid] = float(np.interp(b, t, e) - np.interp(a, t, e))
    return out


def span_of(row: tuple) -> TaskSpan:
    """One span a wrapped task reported (task_id, node_id, start_s, end_s, cpu_s, group,
    job, cpus) as a TaskSpan."""
    tid, node, start, end, cpu_s, group, job, cpus = row
    return TaskSpan(task_id=tid, node_id=node, start_s=float(start), end_s=float(max(end, start)),
                    group=group, job=job, cpus=float(cpus), cpu_s=float(max(cpu_s, 0.0)))


def unique_spans(rows: Any) -> list[TaskSpan]:
    """TaskSpans of span rows, the first row of each task id only."""
    out = []
    seen: set[str] = set()
    for row in rows:
        if row[0] not in seen:
            seen.add(row[0])
            out.append(span_of(row))
    return out


def task_spans(rt: Any) -> list[TaskSpan]:
    """Every task span the driver collected, once each."""
    return unique_spans(row for rows in rt.spans.values() for row in rows)


def attribution(rt: Any, t_end: Optional[float] = None) -> Attribution:
    """Attribute every node's energy since ``tao_ray.init`` to the tasks that ran on it and idle."""
    t_end = time.time() if t_end is None else t_end
    timelines = {}
    for nid in rt.nodes:
        rs = readings(rt, nid, t_end=t_end)
        if len(rs) >= 2:
            timelines[nid] = rs
    idle_w = {nid: float(rt.node_types[rt.node_type[nid]].idle_w) for nid in timelines}
    cpus = {nid: float(rt.nodes[nid].cpus or rt.node_types[rt.node_type[nid]].cpus) for nid in timelines}
    return attribute(timelines, task_spans(rt), idle_w=idle_w, node_cpus=cpus)


def records(rt: Any, att: Attribution, *, run_id: str, policy: str, config: dict[str, Any],
            events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ledger-style records (kind, payload) of one run."""
    nodes = [{"node_id": nid, "node_type": rt.node_type[nid], "cpus": float(rt.nodes[nid].cpus),
              "gpus": float(rt.nodes[nid].gpus)} for nid in rt.nodes]
    telemetry = []
    for row in att.nodes.itertuples(index=False):
        telemetry.append({"domain": f"node:{row.node_id}", "source": row.source, "method": row.method})
    recs: list[dict[str, Any]] = [{"kind": "config", "payload": {
        "run_id": run_id, "engine": "ray", "policy": policy, "controller": config,
        "cluster": {"pue": float(config.get("pue", 1.0)), "power_budget_w": config.get("power_budget_w"),
                    "nodes": nodes},
        "telemetry": telemetry}}]
    for ev in events:
        recs.append({"kind": "decision", "payload": ev})
    for row in att.nodes.itertuples(index=False):
        recs.append({"kind": "energy", "payload": {
            "scope": "node", "id": row.node_id, "node_id": row.node_id, "group": None, "job": None,
            "energy_j": float(row.total_j), "components": {"other": float(row.total_j)},
            "source": row.source.split("+")[0], "method": row.method, "uncertainty": float(row.uncertainty),
            "start_s": float(row.start_s), "end_s": float(row.end_s), "tasks_j": float(row.tasks_j),
            "idle_j": float(row.idle_j)}})
    for row in att.tasks.itertuples(index=False):
        if not math.isfinite(row.energy_j):
            continue
        recs.append({"kind": "energy", "payload": {
            "scope": "task", "id": row.task_id, "node_id": row.node_id, "group": row.group, "job": row.job,
            "energy_j": float(row.energy_j), "components": {"other": float(row.energy_j)},
            "source": row.source.split("+")[0], "method": row.method,
            "uncertainty": float(row.uncertainty) if math.isfinite(row.uncertainty) else 0.0,
            "start_s": float(row.start_s), "end_s": float(row.end_s)}})
    for scope, df in (("group", att.groups), ("job", att.jobs)):
        for row in df.itertuples(index=False):
            key = getattr(row, scope)
            recs.append({"kind": "energy", "payload": {
                "scope": scope, "id": str(key), "node_id": None, "group": str(key) if scope == "group" else None,
                "job": str(key) if scope == "job" else None, "energy_j": float(row.energy_j),
                "components": {"other": float(row.energy_j)}, "source": str(row.source).split("+")[0],
                "method": "sum of task energy", "uncertainty": 0.0, "start_s": None, "end_s": None}})
    tasks = att.tasks
    makespan = float(tasks["end_s"].max() - tasks["start_s"].min()) if len(tasks) else 0.0
    peak = 0.0
    for nid in rt.nodes:
        ps = [r[2] for r in rt.timelines.get(nid, ()) if r[2] is not None]
        peak += max(ps) if ps else 0.0
    pue = float(config.get("pue", 1.0))
    recs.append({"kind": "summary", "payload": {
        "it_energy_j": att.total_j, "facility_energy_j": att.total_j * pue, "pue": pue,
        "dynamic_energy_j": float(tasks["dynamic_j"].sum()) if len(tasks) else 0.0,
        "idle_energy_j": att.idle_j, "boot_energy_j": 0.0,
        "overhead_share": (1.0 - float(tasks["dynamic_j"].sum()) / att.total_j) if att.total_j > 0 and len(tasks) else None,
        "peak_power_w": peak, "power_budget_w": config.get("power_budget_w"), "budget_violation_s": None,
        "makespan_s": makespan, "tasks_completed": int(len(tasks))}})
    return recs


def write(rt: Any, path: Optional[str], ledger: Optional[str], policy: str = "tao") -> tuple[pd.DataFrame, dict]:
    """Build the attribution, write the JSON report to ``path`` (and the records to a signed
    ledger at ``ledger``), return (per-task DataFrame, report dict)."""
    rt.close_timelines()
    att = attribution(rt)
    att.check_conservation(rel_tol=1e-6, abs_tol_j=1e-3)
    events = rt.decision_events()
    try:
        import ray

        config = ray.get(rt.controller.config_dict.remote(), timeout=rt.timeout_s)
    except Exception:  # noqa: BLE001
        config = {k: v for k, v in rt.config.__dict__.items()}
    config = json.loads(json.dumps(config, default=str))
    run_id = f"ray-{uuid.uuid4().hex[:10]}"
    recs = records(rt, att, run_id=run_id, policy=policy, config=config, events=events)
    if ledger:
        from tao_core.governance import Ledger

        with Ledger(ledger) as led:
            for r in recs:
                led.append(r["kind"], r["payload"])
    report: dict[str, Any]
    try:
        from tao_core.governance import build_report, build_report_from_records, write_report

        if ledger:  # verified from the signed ledger just written
            report = build_report(ledger, run_id=run_id)
        else:
            numbered = [{"kind": r["kind"], "payload": r["payload"], "seq": i, "time": time.time()}
                        for i, r in enumerate(recs)]
            report = build_report_from_records(numbered)
        if path:
            write_report(report, path, "json")
    except ImportError:
        report = {"format": "tao-ray-records/1", "records": recs}
        if path:
            _atomic_json(report, path)
    df = att.tasks.copy()
    return df, report


def _atomic_json(obj: Any, path: str) -> None:
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=1, default=str)
    os.replace(tmp, path)
