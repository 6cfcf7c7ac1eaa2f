"""Internal sums of an energy report: every figure that is a sum, product or share of others
must be one. ``sum_problems(report)`` lists those that are not (each naming its field).

Checked: facility = IT x PUE (so facility >= IT), facility overhead = facility - IT;
task work + idle + boot + off = IT; components add up to IT; the by-node energy to IT
(node basis) and its task work to the task work; the by-group energy to the task work (run
reports); the by-job energy at most the task work; every share = energy / IT; the
provenance sources add up to IT and their class shares to 1; emissions = kWh x intensity;
the overhead share = 1 - task work / facility and ``inverted`` follows from it; a federated
report's IT and facility energy are the sums of its members'. The sections for the field's
formats: the form's energy in MWh is the facility energy, written to the significant
figures its uncertainty allows; its wall-clock days are its seconds; every figure per unit
times its amount is the energy (or emissions) it divides; the SCI's E is the facility
energy, O the emissions, M the embodied emissions given, and each row (O + M) / R.
Tolerance: float rounding (``accounting.figures.close_enough`` with a relative 1e-6 for
sums over many rows).
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional

from tao_core.accounting.figures import INVERSION_THRESHOLD, close_enough
from tao_core.governance.mdf import J_PER_MWH, S_PER_DAY, figures_allowed, significant_text
from tao_core.governance.work_units import NOT_COUNTED

REL = 1e-6


def _eq(problems: list[str], where: str, got: float, want: float, what: str) -> None:
    if not close_enough(got, want, rel=REL):
        problems.append(f"{where}: {got!r} is not {what} ({want!r})")


def _total(rows: Iterable[Mapping[str, Any]], key: str = "energy_j") -> float:
    return sum(r.get(key) or 0.0 for r in rows)


def _figures(report: Mapping[str, Any], p: list[str]) -> None:
    e = report["energy"]
    it, fac = e["it_energy_j"], e["facility_energy_j"]
    _eq(p, "energy/facility_energy_j", fac, it * e["pue"], "IT energy x PUE")
    _eq(p, "energy/facility_overhead_j", e["facility_overhead_j"], fac - it, "facility - IT energy")
    parts = [e.get(k) for k in ("idle_energy_j", "boot_energy_j", "off_energy_j")]
    if e.get("task_energy_j") is not None and all(v is not None for v in parts):
        _eq(p, "energy/it_energy_j", it, e["task_energy_j"] + sum(parts), "task work + idle + boot + off")
    elif e.get("task_energy_j") is not None and all(v is None for v in parts) and e.get("breakdown_basis") != "member reports":
        _eq(p, "energy/task_energy_j", e["task_energy_j"], it, "IT energy (no node records: all of it is task work)")


def _shares(rows: list[Mapping[str, Any]], it: float, where: str, p: list[str]) -> None:
    for i, r in enumerate(rows):
        if it > 0 and r.get("share") is not None:
            _eq(p, f"{where}/{i}/share", r["share"], r["energy_j"] / it, "energy_j / IT energy")


def _tables(report: Mapping[str, Any], p: list[str]) -> None:
    e = report["energy"]
    it, task = e["it_energy_j"], e.get("task_energy_j")
    node_basis = e.get("breakdown_basis") in ("node energy records", "member reports")
    _eq(p, "energy/by_component", _total(e["by_component"]), it, "IT energy")
    if e["by_node"] and node_basis and report["report_type"] == "run":
        _eq(p, "energy/by_node", _total(e["by_node"]), it, "IT energy")
    if e["by_node"] and task is not None and all(r.get("tasks_j") is not None for r in e["by_node"]):
        if report["report_type"] == "run":
            _eq(p, "energy/by_node tasks_j", _total(e["by_node"], "tasks_j"), task, "the task work")
    if e["by_group"] and task is not None and report["report_type"] == "run":
        _eq(p, "energy/by_group", _total(e["by_group"]), task, "the task work")
    if e["by_job"] and task is not None and _total(e["by_job"]) > task * (1 + REL) + 1e-6:
        p.append(f"energy/by_job: adds up to {_total(e['by_job'])!r} J, more than the task work ({task!r} J)")
    for name in ("by_component", "by_node", "by_group", "by_job"):
        _shares(e[name], it, f"energy/{name}", p)


def _provenance(report: Mapping[str, Any], p: list[str]) -> None:
    e, pr = report["energy"], report["provenance"]
    it = e["it_energy_j"]
    if pr["by_source"]:
        _eq(p, "provenance/by_source", _total(pr["by_source"]), it, "IT energy")
    if it > 0 and pr["by_source"]:
        classes = sum(pr[f"{c}_share"] for c in ("measured", "modeled", "replay", "mixed", "unknown"))
        _eq(p, "provenance shares", classes, 1.0, "1")
    _shares(pr["by_source"], it, "provenance/by_source", p)


def _emissions(report: Mapping[str, Any], p: list[str]) -> None:
    em = report.get("emissions")
    if not em:
        return
    _eq(p, "emissions/facility_energy_kwh", em["facility_energy_kwh"], report["energy"]["facility_energy_j"] / 3.6e6,
        "facility energy in kWh")
    ci = em.get("carbon_intensity_g_per_kwh")
    if ci is not None:
        _eq(p, "emissions/emissions_kg_co2e", em["emissions_kg_co2e"], em["facility_energy_kwh"] * ci / 1000.0,
            "kWh x carbon intensity")


def _inversion(report: Mapping[str, Any], p: list[str]) -> None:
    oi, e = report["optimization_inversion"], report["energy"]
    share: Optional[float] = oi.get("overhead_share")
    if oi.get("threshold") != INVERSION_THRESHOLD:
        p.append(f"optimization_inversion/threshold: {oi.get('threshold')!r} is not {INVERSION_THRESHOLD}")
    if share is None:
        if oi.get("inverted") is not None:
            p.append("optimization_inversion/inverted: set without an overhead share")
        return
    if e.get("task_energy_j") is not None and e["facility_energy_j"] > 0:
        _eq(p, "optimization_inversion/overhead_share", share, 1.0 - e["task_energy_j"] / e["facility_energy_j"],
            "1 - task work / facility energy")
    if oi.get("inverted") != (share > INVERSION_THRESHOLD):
        p.append(f"optimization_inversion/inverted: {oi.get('inverted')!r} does not follow from the overhead share {share!r}")


def _federation(report: Mapping[str, Any], p: list[str]) -> None:
    if report["report_type"] != "federated":
        return
    members = report["federation"]["members"]
    e = report["energy"]
    _eq(p, "energy/it_energy_j", e["it_energy_j"], _total(members, "it_energy_j"), "the sum of the members' IT energy")
    _eq(p, "energy/facility_energy_j", e["facility_energy_j"], _total(members, "facility_energy_j"),
        "the sum of the members' facility energy")
    for i, m in enumerate(members):
        if m["facility_energy_j"] < m["it_energy_j"] * (1 - REL):
            p.append(f"federation/members/{i}: facility energy {m['facility_energy_j']!r} J below its IT energy "
                     f"{m['it_energy_j']!r} J")


def _opt_eq(p: list[str], where: str, got: Optional[float], want: Optional[float], what: str) -> None:
    if (got is None) != (want is None):
        p.append(f"{where}: {got!r} is not {what} ({want!r})")
    elif got is not None:
        _eq(p, where, got, want, what)


def _facility_std(report: Mapping[str, Any]) -> Optional[float]:
    u = report["provenance"]["uncertainty"]
    return u["standard_j"] * report["energy"]["pue"] if u["complete"] else None


def _model_documentation(report: Mapping[str, Any], p: list[str]) -> None:
    md, fac = report["model_documentation"], report["energy"]["facility_energy_j"]
    te, tt = md["training_energy"], md["training_time"]
    _eq(p, "model_documentation/training_energy/energy_mwh", te["energy_mwh"], fac / J_PER_MWH, "facility energy in MWh")
    std = _facility_std(report)
    _opt_eq(p, "model_documentation/training_energy/standard_uncertainty_mwh", te["standard_uncertainty_mwh"],
            None if std is None else std / J_PER_MWH, "the facility energy's standard uncertainty in MWh")
    sig = figures_allowed(te["energy_mwh"], te["standard_uncertainty_mwh"])
    if te["significant_figures"] != sig or te["energy_mwh_text"] != significant_text(te["energy_mwh"], sig):
        p.append(f"model_documentation/training_energy: {te['energy_mwh_text']!r} ({te['significant_figures']} "
                 f"significant figures) is not {significant_text(te['energy_mwh'], sig)!r}, the {sig} its uncertainty "
                 "allows")
    if report["provenance"]["measured_share"] < 1.0 - 1e-9 and te["measured"]:
        p.append("model_documentation/training_energy/measured: true, but not all of the energy is measured")
    _opt_eq(p, "model_documentation/training_time/wall_clock_days", tt["wall_clock_days"],
            None if tt["wall_clock_s"] is None else tt["wall_clock_s"] / S_PER_DAY, "wall_clock_s in days")


def _per_unit_rows(rows: list[Mapping[str, Any]], key: str, pue: Optional[float], p: list[str]) -> None:
    for i, r in enumerate(rows):
        where = f"work_units/{key}/{i}"
        _eq(p, f"{where}/energy_j_per_unit", r["energy_j_per_unit"] * r["amount"], r["energy_j"], "energy_j")
        if pue is not None:
            _eq(p, f"{where}/facility_energy_j_per_unit", r["facility_energy_j_per_unit"], r["energy_j_per_unit"] * pue,
                "energy_j_per_unit x PUE")


def _work_units(report: Mapping[str, Any], p: list[str]) -> None:
    wu, e, em = report["work_units"], report["energy"], report.get("emissions")
    if wu["counted"] != bool(wu["totals"]) or (wu["note"] == NOT_COUNTED) == wu["counted"]:
        p.append(f"work_units/counted: {wu['counted']!r} does not match its totals and note")
    std = _facility_std(report)
    for i, t in enumerate(wu["totals"]):
        where, n = f"work_units/totals/{i}", t["amount"]
        _eq(p, f"{where}/facility_energy_j_per_unit", t["facility_energy_j_per_unit"] * n, e["facility_energy_j"],
            "facility energy")
        _opt_eq(p, f"{where}/task_energy_j_per_unit", t["task_energy_j_per_unit"],
                None if e["task_energy_j"] is None else e["task_energy_j"] / n, "task work per unit")
        _opt_eq(p, f"{where}/standard_uncertainty_j_per_unit", t["standard_uncertainty_j_per_unit"],
                None if std is None else std / n, "the facility energy's standard uncertainty per unit")
        _opt_eq(p, f"{where}/emissions_g_co2e_per_unit", t["emissions_g_co2e_per_unit"],
                None if not em else em["emissions_kg_co2e"] * 1000.0 / n, "emissions per unit")
    pue = e["pue"] if report["report_type"] == "run" else None
    _per_unit_rows(wu["by_group"], "by_group", pue, p)
    _per_unit_rows(wu["by_job"], "by_job", pue, p)


def _sci(report: Mapping[str, Any], p: list[str]) -> None:
    sci, em, wu = report["sci"], report.get("emissions"), report["work_units"]
    _eq(p, "sci/e_kwh", sci["e_kwh"], report["energy"]["facility_energy_j"] / 3.6e6, "facility energy in kWh")
    _opt_eq(p, "sci/o_g_co2e", sci["o_g_co2e"], em["emissions_kg_co2e"] * 1000.0 if em else None, "the emissions in g")
    if report["report_type"] == "run":
        _opt_eq(p, "sci/m_g_co2e", sci["m_g_co2e"], report["parameters"]["embodied_g_co2e"], "the embodied emissions given")
    if [(r["unit"], r["r"]) for r in sci["per_unit"]] != [(t["unit"], t["amount"]) for t in wu["totals"]]:
        p.append("sci/per_unit: its units and amounts are not those of work_units/totals")
    o, m = sci["o_g_co2e"], sci["m_g_co2e"]
    for i, r in enumerate(sci["per_unit"]):
        _opt_eq(p, f"sci/per_unit/{i}/operational_g_co2e_per_unit", r["operational_g_co2e_per_unit"],
                None if o is None else o / r["r"], "O / R")
        _opt_eq(p, f"sci/per_unit/{i}/sci_g_co2e_per_unit", r["sci_g_co2e_per_unit"],
                None if o is None or m is None else (o + m) / r["r"], "(O + M) / R")


def sum_problems(report: Mapping[str, Any]) -> list[str]:
    """The internal sums of ``report`` (already schema-valid) that do not hold."""
    problems: list[str] = []
    for check in (_figures, _tables, _provenance, _emissions, _inversion, _federation, _model_documentation,
                  _work_units, _sci):
        check(report, problems)
    return problems
