"""The ``energy`` section of a run report: the run's figures (``tao_core.accounting.figures``)
and where the energy went, by component, node, task group and job.

Basis: the node records when the run has them (they hold every part of IT energy), else
its task records, else its group or job records (then only task work is known). A report
of one job sums that job's task records (or its job record). IT energy is the sum of the
basis; facility energy is IT energy x the PUE of the run's config.

By node: the node records (task work, idle, boot, off per node), else the task records
summed per node. By group: the run's group records, else its task records summed per group
(tasks without a group under ``(no group)``); so the by-node task work and the by-group
energy both add up to the run's one task-work figure. By job: job records, else task records
summed per job (tasks without a job are left out), with each job's budget from the config.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional, Sequence

from tao_core.accounting.figures import (
    PART_NAMES, TASK_WORK_DEFINITION, EnergyParts, RunFigures,
)
from tao_core.accounting.per_unit import NO_GROUP
from tao_core.accounting.records import COMPONENTS, NodeRecord, RunRecords, WorkRecord
from tao_core.errors import ParameterError
from tao_core.governance.provenance import share

PART_DEFINITIONS = {
    "task_energy_j": TASK_WORK_DEFINITION,
    "idle_energy_j": "energy of powered-on nodes that no task was charged with",
    "boot_energy_j": "energy of nodes while they boot",
    "off_energy_j": "standby draw of nodes that are off",
}


@dataclass
class Basis:
    """The records IT energy is the sum of, and the parts they split it into."""

    name: str  #: node, task, group, job or none
    records: Sequence[Any]  #: NodeRecord or WorkRecord
    parts: Optional[EnergyParts]  #: None unless the basis is node records

    @property
    def it_j(self) -> float:
        return sum(r.energy_j for r in self.records)

    @property
    def task_j(self) -> float:
        return self.parts.tasks_j if self.parts is not None else self.it_j


def job_work(rr: RunRecords, job: str) -> list[WorkRecord]:
    """The task records of ``job``, else its job record; ``ParameterError`` when none."""
    tasks = [w for w in rr.scope("task") if w.job == job]
    recs = tasks or [w for w in rr.scope("job") if w.id == job]
    if not recs:
        raise ParameterError("job", job, "no energy record of this job in the run")
    return recs


def choose_basis(rr: RunRecords, job: Optional[str]) -> Basis:
    if job is not None:
        recs = job_work(rr, job)
        return Basis("task" if recs[0].scope == "task" else "job", recs, None)
    if rr.nodes:
        return Basis("node", rr.nodes, EnergyParts.sum(n.parts for n in rr.nodes))
    for scope in ("task", "group", "job"):
        if rr.scope(scope):
            return Basis(scope, rr.scope(scope), None)
    return Basis("none", [], None)


@dataclass
class _Sum:
    energy_j: float = 0.0
    tasks: int = 0
    sources: Optional[set] = None
    parts: Optional[EnergyParts] = None


def _sum_by(records: Iterable[Any], key: Callable[[Any], Optional[str]]) -> "OrderedDict[str, _Sum]":
    out: "OrderedDict[str, _Sum]" = OrderedDict()
    for r in records:
        k = key(r)
        if k is None:
            continue
        d = out.setdefault(k, _Sum(sources=set()))
        d.energy_j += r.energy_j
        d.tasks += 1 if getattr(r, "scope", "node") == "task" else 0
        d.sources.add(r.source)
        if isinstance(r, NodeRecord):
            d.parts = r.parts if d.parts is None else d.parts + r.parts
    return out


def _rows(sums: "OrderedDict[str, _Sum]", key: str, it_j: float,
          extra: Callable[[str, _Sum], dict]) -> list[dict]:
    rows = []
    for k, d in sorted(sums.items(), key=lambda kv: (-kv[1].energy_j, kv[0])):
        rows.append({key: k, "energy_j": d.energy_j, "share": share(d.energy_j, it_j), **extra(k, d)})
    return rows


def by_component(basis: Basis, it_j: float) -> list[dict]:
    comp = {c: 0.0 for c in COMPONENTS}
    for r in basis.records:
        for c in COMPONENTS:
            comp[c] += r.components[c]
    return [{"component": c, "energy_j": comp[c], "share": share(comp[c], it_j)} for c in COMPONENTS]


def by_node(rr: RunRecords, basis: Basis, it_j: float) -> list[dict]:
    types = {n.node_id: n.node_type for n in rr.config.nodes}
    if basis.name == "node":
        sums = _sum_by(basis.records, lambda r: r.node_id)
    else:
        sums = _sum_by([r for r in basis.records if r.scope == "task"], lambda r: r.node_id)

    def extra(k: str, d: _Sum) -> dict:
        parts = d.parts.as_dict() if d.parts is not None else {f"{p}_j": None for p in PART_NAMES}
        if d.parts is None:
            parts["tasks_j"] = d.energy_j
        return {"node_type": types.get(k), **parts, "source": "+".join(sorted(d.sources)) or None}

    return _rows(sums, "node_id", it_j, extra)


def by_group(rr: RunRecords, basis: Basis, job: Optional[str], it_j: float) -> list[dict]:
    tasks = [r for r in basis.records if r.scope == "task"] if job is not None else rr.scope("task")
    counts = _sum_by(tasks, lambda r: r.group or NO_GROUP)
    if job is None and rr.scope("group"):
        sums = _sum_by(rr.scope("group"), lambda r: r.id)
    else:
        sums = counts
    return _rows(sums, "group", it_j, lambda k, d: {"tasks": counts[k].tasks if k in counts else (0 if tasks else None)})


def by_job(rr: RunRecords, job: Optional[str], it_j: float) -> list[dict]:
    tasks = rr.scope("task")
    counts = _sum_by(tasks, lambda r: r.job)
    sums = _sum_by(rr.scope("job"), lambda r: r.id) if rr.scope("job") else counts
    budgets = rr.config.controller.get("job_budgets_j")
    budgets = budgets if isinstance(budgets, dict) else {}

    def extra(k: str, d: _Sum) -> dict:
        b = budgets.get(k)
        b = float(b) if isinstance(b, (int, float)) and not isinstance(b, bool) else None
        return {"tasks": counts[k].tasks if k in counts else (0 if tasks else None), "budget_j": b,
                "within_budget": None if b is None else d.energy_j <= b}

    rows = _rows(sums, "job", it_j, extra)
    return [r for r in rows if r["job"] == job] if job is not None else rows


def energy_section(rr: RunRecords, job: Optional[str]) -> tuple[dict, Basis, RunFigures]:
    """The energy section, its basis, and the run's figures."""
    basis = choose_basis(rr, job)
    parts = basis.parts or EnergyParts(basis.it_j)
    fig = RunFigures(parts, rr.config.pue)
    it = fig.it_j
    section = {
        "it_energy_j": it,
        "it_energy_basis": f"sum of {basis.name} energy records",
        "facility_energy_j": fig.facility_j,
        "facility_energy_method": "IT energy x PUE",
        "facility_overhead_j": fig.facility_overhead_j,
        "pue": fig.pue,
        "pue_source": "config record (declared)",
        "task_energy_j": basis.task_j,
        "idle_energy_j": basis.parts.idle_j if basis.parts else None,
        "boot_energy_j": basis.parts.boot_j if basis.parts else None,
        "off_energy_j": basis.parts.off_j if basis.parts else None,
        "definitions": dict(PART_DEFINITIONS),
        "breakdown_basis": f"{basis.name} energy records",
        "by_component": by_component(basis, it),
        "by_node": by_node(rr, basis, it),
        "by_group": by_group(rr, basis, job, it),
        "by_job": by_job(rr, job, it),
        "attribution_methods": sorted({w.method for w in rr.work if w.method}
                                      if job is None else {w.method for w in basis.records}),
    }
    return section, basis, fig
