"""The energy report of a live session, or of one job of it.

Inputs (:class:`ReportInputs`): each metered node's timeline, the task rows (wrapper spans
and the engine's own records), the units of work tasks counted (``tao.count``, charged to
the task row of the same task id: :func:`task_units`), where each node type's power curve
came from (declared, discovered or fitted: the config record's ``curves``), the
controller's decision events,
what was done to nodes, and one time window ``[t0, t1]`` (wall-clock s) for every figure: timelines are cut to it
and only tasks inside it count. :mod:`tao_core.task_rows` keeps one row per task,
:func:`tao_core.attribution.attribute` splits each node's energy into tasks and idle,
:func:`tao_core.timeline_ops.check_budget` says whether the power budget held, and the
records (:mod:`tao_core.accounting.records`) go to the ledger and the JSON report.

A node powered off (gone from the cluster) has no readings after it left: from then to the
window's end it is modeled at its node type's ``off_w`` (its ``off_j``). A node released to
the engine's autoscaler is modeled at its idle watts from release until it left.
"""
from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import pandas as pd

from tao_core.accounting.figures import EnergyParts
from tao_core.accounting.records import (NodeInfo, NodeRecord, RunConfig, RunSummary, WorkRecord, curve_entry,
                                         run_records)
from tao_core.attribution import COMPONENTS, Attribution, attribute
from tao_core.control.types import NodeType
from tao_core.live.timeline import continued, reading_of
from tao_core.live.values import TimelineRow, UnitCount
from tao_core.task_rows import KNOWN_BY_WRAPPER, TaskRow, spans_from_rows
from tao_core.telemetry.base import Reading
from tao_core.timeline_ops import BudgetAdherence, check_budget, clip, cluster_power
from tao_core.units import add_units

OFF_METHOD = "node powered off by TAO: off_w of its node type, modeled"
RELEASED_METHOD = "node released to the engine's autoscaler: idle_w of its node type until it left, modeled"


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
    engine: str
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
    #: task row id -> the units of work it counted (``tao.count``: unit -> amount), for an
    #: engine whose adapter already knows each count's run (Dask: ``key#run``)
    units: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    #: the counts as the tasks sent them, by task id (Ray: charged to a row by :func:`task_units`)
    counts: Sequence[UnitCount] = ()
    #: node type -> where its power curve came from (``CurveProvenance.to_dict()``)
    curves: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def _attempt(row_id: str, task_id: str) -> int:
    """The attempt number of row ``row_id`` of task ``task_id`` (``id`` or ``id:N``), or -1."""
    if row_id == task_id:
        return 0
    base, _, n = row_id.rpartition(":")
    return int(n) if base == task_id and n.isdigit() else -1


def task_units(row_ids: Sequence[str], counts: Sequence[UnitCount]) -> tuple[dict[str, dict[str, float]], set[str]]:
    """(units per task row id, ids of counting tasks with no row). A count goes to the row
    of its task id; of a task run more than once (rows ``id``, ``id:1``, ...), to its last
    attempt (every attempt counts under the same task id)."""
    by_base: dict[str, str] = {}
    for rid in row_ids:
        base, _, n = rid.rpartition(":")
        key = base if base and n.isdigit() else rid
        old = by_base.get(key)
        if old is None or _attempt(rid, key) > _attempt(old, key):
            by_base[key] = rid
    out: dict[str, dict[str, float]] = {}
    missing: set[str] = set()
    for c in counts:
        rid = by_base.get(c.task_id)
        if rid is None:
            missing.add(c.task_id)
        else:
            out[rid] = add_units(out.get(rid, {}), {c.unit: c.amount})
    return out, missing


def extended(node: NodeHistory, nt: NodeType, t_end: float) -> tuple[list[TimelineRow], Optional[float]]:
    """The node's rows carried to ``t_end``: idle watts after release until it left, off
    watts after it left; and when it was off from (None: never)."""
    rows = list(node.rows)
    if not rows or t_end <= rows[-1].t_s or (node.released_at is None and node.removed_at is None):
        return rows, None
    if node.released_at is not None:
        gone = min(node.removed_at if node.removed_at is not None else t_end, t_end)
        if gone > rows[-1].t_s:
            rows.append(continued(rows[-1], gone, nt.idle_w, RELEASED_METHOD))
    if node.removed_at is None or t_end <= rows[-1].t_s:
        return rows, None
    off_from = rows[-1].t_s
    rows.append(continued(rows[-1], t_end, nt.off_w, OFF_METHOD))
    return rows, off_from


@dataclass
class _Window:
    """Every node's readings cut to the window, and the joules each was off in it."""

    readings: dict[str, list[Reading]]
    off_j: dict[str, float]


def _window(inp: ReportInputs) -> _Window:
    w = _Window({}, {})
    for n in inp.nodes:
        nt = inp.node_types[n.node_type]
        rows, off_from = extended(n, nt, inp.t1)
        rs = clip([reading_of(r) for r in rows], inp.t0, inp.t1)
        if len(rs) >= 2:
            w.readings[n.node_id] = rs
            w.off_j[n.node_id] = 0.0 if off_from is None else nt.off_w * max(0.0, inp.t1 - max(off_from, inp.t0))
    return w


def window_readings(inp: ReportInputs) -> dict[str, list[Reading]]:
    """Every metered node's readings cut to the window (carried on after release or removal)."""
    return _window(inp).readings


def energy_by_node(inp: ReportInputs) -> dict[str, float]:
    """Joules of every metered node over the inputs' window (its timeline cut to it)."""
    tl = window_readings(inp)
    return {n: sum(d.energy_j for d in r[-1].domains.values()) - sum(d.energy_j for d in r[0].domains.values())
            for n, r in tl.items()}


def attribution(inp: ReportInputs, tl: dict[str, list[Reading]]) -> Attribution:
    """Each node's energy in the window split into its tasks and idle; the task frame gets
    ``known_by`` (how each span was known), ``actor_id`` and the span's provenance in its method."""
    inside = [r for r in inp.tasks if r.end_s > inp.t0 and r.start_s < inp.t1 and r.node_id in tl]
    spans, by_id = spans_from_rows(inside)
    types = {n.node_id: inp.node_types[n.node_type] for n in inp.nodes}
    att = attribute(tl, spans, idle_w={nid: float(types[nid].idle_w) for nid in tl},
                    node_cpus={n.node_id: float(n.cpus or types[n.node_id].cpus) for n in inp.nodes if n.node_id in tl})
    att.tasks["known_by"] = [by_id[t].known_by for t in att.tasks["task_id"]]
    att.tasks["actor_id"] = [by_id[t].actor_id for t in att.tasks["task_id"]]
    att.tasks["method"] = [f"{m}; {by_id[t].provenance}" for m, t in zip(att.tasks["method"], att.tasks["task_id"])]
    units, _missing = task_units(list(att.tasks["task_id"]), inp.counts)
    att.tasks["units"] = [add_units(units.get(t, {}), inp.units.get(t, {})) for t in att.tasks["task_id"]]
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
               "deferring work and powering idle nodes off")
    elif unwrapped:
        why = ("work TAO did not admit ran then (not wrapped by TAO: " + ", ".join(unwrapped[:5])
               + "): TAO's admission queue holds only the work it wraps")
    else:
        why = ("admitted work drew more than the controller predicted; its closed loop widens the margin as it "
               "measures")
    return check_budget(tl, float(b), reason=why)


def _unc(v: float) -> Optional[float]:
    return float(v) if math.isfinite(v) else None


def _comps(row: Any) -> dict[str, float]:
    return {c: max(float(getattr(row, f"{c}_j")), 0.0) for c in COMPONENTS}


def _node_records(att: Attribution, w: _Window) -> list[NodeRecord]:
    out = []
    for r in att.nodes.itertuples(index=False):
        off = min(w.off_j.get(r.node_id, 0.0), max(float(r.idle_j), 0.0))
        parts = EnergyParts(max(float(r.tasks_j), 0.0), max(float(r.idle_j) - off, 0.0), 0.0, off)
        comps = _comps(r)
        comps["other"] += parts.total_j - sum(comps.values())  # rounding of the clamps, if any
        out.append(NodeRecord(r.node_id, parts, r.source, r.method, comps, _unc(r.uncertainty), float(r.start_s),
                              float(r.end_s)))
    return out


def _work_records(att: Attribution) -> list[WorkRecord]:
    """Task records (with the units each counted: the frame's ``units`` column), and group
    and job records summing them."""
    tasks = att.tasks[att.tasks["energy_j"].map(math.isfinite).astype(bool)]
    out = [WorkRecord("task", t.task_id, max(float(t.energy_j), 0.0), t.source, t.method, node_id=t.node_id,
                      group=t.group, job=t.job, components=_comps(t), uncertainty=_unc(t.uncertainty),
                      start_s=float(t.start_s), end_s=float(t.end_s), units=t.units)
           for t in tasks.itertuples(index=False)]
    for scope in ("group", "job"):
        for key, df in tasks.groupby(scope, sort=True):
            e = float(df["energy_j"].clip(lower=0).sum())
            unc = float((df["uncertainty"] * df["energy_j"]).sum() / e) if e > 0 else None
            src = "+".join(sorted({s for v in df["source"] for s in str(v).split("+")}))
            comps = {c: float(df[f"{c}_j"].clip(lower=0).sum()) for c in COMPONENTS}
            comps["other"] += e - sum(comps.values())
            units: dict[str, float] = {}
            for u in df["units"]:
                units = add_units(units, u)
            out.append(WorkRecord(scope, str(key), e, src, "sum of task energy", components=comps,
                                  uncertainty=unc if unc is None or math.isfinite(unc) else None, units=units,
                                  **{scope: str(key)}))
    return out


def records(inp: ReportInputs, att: Attribution, w: _Window, adherence: Optional[BudgetAdherence], *,
            run_id: str, policy: str) -> tuple[list[tuple[str, dict]], RunSummary]:
    """The window's ledger records (kind, payload) in ledger order, and its summary."""
    cfg = json.loads(json.dumps(dict(inp.config), default=str))
    config = RunConfig(
        run_id=run_id, engine=inp.engine, policy=policy, pue=float(cfg.get("pue", 1.0)),
        nodes=tuple(NodeInfo(n.node_id, n.node_type, float(n.cpus), float(inp.node_types[n.node_type].gpus))
                    for n in inp.nodes),
        controller=cfg, power_budget_w=cfg.get("power_budget_w"),
        telemetry=tuple({"domain": f"node:{r.node_id}", "source": r.source, "method": r.method}
                        for r in att.nodes.itertuples(index=False)),
        curves=tuple(curve_entry(t, inp.curves[t]) for t in sorted({n.node_type for n in inp.nodes}) if t in inp.curves))
    tasks = att.tasks
    peak = adherence.peak_w if adherence is not None else _peak(w.readings)
    summary = RunSummary(run_id, policy, makespan_s=float(tasks["end_s"].max() - tasks["start_s"].min()) if len(tasks)
                         else 0.0, tasks_completed=int(len(tasks)), peak_power_w=peak,
                         power_budget_w=cfg.get("power_budget_w"),
                         budget_violation_s=adherence.over_s if adherence is not None else None)
    recs = run_records(config, _node_records(att, w), _work_records(att), summary)
    decisions = [("decision", dict(ev)) for ev in inp.events]
    decisions += [("decision", {"kind": f"carried-out:{o['action']}", **o}) for o in inp.outcomes]
    return recs[:1] + decisions + recs[1:], summary


def _peak(tl: dict[str, list[Reading]]) -> float:
    _t, watts = cluster_power(tl)
    return float(watts.max()) if len(watts) else 0.0


def _unmetered(inp: ReportInputs, att: Attribution) -> list[str]:
    metered = {n.node_id for n in inp.nodes}
    n = sum(1 for r in inp.tasks if r.node_id not in metered and inp.t0 < r.end_s and r.start_s < inp.t1)
    out = [f"{n} task attempts ran on nodes without a TAO node type: not metered"] if n else []
    _units, missing = task_units(list(att.tasks["task_id"]), [c for c in inp.counts if c.t_s >= inp.t0])
    if missing:
        out.append(f"units of work counted by {len(missing)} tasks that are not in this report (they ended after "
                   "its window, ran on a node TAO does not meter, or their run was not seen): not charged")
    return out


def build(inp: ReportInputs, *, path: Optional[str] = None, ledger: Optional[str] = None, job: Optional[str] = None,
          policy: str = "tao", carbon_intensity_g_per_kwh: Optional[float] = None) -> tuple[pd.DataFrame, dict]:
    """(per-task DataFrame, report dict) of the window, or of one ``job`` of it; writes the
    JSON report to ``path`` and the records to a signed ledger at ``ledger``.
    ``carbon_intensity_g_per_kwh``: the grid's intensity for the report's emissions (and
    gCO2e per unit of work; None: none). ``df.attrs``:
    ``summary`` (the summary record's figures, the budget adherence, what could not be
    accounted, the window and the jobs), ``report`` and ``nodes`` (each node's split)."""
    from tao_core.governance import Ledger, build_report, build_report_from_records, write_report

    w = _window(inp)
    att = attribution(inp, w.readings)
    att.check_conservation(rel_tol=1e-6, abs_tol_j=1e-3)
    run_id = f"{inp.engine}-{uuid.uuid4().hex[:10]}"
    adherence = budget(inp, w.readings)
    recs, summary = records(inp, att, w, adherence, run_id=run_id, policy=policy)
    if ledger:
        with Ledger(ledger) as led:
            for kind, payload in recs:
                led.append(kind, payload)
        report = build_report(ledger, run_id=run_id, job=job, carbon_intensity_g_per_kwh=carbon_intensity_g_per_kwh)
    else:
        report = build_report_from_records([{"kind": k, "payload": p, "seq": i + 1, "time": time.time()}
                                            for i, (k, p) in enumerate(recs)], job=job,
                                           carbon_intensity_g_per_kwh=carbon_intensity_g_per_kwh)
    if path:
        write_report(report, path, "json")
    df = (att.tasks if job is None else att.tasks[att.tasks["job"] == job]).copy()
    tasks = att.tasks
    df.attrs["summary"] = {
        **summary.payload(), "budget": adherence.to_dict() if adherence is not None else None,
        "window_s": [inp.t0, inp.t1], "not_accounted": list(inp.notes) + _unmetered(inp, att), "jobs": dict(inp.jobs),
        "tasks_by_source": {str(k): int(v) for k, v in tasks["known_by"].value_counts().items()} if len(tasks) else {}}
    df.attrs["report"] = report
    df.attrs["nodes"] = att.nodes.copy()
    return df, report
