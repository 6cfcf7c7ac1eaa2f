"""The energy report of a TAO session on Ray, and of one job of it.

Inputs (:class:`ReportInputs`): each metered node's timeline (from its sampler), the task
rows (TAO's wrapper spans and Ray's task events, :mod:`tao_ray.task_events`), the
controller's decision events and what TAO did to nodes. One time window ``[t0, t1]``
(wall-clock s) covers every figure: the timelines are cut to it and only tasks inside it
count. :mod:`tao_core.task_rows` keeps one row per task (the wrapper's first),
:func:`tao_core.attribution.attribute` splits each node's energy into tasks and idle,
:func:`tao_core.timeline_ops.check_budget` says whether the power budget held, and the
ledger records go through :mod:`tao_core.governance` to the JSON report.

A node that TAO powered off (removed from the cluster) has no readings after its removal;
from then to the end of the window it is modeled at its node type's ``off_w`` watts (0 W
unless configured). A node released to Ray's autoscaler is modeled at its idle watts from
release until it left. The rows say so.
"""
from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import pandas as pd

from tao_core.attribution import Attribution, attribute
from tao_core.control.types import NodeType
from tao_core.task_rows import KNOWN_BY_WRAPPER, TaskRow, spans_from_rows
from tao_core.telemetry.base import DomainReading, Reading, SourceKind
from tao_core.timeline_ops import BudgetAdherence, check_budget, clip
from tao_ray.records import SpanRow, TimelineRow

OFF_METHOD = "node powered off by TAO: off_w of its node type, modeled"
RELEASED_METHOD = "node released to Ray's autoscaler: idle_w of its node type until it left, modeled"


@dataclass(frozen=True)
class NodeHistory:
    """One metered node over the session (wall-clock s)."""

    node_id: str
    node_type: str
    cpus: float
    rows: Sequence[TimelineRow]
    released_at: Optional[float] = None
    removed_at: Optional[float] = None


@dataclass(frozen=True)
class ReportInputs:
    node_types: Mapping[str, NodeType]
    nodes: Sequence[NodeHistory]
    tasks: Sequence[TaskRow]
    config: Mapping[str, Any]
    t0: float
    t1: float
    events: Sequence[Mapping[str, Any]] = ()
    outcomes: Sequence[Mapping[str, Any]] = ()
    notes: Sequence[str] = ()
    jobs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def reading_of(row: TimelineRow) -> Reading:
    """One timeline row as a cumulative Reading of the domain ``node``."""
    try:
        kind = SourceKind(row.source.split("+")[0])
    except ValueError:
        kind = SourceKind.MODELED
    d = DomainReading(name="node", energy_j=float(row.energy_j), source=kind, method=row.method,
                      power_w=row.power_w, uncertainty=float(row.uncertainty))
    return Reading(t_s=float(row.t_s), domains={"node": d})


def _modeled(t: float, e: float, w: float, method: str, unc: float) -> Reading:
    d = DomainReading(name="node", energy_j=e, source=SourceKind.MODELED, method=method, power_w=w, uncertainty=unc)
    return Reading(t_s=t, domains={"node": d})


def readings(node: NodeHistory, nt: NodeType, t_end: float) -> list[Reading]:
    """The node's timeline as cumulative Readings, extended to ``t_end`` with its modeled
    idle power after release and off power after removal (see module doc)."""
    out = [reading_of(r) for r in node.rows]
    if not node.rows or t_end <= node.rows[-1].t_s or (node.released_at is None and node.removed_at is None):
        return out
    last = node.rows[-1]
    t, e = float(last.t_s), float(last.energy_j)
    if node.released_at is not None:
        gone = min(node.removed_at if node.removed_at is not None else t_end, t_end)
        if gone > t:
            e += nt.idle_w * (gone - t)
            t = gone
            out.append(_modeled(t, e, nt.idle_w, RELEASED_METHOD, last.uncertainty))
    if node.removed_at is not None and t_end > t:
        out.append(_modeled(t_end, e + nt.off_w * (t_end - t), nt.off_w, OFF_METHOD, last.uncertainty))
    return out


def wrapper_rows(spans: Sequence[SpanRow]) -> list[TaskRow]:
    """TaskRows of the spans TAO's wrapper recorded (microsecond wall clock, CPU seconds)."""
    return [TaskRow(task_id=s.task_id, node_id=s.node_id, start_s=s.start_s, end_s=s.end_s, name=s.group,
                    job=s.job, cpus=s.cpus, known_by=KNOWN_BY_WRAPPER, resolution_s=1e-6, cpu_s=s.cpu_s)
            for s in spans]


def timelines(inp: ReportInputs) -> dict[str, list[Reading]]:
    """Every node's readings cut to the report window."""
    out = {}
    for n in inp.nodes:
        rs = clip(readings(n, inp.node_types[n.node_type], inp.t1), inp.t0, inp.t1)
        if len(rs) >= 2:
            out[n.node_id] = rs
    return out


def attribution(inp: ReportInputs, tl: Optional[dict[str, list[Reading]]] = None) -> Attribution:
    """Each node's energy in the window split into its tasks and idle; the task frame gets
    ``known_by`` (how each span was known) and ``actor_id``."""
    tl = timelines(inp) if tl is None else tl
    inside = [r for r in inp.tasks if r.end_s > inp.t0 and r.start_s < inp.t1 and r.node_id in tl]
    spans, by_id = spans_from_rows(inside)
    types = {n.node_id: inp.node_types[n.node_type] for n in inp.nodes}
    att = attribute(tl, spans, idle_w={nid: float(types[nid].idle_w) for nid in tl},
                    node_cpus={n.node_id: float(n.cpus or types[n.node_id].cpus) for n in inp.nodes if n.node_id in tl})
    att.tasks["known_by"] = [by_id[t].known_by for t in att.tasks["task_id"]]
    att.tasks["actor_id"] = [by_id[t].actor_id for t in att.tasks["task_id"]]
    att.tasks["method"] = [f"{m}; {by_id[t].provenance}" for m, t in zip(att.tasks["method"], att.tasks["task_id"])]
    return att


def budget(inp: ReportInputs, tl: dict[str, list[Reading]]) -> Optional[BudgetAdherence]:
    """Whether the cluster's power stayed under the configured budget, and if not why."""
    b = inp.config.get("power_budget_w")
    if b is None:
        return None
    res = check_budget(tl, float(b))
    if res.held:
        return res
    t = res.first_over_s
    on = [n for n in inp.nodes if n.node_id in tl and tl[n.node_id][0].t_s <= t <= tl[n.node_id][-1].t_s]
    idle = sum(inp.node_types[n.node_type].idle_w for n in on)
    unwrapped = sorted({r.name for r in inp.tasks if r.known_by != KNOWN_BY_WRAPPER
                        and r.start_s < res.last_over_s + 1.0 and r.end_s > t})
    if idle >= float(b):
        why = (f"the {len(on)} nodes on drew {idle:.1f} W idle, at or above the budget: TAO holds a budget only by "
               "deferring work and powering idle nodes off (on_power_off, drain='gcs' or launchable)")
    elif unwrapped:
        why = ("work TAO did not admit ran then (not wrapped by TAO: " + ", ".join(unwrapped[:5])
               + "): TAO's admission queue holds only the work it wraps")
    else:
        why = ("admitted work drew more than the controller predicted; its closed loop widens the margin as it "
               "measures")
    return check_budget(tl, float(b), reason=why)


def records(inp: ReportInputs, att: Attribution, adherence: Optional[BudgetAdherence], *, run_id: str,
            policy: str) -> list[dict[str, Any]]:
    """Ledger records (kind, payload) of the window."""
    config = json.loads(json.dumps(dict(inp.config), default=str))
    nodes = [{"node_id": n.node_id, "node_type": n.node_type, "cpus": float(n.cpus), "gpus": 0.0} for n in inp.nodes]
    telemetry = [{"domain": f"node:{r.node_id}", "source": r.source, "method": r.method}
                 for r in att.nodes.itertuples(index=False)]
    recs: list[dict[str, Any]] = [{"kind": "config", "payload": {
        "run_id": run_id, "engine": "ray", "policy": policy, "controller": config,
        "cluster": {"pue": float(config.get("pue", 1.0)), "power_budget_w": config.get("power_budget_w"),
                    "nodes": nodes},
        "window": {"start_s": inp.t0, "end_s": inp.t1}, "jobs": dict(inp.jobs), "telemetry": telemetry}}]
    recs += [{"kind": "decision", "payload": ev} for ev in inp.events]
    recs += [{"kind": "decision", "payload": {"kind": f"carried-out:{o['action']}", **o}} for o in inp.outcomes]
    for row in att.nodes.itertuples(index=False):
        recs.append(_energy("node", row.node_id, row.total_j, row.source, row.method, row.uncertainty,
                            node_id=row.node_id, start_s=float(row.start_s), end_s=float(row.end_s),
                            tasks_j=float(row.tasks_j), idle_j=float(row.idle_j)))
    for row in att.tasks.itertuples(index=False):
        if math.isfinite(row.energy_j):
            recs.append(_energy("task", row.task_id, row.energy_j, row.source, row.method, row.uncertainty,
                                node_id=row.node_id, group=row.group, job=row.job, start_s=float(row.start_s),
                                end_s=float(row.end_s), known_by=row.known_by, actor_id=row.actor_id))
    for scope, df in (("group", att.groups), ("job", att.jobs)):
        for row in df.itertuples(index=False):
            key = str(getattr(row, scope))
            recs.append(_energy(scope, key, row.energy_j, str(row.source), "sum of task energy", 0.0,
                                **{scope: key}))
    recs.append({"kind": "summary", "payload": _summary(att, config, adherence, inp)})
    return recs


def _energy(scope: str, key: str, joules: float, source: str, method: str, unc: float, **more: Any) -> dict:
    payload = {"scope": scope, "id": key, "node_id": None, "group": None, "job": None,
               "energy_j": float(joules), "components": {"other": float(joules)}, "source": source.split("+")[0],
               "method": method, "uncertainty": float(unc) if math.isfinite(unc) else 0.0,
               "start_s": None, "end_s": None}
    payload.update(more)
    return {"kind": "energy", "payload": payload}


def _summary(att: Attribution, config: Mapping[str, Any], adherence: Optional[BudgetAdherence],
             inp: ReportInputs) -> dict[str, Any]:
    tasks = att.tasks
    dynamic = float(tasks["dynamic_j"].sum()) if len(tasks) else 0.0
    pue = float(config.get("pue", 1.0))
    return {
        "it_energy_j": att.total_j, "facility_energy_j": att.total_j * pue, "pue": pue,
        "dynamic_energy_j": dynamic, "idle_energy_j": att.idle_j, "boot_energy_j": 0.0,
        "overhead_share": (1.0 - dynamic / (att.total_j * pue)) if att.total_j > 0 and len(tasks) else None,
        "peak_power_w": adherence.peak_w if adherence is not None else _peak(inp), "power_budget_w":
        config.get("power_budget_w"), "budget_violation_s": adherence.over_s if adherence is not None else None,
        "budget": adherence.to_dict() if adherence is not None else None,
        "makespan_s": float(tasks["end_s"].max() - tasks["start_s"].min()) if len(tasks) else 0.0,
        "tasks_completed": int(len(tasks)), "window_s": inp.t1 - inp.t0,
        "tasks_by_source": {str(k): int(v) for k, v in tasks["known_by"].value_counts().items()} if len(tasks) else {},
        "not_accounted": list(inp.notes)}


def _peak(inp: ReportInputs) -> float:
    from tao_core.timeline_ops import cluster_power

    _t, w = cluster_power(timelines(inp))
    return float(w.max()) if len(w) else 0.0


def build(inp: ReportInputs, *, path: Optional[str] = None, ledger: Optional[str] = None, job: Optional[str] = None,
          policy: str = "tao") -> tuple[pd.DataFrame, dict, Attribution]:
    """(per-task DataFrame, report dict, attribution) of the window, or of one ``job`` of
    it; writes the JSON report to ``path`` and the records to a signed ledger at ``ledger``."""
    from tao_core.governance import Ledger, build_report, build_report_from_records, write_report

    tl = timelines(inp)
    att = attribution(inp, tl)
    att.check_conservation(rel_tol=1e-6, abs_tol_j=1e-3)
    run_id = f"ray-{uuid.uuid4().hex[:10]}"
    recs = records(inp, att, budget(inp, tl), run_id=run_id, policy=policy)
    if ledger:
        with Ledger(ledger) as led:
            for r in recs:
                led.append(r["kind"], r["payload"])
        report = build_report(ledger, run_id=run_id, job=job)
    else:
        numbered = [{"kind": r["kind"], "payload": r["payload"], "seq": i, "time": time.time()}
                    for i, r in enumerate(recs)]
        report = build_report_from_records(numbered, job=job)
    if path:
        write_report(report, path, "json")
    df = att.tasks if job is None else att.tasks[att.tasks["job"] == job]
    df = df.copy()
    df.attrs["summary"] = recs[-1]["payload"]
    return df, report, att
