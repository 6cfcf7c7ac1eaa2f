"""Federation: the reports of several clusters combined into one.

Every input is verified before anything is summed (``verify_member``): schema, integrity
digest and internal sums (``validate_report``), and then its provenance, either its report
signature against the public key given for it, or (a run report) a rebuild from its ledger
that must give the same report (``recheck.check_against_ledger``); an input with neither is
refused. Duplicates are refused: two inputs holding the same run report (same SHA-256) or
run reports of the same ledger head (their energy would be counted twice).

The merged report (``report_type`` "federated") sums the energy figures, prefixes node,
group and job names with the input's label (``label/node``), and lists in ``federation``
each input (label, SHA-256, how it was verified) and each run report it holds (``members``:
run, ledger section, figures, signer; ``via`` names the federated input a member came
through). ``recheck.check_federated`` validates a federated report again from its inputs.

Combined uncertainty: members' standard uncertainties in quadrature (independent clusters),
upper bounds added. The overhead share of the federation is 1 - total task work / total
facility energy when every member has one. Emissions are summed when every member has them.

Units of work: the members' counts summed per unit, their per-group and per-job rows kept
(names prefixed); the federation's energy per unit is its total energy over the total count.
SCI: E and O summed; M the sum of the members' M when every member gave one. The Model
Documentation Form items are filled from the summed figures (hardware-days summed; the
wall-clock time is each member's, since their runs may overlap).
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

from tao_core.accounting.figures import INVERSION_THRESHOLD, OVERHEAD_SHARE_DEFINITION, overhead_share
from tao_core.accounting.records import COMPONENTS
from tao_core.errors import InputError, ParameterError
from tao_core.governance.breakdown import PART_DEFINITIONS
from tao_core.governance import mdf, work_units
from tao_core.governance.canonical import to_jsonable
from tao_core.governance.provenance import SOURCE_CLASSES, UNCERTAINTY_METHOD, SourceSum, share, source_rows
from tao_core.governance.regulatory import regulatory_section
from tao_core.governance.report import REPORT_FORMAT, generator, now_iso
from tao_core.governance.sci import sci_section
from tao_core.governance.validate import seal, validate_report

MERGE_METHOD = (
    "sum of member reports, each verified (schema, integrity digest, internal sums, and its signature under a given "
    "key or a rebuild from its ledger); names prefixed with the input's label; uncertainties in quadrature"
)
PART_KEYS = ("task_energy_j", "idle_energy_j", "boot_energy_j", "off_energy_j")


@dataclass(frozen=True)
class MemberEvidence:
    """What an input report is verified with: ``pubkey`` (an Ed25519 public key object; the
    report's signature must be by it, and with ``ledger`` the ledger's checkpoints too)
    and/or ``ledger`` (path of the ledger a run report was built from: rebuilding it must
    give the same report)."""

    pubkey: Any = None
    ledger: Optional[Any] = None


def _reject(source: str, problems: Sequence[str]) -> InputError:
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return InputError(f"{source}: rejected, not a verified report: {problems[0]}{more}")


def verify_member(report: Mapping[str, Any], evidence: MemberEvidence, source: str) -> dict:
    """The ``verified_by`` entry of an input that verifies; ``InputError`` naming ``source`` otherwise."""
    from tao_core.governance.keys import key_id
    from tao_core.governance.recheck import check_against_ledger

    problems = validate_report(report)
    if problems:
        raise _reject(source, problems)
    kid = key_id(evidence.pubkey) if evidence.pubkey is not None else None
    if evidence.ledger is not None:
        if report["report_type"] != "run":
            raise _reject(source, ["a federated report has no ledger of its own; verify it by its signature"])
        problems = check_against_ledger(report, evidence.ledger, evidence.pubkey)
        if problems:
            raise _reject(source, problems)
        return {"method": "ledger", "key_id": kid, "ledger_head": report["ledger"]["head_hash"]}
    if evidence.pubkey is None:
        raise _reject(source, ["nothing to verify it with: give its signer's public key or the ledger it was built from"])
    problems = validate_report(report, evidence.pubkey)
    if problems:
        raise _reject(source, problems)
    return {"method": "signature", "key_id": kid, "ledger_head": None}


def _label(report: Mapping[str, Any], index: int, given: Optional[str]) -> str:
    if given:
        return given
    s = report["subject"]
    return str(s.get("cluster_name") or s.get("run_id") or f"cluster-{index + 1}")


def _labels(reports: Sequence[Mapping[str, Any]], names: Sequence[Optional[str]], sources: Sequence[str]) -> list[str]:
    labels = [_label(r, i, n) for i, (r, n) in enumerate(zip(reports, names))]
    seen: dict[str, int] = {}
    for i, lab in enumerate(labels):
        if lab in seen:
            raise ParameterError("names", lab, f"{sources[i]} has the same label as {sources[seen[lab]]}; "
                                               "give distinct labels with {names}")
        seen[lab] = i
    return labels


def _member(rep: Mapping[str, Any], label: str) -> dict:
    e, digest = rep["energy"], rep["integrity"]["content_sha256"]
    em = rep.get("emissions")
    return {
        "cluster": label, "report_sha256": digest, "run_id": rep["subject"]["run_id"],
        "engine": rep["subject"]["engine"], "policy": rep["subject"]["policy"], "job": rep["subject"]["job"],
        "generated_at": rep["generated_at"], "ledger": rep["ledger"], "it_energy_j": e["it_energy_j"],
        "facility_energy_j": e["facility_energy_j"], "pue": e["pue"], "task_energy_j": e["task_energy_j"],
        "overhead_share": rep["optimization_inversion"]["overhead_share"],
        "emissions_kg_co2e": em["emissions_kg_co2e"] if em else None,
        "measured_share": rep["provenance"]["measured_share"],
        "signer_key_id": (rep["integrity"].get("signature") or {}).get("key_id"), "via": None,
    }


def members_of(rep: Mapping[str, Any], label: str) -> list[dict]:
    """The run reports an input holds, as federation members labelled under ``label``."""
    if rep["report_type"] == "run":
        return [_member(rep, label)]
    digest = rep["integrity"]["content_sha256"]
    return [dict(m, cluster=f"{label}/{m['cluster']}", via=m["via"] or digest) for m in rep["federation"]["members"]]


def _check_duplicates(members_per_input: Sequence[list[dict]], sources: Sequence[str]) -> None:
    digests: dict[str, str] = {}
    heads: dict[str, str] = {}
    for src, members in zip(sources, members_per_input):
        for m in members:
            d, head = m["report_sha256"], (m["ledger"] or {}).get("head_hash")
            if d in digests:
                raise InputError(f"{src}: holds the same report (SHA-256 {d}) as {digests[d]}; "
                                 "merging it twice would count its energy twice")
            if head is not None and head in heads:
                raise InputError(f"{src}: built from the same ledger head ({head}) as {heads[head]}; "
                                 "merging both would count that run's energy twice")
            digests[d] = src
            if head is not None:
                heads[head] = src


def _prefixed(rows: Sequence[Mapping[str, Any]], key: str, label: str) -> list[dict]:
    return [dict(r, **{key: f"{label}/{r[key]}"}) for r in rows]


def _resort(rows: list[dict], it: float) -> list[dict]:
    return [dict(r, share=share(r["energy_j"], it)) for r in sorted(rows, key=lambda r: (-r["energy_j"], str(r)))]


def _sum_or_none(values: Sequence[Optional[float]]) -> Optional[float]:
    return None if any(v is None for v in values) else float(sum(values))


def _energy(reports: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> dict:
    es = [r["energy"] for r in reports]
    it = sum(e["it_energy_j"] for e in es)
    fac = sum(e["facility_energy_j"] for e in es)
    comp = OrderedDict((c, sum(row["energy_j"] for e in es for row in e["by_component"] if row["component"] == c))
                       for c in COMPONENTS)
    rows = {k: [row for e, lab in zip(es, labels) for row in _prefixed(e[f"by_{k}"], name, lab)]
            for k, name in (("node", "node_id"), ("group", "group"), ("job", "job"))}
    return {
        "it_energy_j": it, "it_energy_basis": "sum of member reports",
        "facility_energy_j": fac, "facility_energy_method": "sum of member reports",
        "facility_overhead_j": fac - it, "pue": (fac / it) if it > 0 else 1.0,
        "pue_source": "facility / IT energy over all members",
        **{k: _sum_or_none([e[k] for e in es]) for k in PART_KEYS},
        "definitions": dict(PART_DEFINITIONS), "breakdown_basis": "member reports",
        "by_component": [{"component": c, "energy_j": v, "share": share(v, it)} for c, v in comp.items()],
        "by_node": _resort(rows["node"], it), "by_group": _resort(rows["group"], it), "by_job": _resort(rows["job"], it),
        "attribution_methods": sorted({m for e in es for m in e["attribution_methods"]}),
    }


def _provenance(reports: Sequence[Mapping[str, Any]], it: float) -> dict:
    by: "OrderedDict[str, SourceSum]" = OrderedDict()
    std2 = upper = 0.0
    without_u = 0
    complete = True
    for rep in reports:
        p = rep["provenance"]
        for r in p["by_source"]:
            u = r["uncertainty_rel"]
            by.setdefault(r["source"], SourceSum()).add(r["energy_j"], None, u, records=r["records"])
            by[r["source"]].methods += [m for m in r["methods"] if m not in by[r["source"]].methods]
        u = p["uncertainty"]
        complete = complete and u["complete"]
        std2 += u["standard_j"] ** 2
        upper += u["upper_bound_j"]
        without_u += u["records_without_uncertainty"]
    rows, shares = source_rows(by, it)
    std = math.sqrt(std2)
    return {
        **{f"{c}_share": shares[c] for c in SOURCE_CLASSES}, "by_source": rows,
        "uncertainty": {"standard_j": std, "relative": share(std, it) if complete else None, "upper_bound_j": upper,
                        "records_without_uncertainty": without_u, "complete": complete,
                        "note": "every member states its uncertainty" if complete
                                else "some member records state no uncertainty: the figures cover the others only",
                        "method": "members' standard uncertainties in quadrature; upper bounds summed. Per member: "
                                  + UNCERTAINTY_METHOD},
    }


def _hardware(reports: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> dict:
    hw = [(r["hardware"], lab) for r, lab in zip(reports, labels)]
    return {
        "nodes": [n for h, lab in hw for n in _prefixed(h["nodes"], "node_id", lab)],
        "node_types": [dict(t, cluster=f"{lab}/{t['cluster']}" if t["cluster"] else lab) for h, lab in hw
                       for t in h["node_types"]],
        "telemetry": [dict(t, cluster=f"{lab}/{t['cluster']}" if t["cluster"] else lab) for h, lab in hw
                      for t in h["telemetry"]],
    }


def _emissions(reports: Sequence[Mapping[str, Any]], fac: float) -> Optional[dict]:
    ems = [r["emissions"] for r in reports]
    if any(em is None for em in ems):
        return None
    cis = {em["carbon_intensity_g_per_kwh"] for em in ems}
    return {"carbon_intensity_g_per_kwh": cis.pop() if len(cis) == 1 and len(ems) == 1 else None,
            "facility_energy_kwh": fac / 3.6e6, "emissions_kg_co2e": sum(em["emissions_kg_co2e"] for em in ems),
            "basis": "sum of members",
            "method": "sum of member emissions, each facility energy x that member's carbon intensity"}


def _inversion(reports: Sequence[Mapping[str, Any]], energy: Mapping[str, Any]) -> dict:
    every = all(r["optimization_inversion"]["overhead_share"] is not None for r in reports)
    oi = overhead_share(energy["task_energy_j"], energy["facility_energy_j"]) if every else None
    return {"overhead_share": oi, "inverted": None if oi is None else oi > INVERSION_THRESHOLD,
            "threshold": INVERSION_THRESHOLD, "definition": OVERHEAD_SHARE_DEFINITION,
            "source": "1 - total task work / total facility energy of the members" if oi is not None
                      else "not computable: a member has no overhead share"}


def _controller(reports: Sequence[Mapping[str, Any]], members: Sequence[Mapping[str, Any]]) -> dict:
    decisions: dict[str, int] = {}
    for r in reports:
        for k, v in r["controller"]["decisions"].items():
            decisions[k] = decisions.get(k, 0) + v
    known = [r["controller"]["budget_adherent"] for r in reports if r["controller"]["budget_adherent"] is not None]
    return {"policy": None, "config": {m["cluster"]: {"policy": m["policy"]} for m in members},
            "decisions": dict(sorted(decisions.items())), "power_budget_w": None, "peak_power_w": None,
            "budget_violation_s": None, "budget_adherent": all(known) if known else None,
            "budget_adherence": f"{sum(1 for a in known if a)} of {len(known)} member(s) with a budget kept it"}


def _subject(reports: Sequence[Mapping[str, Any]], labels: Sequence[str], members: Sequence[Mapping[str, Any]]) -> dict:
    engines = sorted({str(m["engine"]) for m in members})
    starts = [r["subject"]["start_time"] for r in reports if r["subject"]["start_time"]]
    ends = [r["subject"]["end_time"] for r in reports if r["subject"]["end_time"]]
    return {"run_id": None, "job": None, "engine": "+".join(engines), "policy": None,
            "cluster_name": "federation of " + ", ".join(labels), "start_time": min(starts, default=None),
            "end_time": max(ends, default=None), "first_seq": None, "last_seq": None, "makespan_s": None,
            "tasks_completed": sum(r["subject"]["tasks_completed"] or 0 for r in reports) or None}


def _work_units(reports: Sequence[Mapping[str, Any]], labels: Sequence[str], energy: Mapping[str, Any],
                prov: Mapping[str, Any], emissions: Optional[Mapping[str, Any]]) -> dict:
    counted: dict[str, float] = {}
    for r in reports:
        for t in r["work_units"]["totals"]:
            counted[t["unit"]] = counted.get(t["unit"], 0.0) + t["amount"]
    u = prov["uncertainty"]
    rows = work_units.totals_rows(counted, task_j=energy["task_energy_j"], facility_j=energy["facility_energy_j"],
                                  facility_std_j=u["standard_j"] * energy["pue"] if u["complete"] else None,
                                  emissions_kg=emissions["emissions_kg_co2e"] if emissions else None)
    by = {k: [row for r, lab in zip(reports, labels) for row in _prefixed(r["work_units"][f"by_{k}"], k, lab)]
          for k in ("group", "job")}
    return work_units.section(counted, "member reports", rows, by["group"], by["job"])


def _sum_all(values: Sequence[Optional[float]]) -> Optional[float]:
    return None if not values or any(v is None for v in values) else float(sum(values))


def _documentation(reports: Sequence[Mapping[str, Any]], labels: Sequence[str], energy: Mapping[str, Any],
                   prov: Mapping[str, Any], emissions: Optional[Mapping[str, Any]], hardware: Mapping[str, Any]) -> dict:
    units = _work_units(reports, labels, energy, prov, emissions)
    md = [r["model_documentation"] for r in reports]
    flops = _sum_all([m["training_computation"]["flops"] for m in md])
    inputs = mdf.MdfInputs(
        facility_j=energy["facility_energy_j"], it_j=energy["it_energy_j"], pue=energy["pue"],
        pue_source=energy["pue_source"], provenance=prov, by_component=energy["by_component"],
        node_boundary=f"the sum of the IT energy of {len(reports)} member report(s), each with the node boundary its "
                      "report states",
        wall_clock_s=None, wall_clock_basis="see each member's report (the members' runs may overlap in time)",
        node_days=_sum_all([m["training_time"]["node_days"] for m in md]),
        gpu_days=_sum_all([m["training_time"]["gpu_days"] for m in md]),
        hardware=mdf.inventory_text(hardware["node_types"]), flops=flops,
        evidence=(f"The figures are the sums of {len(reports)} member report(s), each verified before the merge "
                  "(federation.inputs); `tao report validate --input` merges them again."),
        attribution_methods=energy["attribution_methods"],
        scope_note=(f"This report covers a federation of {', '.join(labels)}. If that is the model's training (or a "
                    "part of it), these are its figures; relating the runs to the model is the provider's statement."))
    return {"model_documentation": mdf.mdf_section(inputs), "work_units": units,
            "sci": sci_section(facility_j=energy["facility_energy_j"], emissions=emissions,
                               embodied_g=_sum_all([r["sci"]["m_g_co2e"] for r in reports]), work_units=units,
                               federated=True)}


def merge_reports(
    reports: Sequence[Mapping[str, Any]],
    *,
    evidence: Sequence[MemberEvidence],
    names: Optional[Sequence[Optional[str]]] = None,
    sources: Optional[Sequence[str]] = None,
    generated_at: Optional[str] = None,
) -> dict:
    """Verify ``reports`` (dicts) and merge them into one federated report (sealed).

    ``evidence``: one ``MemberEvidence`` per report (or one for all). ``names``: labels
    (default: each report's ``subject.cluster_name``, else its run id); they must end up
    unique. ``sources``: what to call each input in error messages (file names). Raises
    ``InputError`` (``ParameterError`` naming the parameter) when an input is invalid,
    unverified or a duplicate."""
    if not reports:
        raise ParameterError("reports", None, "give at least one report")
    n = len(reports)
    sources = list(sources) if sources else [f"input {i + 1}" for i in range(n)]
    names = list(names) if names else [None] * n
    evidence = list(evidence)
    if len(names) != n:
        raise ParameterError("names", None, f"{len(names)} label(s) for {n} report(s); give one per report or none")
    if len(evidence) not in (1, n):
        raise ParameterError("evidence", None, f"{len(evidence)} for {n} report(s); give one per report or one for all")
    evidence = evidence * n if len(evidence) == 1 else evidence
    verified = [verify_member(r, ev, src) for r, ev, src in zip(reports, evidence, sources)]
    labels = _labels(reports, names, sources)
    per_input = [members_of(r, lab) for r, lab in zip(reports, labels)]
    _check_duplicates(per_input, sources)
    members = [m for ms in per_input for m in ms]
    energy = _energy(reports, labels)
    prov = _provenance(reports, energy["it_energy_j"])
    emissions = _emissions(reports, energy["facility_energy_j"])
    hardware = _hardware(reports, labels)
    report = {
        "report_format": REPORT_FORMAT, "report_type": "federated", "generated_at": generated_at or now_iso(),
        "generator": generator(), "subject": _subject(reports, labels, members), "energy": energy,
        "provenance": prov, "hardware": hardware, "emissions": emissions,
        "optimization_inversion": _inversion(reports, energy), "controller": _controller(reports, members),
        "regulatory": regulatory_section(
            measured_all=prov["measured_share"] >= 1.0 - 1e-9,
            energy_method="; ".join(sorted({m for r in prov["by_source"] for m in r["methods"]})) or "not stated",
            facility_method="sum of member facility energy", pue_source="each member",
            attribution_methods=energy["attribution_methods"],
            emissions_method=emissions["method"] if emissions else None, federated=True),
        **_documentation(reports, labels, energy, prov, emissions, hardware),
        "federation": {
            "method": MERGE_METHOD,
            "inputs": [{"label": lab, "report_sha256": r["integrity"]["content_sha256"], "report_type": r["report_type"],
                        "verified_by": v} for r, lab, v in zip(reports, labels, verified)],
            "members": members,
        },
    }
    report = seal(to_jsonable(report, "report"))
    from tao_core.governance.consistency import sum_problems

    problems = sum_problems(report)
    if problems:
        raise InputError(f"merge: the members' figures do not add up ({problems[0]})")
    return report
