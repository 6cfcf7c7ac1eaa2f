"""The ``model_documentation`` section of an energy report: the energy and compute items of
the Model Documentation Form of the General-Purpose AI Code of Practice (Transparency
chapter, published 10 July 2025), filled from the ledger where TAO knows the answer and
left to the provider, with the reason, where it does not.

The items' wording is transcribed from secondary sources that quote the form (see the
README's governance section); the form's own text was not at hand when this was written.

Items (``status``: ``filled`` or ``left to the provider``):

- ``training_time``: wall-clock time (the run's makespan; a job's span) in days and
  seconds, and hardware-days from the inventory: node-days (each node's record span) and
  GPU-days (GPUs x span). A job's share of the inventory is not recorded: its hardware-days
  are left to the provider.
- ``training_computation``: floating point operations. TAO counts none; filled only from a
  ``flops`` unit the tasks counted themselves (``tao.count("flops", n)``).
- ``training_energy``: the facility energy in MWh, to as many significant figures as the
  standard uncertainty allows (the last digit at the uncertainty's first significant digit)
  and never fewer than two; measured or estimated as the provenance says.
- ``energy_methodology``: text generated from the sources, methods, uncertainty,
  attribution and boundary actually used.
- ``inference_computation``: benchmarked FLOPs of inference with its task and hardware:
  not something a run's energy ledger holds, always left to the provider.
- ``boundary``: component, node and facility (PUE) boundary of the energy figure; the form
  defines none, so it is stated here.

A report covers one run (or job, or a federation of runs); whether that is the model's
training is the provider's statement (``scope_note``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

FORM = ("Model Documentation Form, General-Purpose AI Code of Practice, Transparency chapter (published 10 July "
        "2025)")
WORDING = ("items as transcribed from secondary sources quoting the form, not checked against the form's own text")
LEFT = "left to the provider"
FILLED = "filled"
J_PER_MWH = 3.6e9
S_PER_DAY = 86400.0
MIN_SIGNIFICANT = 2

ITEM_LABELS = {
    "training_time": "Training time (wall-clock and hardware-days)",
    "training_computation": "Amount of computation used for training (floating point operations), with its "
                            "measurement methodology",
    "training_energy": "Amount of energy used for training (measured or estimated, MWh, at least two significant "
                       "figures)",
    "energy_methodology": "Energy measurement methodology",
    "inference_computation": "Benchmarked amount of computation used for inference (floating point operations), "
                             "with its task and hardware",
    "boundary": "Measurement boundary (not an item of the form: the form defines none)",
}


# ----------------------------------------------------------------------------- numbers
def significant_text(x: float, sig: int) -> str:
    """``x`` with ``sig`` significant figures, trailing zeros kept: positional between 1e-4
    and 1e6, else scientific (``1.2e-05``)."""
    sig = max(1, min(int(sig), 15))
    if x == 0:
        return "0." + "0" * (sig - 1) if sig > 1 else "0"
    exp = math.floor(math.log10(abs(x)))
    if not -4 <= exp < 6:
        return f"{x:.{sig - 1}e}"
    decimals = sig - 1 - exp
    if decimals >= 0:
        text = f"{x:.{decimals}f}"
        # rounding up can add a digit (9.96 -> 10.0): keep the count of significant figures
        return text if math.floor(math.log10(abs(float(text)))) == exp else f"{x:.{max(decimals - 1, 0)}f}"
    return f"{round(x, decimals):.0f}"


def figures_allowed(value: float, uncertainty: Optional[float], minimum: int = MIN_SIGNIFICANT) -> int:
    """Significant figures of ``value`` whose last digit sits at the first significant digit
    of its standard ``uncertainty`` (same unit), never fewer than ``minimum``; ``minimum``
    when the uncertainty is unknown or zero."""
    if value == 0 or not uncertainty or uncertainty <= 0:
        return minimum
    return max(minimum, min(15, math.floor(math.log10(abs(value))) - math.floor(math.log10(uncertainty)) + 1))


# ----------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class MdfInputs:
    """What the form's items are filled from. Energies in J, times in s."""

    facility_j: float
    it_j: float
    pue: float
    pue_source: str
    provenance: Mapping[str, Any]
    by_component: Sequence[Mapping[str, Any]]
    node_boundary: str  #: what the IT energy is the sum of
    wall_clock_s: Optional[float]
    wall_clock_basis: str
    node_days: Optional[float]
    gpu_days: Optional[float]
    hardware: str  #: the inventory, in words
    flops: Optional[float]  #: FLOPs the tasks counted (unit ``flops``), or None
    evidence: str  #: where the figures come from (ledger, members)
    attribution_methods: Sequence[str]
    scope_note: str


def _training_time(m: MdfInputs) -> dict:
    days = None if m.wall_clock_s is None else m.wall_clock_s / S_PER_DAY
    parts = []
    if days is not None:
        parts.append(f"{significant_text(days, MIN_SIGNIFICANT)} days wall-clock ({m.wall_clock_s:.0f} s, "
                     f"{m.wall_clock_basis})")
    else:
        parts.append(f"wall-clock: {m.wall_clock_basis}")
    if m.node_days is not None:
        hw = f"{significant_text(m.node_days, MIN_SIGNIFICANT)} node-days"
        if m.gpu_days:
            hw += f", {significant_text(m.gpu_days, MIN_SIGNIFICANT)} GPU-days"
        parts.append(f"{hw} on {m.hardware}")
    else:
        parts.append(f"hardware-days: {LEFT} (a job's share of the inventory is not recorded); inventory: {m.hardware}")
    filled = days is not None or m.node_days is not None
    return {"status": FILLED if filled else LEFT, "wall_clock_s": m.wall_clock_s, "wall_clock_days": days,
            "node_days": m.node_days, "gpu_days": m.gpu_days, "hardware": m.hardware, "text": "; ".join(parts) + "."}


def _training_computation(m: MdfInputs) -> dict:
    if m.flops is None:
        return {"status": LEFT, "flops": None,
                "text": "N/A from TAO: it counts no floating point operations. Give the figure and its methodology, or "
                        "have the training tasks count them with tao.count(\"flops\", n) and build the report again."}
    return {"status": FILLED, "flops": m.flops,
            "text": f"{significant_text(m.flops, MIN_SIGNIFICANT)} FLOPs, the sum of the counts the tasks made with "
                    "tao.count(\"flops\", n); how each task counted them is the provider's methodology to state."}


def _energy(m: MdfInputs) -> dict:
    u = m.provenance["uncertainty"]
    mwh = m.facility_j / J_PER_MWH
    std = u["standard_j"] * m.pue / J_PER_MWH if u["complete"] else None
    sig = figures_allowed(mwh, std)
    measured = m.provenance["measured_share"] >= 1.0 - 1e-9
    how = "measured" if measured else f"estimated ({_how(m.provenance)}, not read from meters)"
    unc = (f"standard uncertainty {significant_text(std, 2)} MWh" if std else
           "uncertainty unknown, so two significant figures")
    text = f"{significant_text(mwh, sig)} MWh, {how}; {unc}; facility energy (IT energy x PUE {m.pue:g})."
    return {"status": FILLED, "energy_mwh": mwh, "energy_mwh_text": significant_text(mwh, sig),
            "significant_figures": sig, "standard_uncertainty_mwh": std, "measured": measured, "text": text}


def _sources_text(prov: Mapping[str, Any]) -> str:
    rows = []
    for r in prov["by_source"]:
        methods = "; ".join(r["methods"]) or "method not stated"
        share = "n/a" if r["share"] is None else f"{100 * r['share']:.1f} %"
        rows.append(f"{share} {r['source']} ({methods})")
    return ", ".join(rows) or "no energy record"


def _uncertainty_text(prov: Mapping[str, Any], it_j: float) -> str:
    u = prov["uncertainty"]
    if u["complete"] and u["relative"] is not None and it_j > 0:
        return (f"relative standard uncertainty {100 * u['relative']:.1f} % (per-record uncertainties combined by "
                f"root sum of squares; {100 * u['upper_bound_j'] / it_j:.1f} % if their errors are fully correlated)")
    return f"uncertainty: {u['note']}"


def _how(prov: Mapping[str, Any]) -> str:
    measured = prov["measured_share"]
    if measured >= 1.0 - 1e-9:
        return "measured"
    return "modeled" if measured <= 1e-9 else f"partly measured ({100 * measured:.1f} %), partly modeled"


def _methodology(m: MdfInputs, boundary: str) -> dict:
    text = (f"Energy {_how(m.provenance)} per node by TAO: {_sources_text(m.provenance)}. {boundary} "
            + (f"Energy attributed to tasks: {'; '.join(m.attribution_methods)}. " if m.attribution_methods else "")
            + f"{_uncertainty_text(m.provenance, m.it_j)[0].upper() + _uncertainty_text(m.provenance, m.it_j)[1:]}. {m.evidence} No delegated act under Article 53(5) AI "
              "Act details a measurement method yet; this is TAO's.")
    return {"status": FILLED, "text": text}


def _boundary(m: MdfInputs) -> dict:
    split = [r["component"] for r in m.by_component if r["component"] != "other" and (r["energy_j"] or 0) > 0]
    component = (f"split by component: {', '.join(split)} and other" if split else
                 "not split by component (the sources give whole-node energy)")
    facility = f"facility energy = IT energy x PUE {m.pue:g} ({m.pue_source})"
    text = f"Boundary: component: {component}; node: {m.node_boundary}; facility: {facility}."
    return {"status": FILLED, "component": component, "node": m.node_boundary, "facility": facility, "pue": m.pue,
            "text": text}


def mdf_section(m: MdfInputs) -> dict:
    """The section (every item, with the text to paste into the form)."""
    boundary = _boundary(m)
    return {
        "form": FORM, "wording": WORDING, "scope_note": m.scope_note, "labels": dict(ITEM_LABELS),
        "training_time": _training_time(m),
        "training_computation": _training_computation(m),
        "training_energy": _energy(m),
        "energy_methodology": _methodology(m, boundary["text"]),
        "inference_computation": {
            "status": LEFT, "flops": None,
            "text": "N/A from TAO: the benchmarked computation of inference (FLOPs for a stated task on stated "
                    "hardware) is a property of the model, not of a run's energy ledger; give it from the benchmark."},
        "boundary": boundary,
    }


# ----------------------------------------------------------------------------- inputs of a run
def inventory_text(node_types: Sequence[Mapping[str, Any]]) -> str:
    """``6 nodes: 3 x x5675 (12 CPUs), 1 x gpu (12 CPUs, 2 GPUs)``."""
    n = sum(t["count"] for t in node_types)
    parts = [f"{t['count']} x {t['cluster'] + '/' if t.get('cluster') else ''}{t['node_type']} ({t['cpus']:g} CPUs"
             + (f", {t['gpus']:g} GPUs)" if t["gpus"] else ")") for t in node_types]
    return f"{n} node{'s' if n != 1 else ''}: " + ", ".join(parts) if parts else "no inventory recorded"


def hardware_days(nodes: Sequence[Any], gpus_of: Mapping[str, float],
                  wall_clock_s: Optional[float]) -> tuple[Optional[float], Optional[float]]:
    """(node-days, GPU-days) of node records: each node's record span (its end_s - start_s),
    else the wall-clock time; None when neither is known."""
    node_s = gpu_s = 0.0
    for n in nodes:
        span = (n.end_s - n.start_s) if (n.start_s is not None and n.end_s is not None) else wall_clock_s
        if span is None:
            return None, None
        node_s += span
        gpu_s += span * gpus_of.get(n.node_id, 0.0)
    if not nodes:
        return None, None
    return node_s / S_PER_DAY, gpu_s / S_PER_DAY


def _node_boundary(basis_name: str, n_records: int, job: Optional[str]) -> str:
    if job is not None:
        return (f"job {job}: its task work, the sum of its {n_records} {basis_name} record(s); idle, boot and off "
                "energy and other jobs' work are not in it")
    if basis_name == "node":
        return f"IT energy = the energy of the run's {n_records} node record(s), each task work + idle + boot + off"
    return (f"IT energy = the sum of the run's {n_records} {basis_name} record(s): task work only (no node records, so "
            "idle, boot and off energy are not in it)")


def _span(records: Sequence[Any]) -> Optional[float]:
    starts = [r.start_s for r in records if r.start_s is not None]
    ends = [r.end_s for r in records if r.end_s is not None]
    return (max(ends) - min(starts)) if starts and ends and len(starts) == len(ends) == len(records) else None


def _evidence(ledger: Mapping[str, Any]) -> str:
    if ledger.get("status") != "intact":
        return "The figures come from records of no verified ledger."
    return (f"The figures come from the signed, hash-chained ledger up to record {ledger['head_seq']} (head "
            f"{ledger['head_hash']}); `tao report validate --ledger` rebuilds them from it.")


def run_inputs(rr: Any, job: Optional[str], energy: Mapping[str, Any], prov: Mapping[str, Any], basis: Any,
               hardware: Mapping[str, Any], ledger: Mapping[str, Any], flops: Optional[float]) -> MdfInputs:
    """The form's inputs for one run (``rr``: ``RunRecords``) or one ``job`` of it."""
    s = rr.summary
    if job is None and s is not None and s.makespan_s is not None:
        wall, wall_basis = s.makespan_s, "the run's makespan"
    else:
        wall = _span(basis.records)
        wall_basis = (f"the span of the {'job' if job else 'run'}'s records" if wall is not None
                      else f"{LEFT}: the records state no start and end times")
    gpus_of = {n.node_id: n.gpus for n in rr.config.nodes}
    node_days, gpu_days = hardware_days(rr.nodes, gpus_of, wall) if job is None else (None, None)
    who = f"job {job} of run {rr.config.run_id}" if job else f"run {rr.config.run_id} ({rr.config.engine}, policy " \
                                                             f"{rr.config.policy})"
    return MdfInputs(
        facility_j=energy["facility_energy_j"], it_j=energy["it_energy_j"], pue=energy["pue"],
        pue_source=energy["pue_source"], provenance=prov, by_component=energy["by_component"],
        node_boundary=_node_boundary(basis.name, len(basis.records), job), wall_clock_s=wall, wall_clock_basis=wall_basis,
        node_days=node_days, gpu_days=gpu_days, hardware=inventory_text(hardware["node_types"]), flops=flops,
        evidence=_evidence(ledger), attribution_methods=energy["attribution_methods"],
        scope_note=(f"This report covers {who}. If that is the model's training (or a part of it), these are its "
                    "figures; relating the run to the model is the provider's statement."))
