"""Energy and emissions per unit of useful work, defined once for the reports and the
Prometheus metrics the adapters export.

Units of work are counted by the tasks (``tao.count``, ``tao_core.units``) and carried in
the work records (``WorkRecord.units``). Figures:

- **unit scope**: the first of the task, group and job records that carry any units; every
  per-unit figure of a run is taken from those records alone, so units and energy come from
  the same records and nothing is counted twice.
- **per group** (per job): the records of the unit scope summed by group (job; tasks
  without a group under ``(no group)``, tasks without a job left out): their task
  work ``energy_j`` (J) and their units; ``energy_j_per_unit`` = energy_j / amount;
  ``facility_energy_j_per_unit`` = that x PUE (the facility energy of the work itself:
  idle and boot energy are not charged to groups); ``emissions_g_co2e_per_unit`` = facility
  energy per unit (kWh) x carbon intensity (gCO2e/kWh), when an intensity is known;
  ``standard_uncertainty_j_per_unit`` = root sum of squares of the records' relative
  standard uncertainty x energy, over the amount (unit counts are exact), null when a record
  states none.
- **per run** (or job): the energy of the whole report subject (task work, and facility
  energy: for a run, every node's energy including idle, boot and off, x PUE) per unit
  counted in it.

A group or job whose records count a unit once per task they ran gives the energy of one
task's work per unit; one that counts in only some tasks divides all its energy by the
units counted.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional, Sequence

from tao_core.units import add_units

J_PER_KWH = 3.6e6
SCOPES = ("task", "group", "job")
#: the group of tasks that name none (tasks without a job are left out of the per-job rows)
NO_GROUP = "(no group)"

#: Prometheus metrics of units of work: name -> (type, help). Labels: ``scope`` (group or
#: job), ``name`` (the group or job), ``unit``. Adapters export ``metric_samples(...)``.
METRICS = {
    "tao_work_units_total": ("counter", "Units of useful work counted by tasks (tao.count), per group or job"),
    "tao_energy_per_unit_joules": ("gauge", "Task work (IT energy) per unit of work, per group or job (J)"),
    "tao_energy_per_unit_standard_uncertainty_joules": (
        "gauge", "Standard uncertainty of the task work per unit of work (J); absent when a record states none"),
    "tao_emissions_per_unit_grams": (
        "gauge", "Emissions of the facility energy of the task work per unit of work (gCO2e), when an intensity is known"),
}
METRIC_LABELS = ("scope", "name", "unit")


@dataclass
class UnitSum:
    """Energy (J) and units of a set of work records."""

    energy_j: float = 0.0
    units: dict[str, float] = field(default_factory=dict)
    u2: float = 0.0  #: sum of (relative uncertainty x energy)^2
    complete: bool = True  #: every record states an uncertainty

    def add(self, rec: Any) -> None:
        self.energy_j += rec.energy_j
        self.units = add_units(self.units, rec.units)
        if rec.uncertainty is None:
            self.complete = False
        else:
            self.u2 += (rec.uncertainty * rec.energy_j) ** 2

    @property
    def standard_j(self) -> Optional[float]:
        return math.sqrt(self.u2) if self.complete else None


def unit_scope(records: Iterable[Any]) -> Optional[str]:
    """task, group or job: the first scope whose records carry units; None when none do."""
    recs = list(records)
    for scope in SCOPES:
        if any(r.units for r in recs if r.scope == scope):
            return scope
    return None


def scoped(records: Iterable[Any]) -> list[Any]:
    """The records of the unit scope (empty when no record carries units)."""
    recs = list(records)
    scope = unit_scope(recs)
    return [r for r in recs if r.scope == scope] if scope else []


def totals(records: Iterable[Any]) -> dict[str, float]:
    """Units counted in the unit scope of ``records`` (unit -> amount, sorted)."""
    out: dict[str, float] = {}
    for r in scoped(records):
        out = add_units(out, r.units)
    return out


def _key_of(scope: str, by: str) -> Optional[Callable[[Any], Optional[str]]]:
    if scope == by:
        return lambda r: r.id
    if scope == "task":
        return (lambda r: r.group or NO_GROUP) if by == "group" else (lambda r: r.job)
    return None  # group records say nothing of jobs, job records nothing of groups


def sums_by(records: Iterable[Any], by: str) -> "OrderedDict[str, UnitSum]":
    """The unit-scope records summed by ``by`` (group or job), keyed by its name."""
    recs = scoped(records)
    key = _key_of(recs[0].scope, by) if recs else None
    out: "OrderedDict[str, UnitSum]" = OrderedDict()
    for r in recs if key is not None else []:
        k = key(r)
        if k is not None:
            out.setdefault(k, UnitSum()).add(r)
    return out


def emissions_g(facility_j: float, intensity_g_per_kwh: Optional[float]) -> Optional[float]:
    """gCO2e of ``facility_j`` joules at the intensity (None when the intensity is unknown)."""
    return None if intensity_g_per_kwh is None else facility_j / J_PER_KWH * intensity_g_per_kwh


def per_unit_rows(records: Iterable[Any], by: str, *, pue: float,
                  intensity_g_per_kwh: Optional[float]) -> list[dict]:
    """Rows ``{by, unit, amount, energy_j, energy_j_per_unit, facility_energy_j_per_unit,
    standard_uncertainty_j_per_unit, emissions_g_co2e_per_unit}``, one per group (job) and
    unit with a positive amount, sorted by name and unit."""
    rows = []
    for name, s in sorted(sums_by(records, by).items()):
        for unit, amount in s.units.items():
            if amount <= 0:
                continue
            per = s.energy_j / amount
            std = s.standard_j
            rows.append({by: name, "unit": unit, "amount": amount, "energy_j": s.energy_j, "energy_j_per_unit": per,
                         "facility_energy_j_per_unit": per * pue,
                         "standard_uncertainty_j_per_unit": None if std is None else std / amount,
                         "emissions_g_co2e_per_unit": emissions_g(per * pue, intensity_g_per_kwh)})
    return rows


@dataclass(frozen=True)
class MetricSample:
    """One Prometheus sample: metric name (a key of ``METRICS``), labels, value."""

    name: str
    labels: dict[str, str]
    value: float


def metric_samples(records: Sequence[Any], *, pue: float = 1.0,
                   carbon_intensity_g_per_kwh: Optional[float] = None) -> list[MetricSample]:
    """The samples of ``METRICS`` for work records (``WorkRecord``s of one run so far), per
    group and per job. ``pue``: facility watts per IT watt; ``carbon_intensity_g_per_kwh``:
    the grid's location-based intensity (None: no emissions samples)."""
    out: list[MetricSample] = []
    for by in ("group", "job"):
        for row in per_unit_rows(records, by, pue=pue, intensity_g_per_kwh=carbon_intensity_g_per_kwh):
            labels = {"scope": by, "name": row[by], "unit": row["unit"]}
            out.append(MetricSample("tao_work_units_total", labels, row["amount"]))
            out.append(MetricSample("tao_energy_per_unit_joules", labels, row["energy_j_per_unit"]))
            if row["standard_uncertainty_j_per_unit"] is not None:
                out.append(MetricSample("tao_energy_per_unit_standard_uncertainty_joules", labels,
                                        row["standard_uncertainty_j_per_unit"]))
            if row["emissions_g_co2e_per_unit"] is not None:
                out.append(MetricSample("tao_emissions_per_unit_grams", labels, row["emissions_g_co2e_per_unit"]))
    return out
