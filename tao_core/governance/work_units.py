"""The ``work_units`` section of an energy report: joules and gCO2e per unit of useful work
(per run or job, per task group, per job), with uncertainty. Figures as
``tao_core.accounting.per_unit`` defines them; units as the tasks counted them
(``tao.count``)."""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional

from tao_core.accounting.per_unit import per_unit_rows, totals, unit_scope

NOT_COUNTED = "no unit of work counted"
DEFINITIONS = {
    "totals": "the energy of the whole report subject per unit counted in it: task work, and facility energy "
              "(for a run every node's energy, idle, boot and off included, x PUE); emissions: the report's "
              "emissions per unit; uncertainty: the facility energy's standard uncertainty per unit",
    "by_group": "each task group's task work per unit it counted (facility: x PUE; idle and boot are not charged "
                "to groups); uncertainty: root sum of squares of its records' standard uncertainties per unit",
    "by_job": "as by_group, per job",
}


def totals_rows(counted: Mapping[str, float], *, task_j: Optional[float], facility_j: float,
                facility_std_j: Optional[float], emissions_kg: Optional[float]) -> list[dict]:
    """One row per unit counted (amount > 0): the subject's energy and emissions per unit."""
    rows = []
    for unit, amount in sorted(counted.items()):
        if amount <= 0:
            continue
        rows.append({
            "unit": unit, "amount": amount,
            "task_energy_j_per_unit": None if task_j is None else task_j / amount,
            "facility_energy_j_per_unit": facility_j / amount,
            "standard_uncertainty_j_per_unit": None if facility_std_j is None else facility_std_j / amount,
            "emissions_g_co2e_per_unit": None if emissions_kg is None else emissions_kg * 1000.0 / amount,
        })
    return rows


def section(counted: Mapping[str, float], basis: Optional[str], totals_: list[dict], by_group: list[dict],
            by_job: list[dict]) -> dict:
    """The section from its parts (run reports and federated reports alike)."""
    have = bool(totals_)
    note = (NOT_COUNTED if not have else
            f"units counted by the tasks (tao.count), read from the {basis}" if basis else "units counted by the tasks")
    return {"counted": have, "note": note, "basis": basis if have else None, "totals": totals_,
            "by_group": by_group, "by_job": by_job, "definitions": dict(DEFINITIONS)}


def run_section(records: Iterable[Any], energy: Mapping[str, Any], prov: Mapping[str, Any],
                emissions: Optional[Mapping[str, Any]]) -> dict:
    """The section of a run (or job) report from the work records in its scope."""
    recs = list(records)
    pue = energy["pue"]
    u = prov["uncertainty"]
    intensity = emissions["carbon_intensity_g_per_kwh"] if emissions else None
    counted = totals(recs)
    scope = unit_scope(recs)
    rows = totals_rows(counted, task_j=energy["task_energy_j"], facility_j=energy["facility_energy_j"],
                       facility_std_j=u["standard_j"] * pue if u["complete"] else None,
                       emissions_kg=emissions["emissions_kg_co2e"] if emissions else None)
    return section(counted, f"{scope} records" if scope else None, rows,
                   per_unit_rows(recs, "group", pue=pue, intensity_g_per_kwh=intensity),
                   per_unit_rows(recs, "job", pue=pue, intensity_g_per_kwh=intensity))
