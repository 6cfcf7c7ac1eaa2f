"""The ``sci`` section of an energy report: the Software Carbon Intensity per functional unit,
as ISO/IEC 21031:2024 (the Green Software Foundation's SCI specification 1.1.0) defines it:
``SCI = (O + M) per R`` with ``O = E x I``.

- ``E`` (kWh): the report's facility energy. For a run that is every node's energy (task
  work, idle, boot, off) x PUE, as the specification asks (all hardware reserved or
  provisioned, and the data centre's efficiency); for one job it is that job's task work x
  PUE only (the job's share of idle hardware is not known), and the section says so.
- ``I`` (gCO2e/kWh): the carbon intensity that priced the report's emissions: one given
  (it must be the grid's location-based intensity, not a market-based figure), or the
  energy-weighted mean of the carbon signal the run was priced against (then ``O`` is that
  time-integrated figure).
- ``M`` (gCO2e): embodied emissions of the hardware's share for the run, as the user gives
  them (``TE x TS x RS`` in the specification's terms); never estimated here. Without it the
  SCI is not computed: the operational part per unit is given alone, and the section says M
  is missing.
- ``R``: each unit of work the tasks counted (``work_units``), one row per unit.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

SPECIFICATION = ("ISO/IEC 21031:2024 Software Carbon Intensity (SCI); Green Software Foundation SCI specification "
                 "1.1.0")
FORMULA = "SCI = (O + M) per R, O = E x I (E in kWh, I in gCO2e/kWh, O and M in gCO2e)"
M_MISSING = ("missing: no embodied-emissions figure was given (embodied_g_co2e); TAO does not estimate it, so the "
             "SCI is not computed and only the operational emissions per unit are given")


def _boundary(job: Optional[str], federated: bool) -> str:
    if federated:
        return "sum of the members' facility energy (each member's boundary as in its report)"
    if job is not None:
        return (f"job {job}: its task work x PUE; its share of idle, boot and off energy is not known, so E is narrower "
                "than the specification's boundary (all provisioned hardware)")
    return "every node of the run (task work, idle, boot, off: all provisioned hardware) x PUE"


I_SOURCES = {
    "intensity given": "the carbon intensity given for the report; the SCI needs the grid's location-based intensity "
                       "(average or marginal), not a market-based figure, and TAO cannot tell which was given",
    "summary record": "the energy-weighted mean of the carbon signal the run was priced against; O is the facility "
                      "power integrated against that signal (summary record)",
    "sum of members": "each member's own intensity; O is the sum of the members' emissions",
}
NO_INTENSITY = ("none: give the grid's location-based carbon intensity (gCO2e/kWh), or price the run against a carbon "
                "signal")


def _status(have_r: bool, o_g: Optional[float], m_g: Optional[float]) -> str:
    missing = ([] if have_r else ["R (no unit of work counted)"]) + ([] if o_g is not None else
                                                                   ["I (no carbon intensity)"])
    missing += [] if m_g is not None else ["M (embodied emissions not given)"]
    return "complete" if not missing else "incomplete: " + ", ".join(missing)


def sci_section(*, facility_j: float, emissions: Optional[Mapping[str, Any]], embodied_g: Optional[float],
                work_units: Mapping[str, Any], job: Optional[str] = None, federated: bool = False) -> dict:
    """The section from the report's facility energy (J), emissions section, the embodied
    emissions given (gCO2e, or None) and its ``work_units`` section."""
    e_kwh = facility_j / 3.6e6
    o_g = emissions["emissions_kg_co2e"] * 1000.0 if emissions else None
    rows = []
    for t in work_units["totals"]:
        r = t["amount"]
        rows.append({"unit": t["unit"], "r": r,
                     "operational_g_co2e_per_unit": None if o_g is None else o_g / r,
                     "sci_g_co2e_per_unit": None if (o_g is None or embodied_g is None) else (o_g + embodied_g) / r})
    return {
        "specification": SPECIFICATION, "formula": FORMULA,
        "e_kwh": e_kwh, "e_boundary": _boundary(job, federated),
        "i_g_co2e_per_kwh": emissions["carbon_intensity_g_per_kwh"] if emissions else None,
        "i_source": I_SOURCES[emissions["basis"]] if emissions else NO_INTENSITY,
        "o_g_co2e": o_g,
        "m_g_co2e": embodied_g,
        "m_source": "given (embodied_g_co2e)" if embodied_g is not None else M_MISSING,
        "per_unit": rows,
        "status": _status(bool(rows), o_g, embodied_g),
    }
