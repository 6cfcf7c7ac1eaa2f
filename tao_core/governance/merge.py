"""Federation: the reports of several clusters combined into one.

Each input is validated first (schema and integrity digest); a changed input is rejected
with ``InputError`` naming it. The merged report (``report_type`` "federated") sums the
energy figures, prefixes node, group and job names with the member's cluster label
(``cluster/node``), and keeps, per member, its run, its ledger section (head hash, signer
key ids) and the SHA-256 of its content, so every figure can be traced back to a member
report and from there to a signed ledger. A federated input contributes its own members
(``via`` names the federated report they came through).

Combined uncertainty: members' standard uncertainties added in quadrature (independent
clusters); upper bounds added. The Optimization-Inversion index of the federation is the
facility-energy-weighted mean of the members' indices (= 1 - total task work / total
facility energy when every member reports it). Emissions are summed when every member
has them, else left out.
"""
from __future__ import annotations

import datetime as _dt
import math
from collections import OrderedDict
from typing import Any, Mapping, Optional, Sequence

from tao_core.errors import InputError
from tao_core.governance.canonical import to_jsonable
from tao_core.governance.report import (
    COMPONENTS, INVERSION_THRESHOLD, OI_DEFINITION, REPORT_FORMAT, UNCERTAINTY_METHOD, _generator, _share,
    regulatory_section, source_class,
)
from tao_core.governance.validate import seal, validate_report

MERGE_METHOD = (
    "sum of member reports, each validated against the schema and its integrity digest; names prefixed "
    "with the member's cluster label; uncertainties in quadrature"
)


def _label(report: Mapping[str, Any], index: int, given: Optional[str]) -> str:
    if given:
        return given
    s = report.get("subject") or {}
    return str(s.get("cluster_name") or s.get("run_id") or f"cluster-{index + 1}")


def merge_reports(
    reports: Sequence[Mapping[str, Any]],
    *,
    names: Optional[Sequence[Optional[str]]] = None,
    sources: Optional[Sequence[str]] = None,
    generated_at: Optional[str] = None,
) -> dict:
    """Merge ``reports`` (dicts) into one federated report (sealed).

    ``names``: cluster labels (default: each report's ``subject.cluster_name``, else its
    run id); labels must end up unique. ``sources``: what to call each input in error
    messages (file names). Raises ``InputError`` when an input is invalid or changed."""
    if not reports:
        raise InputError("merge: give at least one report")
    sources = list(sources) if sources else [f"input {i + 1}" for i in range(len(reports))]
    names = list(names) if names else [None] * len(reports)
    if len(names) != len(reports):
        raise InputError(f"--name: {len(names)} name(s) for {len(reports)} report(s); give one per report or none")
    for src, rep in zip(sources, reports):
        problems = validate_report(rep)
        if problems:
            raise InputError(f"{src}: rejected, not a valid untampered report: {problems[0]}"
                             + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))

    labels = [_label(r, i, n) for i, (r, n) in enumerate(zip(reports, names))]
    seen: dict[str, int] = {}
    for i, lab in enumerate(labels):
        if lab in seen:
            raise InputError(
                f"{sources[i]}: cluster label {lab!r} is also the label of {sources[seen[lab]]}; "
                "give distinct labels with --name"
            )
        seen[lab] = i

    members: list[dict] = []
    comp: "OrderedDict[str, float]" = OrderedDict((c, 0.0) for c in COMPONENTS)
    by_node, by_group, by_job, by_src = [], [], [], OrderedDict()
    nodes, types, telemetry = [], [], []
    decisions: dict[str, int] = {}
    it = fac = 0.0
    parts: dict[str, Optional[float]] = {k: 0.0 for k in ("dynamic_energy_j", "idle_energy_j", "boot_energy_j", "off_energy_j")}
    std2 = upper = 0.0
    oi_weighted = 0.0
    oi_weight = 0.0
    oi_all = True
    em_total: Optional[float] = 0.0
    ci_values = set()
    adherent: list[Optional[bool]] = []
    without_u = 0
    complete = True
    for rep, lab in zip(reports, labels):
        e, p = rep["energy"], rep["provenance"]
        digest = rep["integrity"]["content_sha256"]
        if rep["report_type"] == "federated":
            for m in rep["federation"]["members"]:
                members.append(dict(m, cluster=f"{lab}/{m['cluster']}", via=m.get("via") or digest))
        else:
            em = rep.get("emissions")
            members.append({
                "cluster": lab,
                "report_sha256": digest,
                "run_id": rep["subject"].get("run_id"),
                "engine": rep["subject"].get("engine"),
                "policy": rep["subject"].get("policy"),
                "job": rep["subject"].get("job"),
                "generated_at": rep.get("generated_at"),
                "ledger": rep.get("ledger"),
                "it_energy_j": e["it_energy_j"],
                "facility_energy_j": e["facility_energy_j"],
                "pue": e["pue"],
                "overhead_share": rep["optimization_inversion"].get("overhead_share"),
                "emissions_kg_co2e": em["emissions_kg_co2e"] if em else None,
                "measured_share": p["measured_share"],
                "signer_key_id": (rep["integrity"].get("signature") or {}).get("key_id"),
                "via": None,
            })
        it += e["it_energy_j"]
        fac += e["facility_energy_j"]
        for name in parts:
            v = e.get(name)
            parts[name] = None if parts[name] is None or v is None else parts[name] + v
        for r in e["by_component"]:
            comp[r["component"]] = comp.get(r["component"], 0.0) + r["energy_j"]
        by_node += [dict(r, node_id=f"{lab}/{r['node_id']}") for r in e["by_node"]]
        by_group += [dict(r, group=f"{lab}/{r['group']}") for r in e["by_group"]]
        by_job += [dict(r, job=f"{lab}/{r['job']}") for r in e["by_job"]]
        for r in p["by_source"]:
            d = by_src.setdefault(r["source"], {"energy_j": 0.0, "methods": [], "records": 0, "u_abs": 0.0, "has_u": False})
            d["energy_j"] += r["energy_j"]
            d["records"] += r.get("records") or 0
            if r.get("uncertainty_rel") is not None:
                d["u_abs"] += r["uncertainty_rel"] * r["energy_j"]
                d["has_u"] = True
            d["methods"] += [m for m in r.get("methods", []) if m not in d["methods"]]
        u = p["uncertainty"]
        complete = complete and u.get("complete", True)
        std2 += u["standard_j"] ** 2
        upper += u["upper_bound_j"]
        without_u += u.get("records_without_uncertainty") or 0
        oi = rep["optimization_inversion"].get("overhead_share")
        if oi is None:
            oi_all = False
        else:
            oi_weighted += oi * e["facility_energy_j"]
            oi_weight += e["facility_energy_j"]
        em = rep.get("emissions")
        if em is None:
            em_total = None
        elif em_total is not None:
            em_total += em["emissions_kg_co2e"]
            ci_values.add(em.get("carbon_intensity_g_per_kwh"))
        hw = rep["hardware"]
        nodes += [dict(n, node_id=f"{lab}/{n['node_id']}") for n in hw.get("nodes", [])]
        types += [dict(t, cluster=lab) for t in hw.get("node_types", [])]
        telemetry += [dict(t, cluster=lab) for t in hw.get("telemetry", [])]
        for k, v in (rep["controller"].get("decisions") or {}).items():
            decisions[k] = decisions.get(k, 0) + v
        adherent.append(rep["controller"].get("budget_adherent"))

    def resort(rows: list[dict], key: str) -> list[dict]:
        return [dict(r, share=_share(r["energy_j"], it)) for r in sorted(rows, key=lambda r: -r["energy_j"])]

    prov_rows = []
    shares = {c: 0.0 for c in ("measured", "modeled", "replay", "mixed", "unknown")}
    for src, d in sorted(by_src.items(), key=lambda kv: -kv[1]["energy_j"]):
        cls = source_class(src) if src != "unattributed" else "unknown"
        s = _share(d["energy_j"], it)
        shares[cls] += s or 0.0
        prov_rows.append({"source": src, "class": cls, "methods": d["methods"], "records": d["records"],
                          "energy_j": d["energy_j"], "share": s,
                          "uncertainty_rel": _share(d["u_abs"], d["energy_j"]) if d["has_u"] else None})
    oi_val = (oi_weighted / oi_weight) if oi_all and oi_weight > 0 else None
    std = math.sqrt(std2)
    engines = sorted({str(m.get("engine")) for m in members})
    known_adh = [a for a in adherent if a is not None]
    em_section = None
    if em_total is not None:
        em_section = {
            "carbon_intensity_g_per_kwh": ci_values.pop() if len(ci_values) == 1 else None,
            "facility_energy_kwh": fac / 3.6e6,
            "emissions_kg_co2e": em_total,
            "method": "sum of member emissions, each facility energy x that member's carbon intensity",
        }
    measured_all = shares["measured"] >= 1.0 - 1e-9
    report = {
        "report_format": REPORT_FORMAT,
        "report_type": "federated",
        "generated_at": generated_at or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "generator": _generator(),
        "subject": {
            "run_id": None, "job": None, "engine": engines[0] if len(engines) == 1 else "+".join(engines),
            "policy": None, "cluster_name": "federation of " + ", ".join(labels),
            "start_time": min((r["subject"].get("start_time") for r in reports if r["subject"].get("start_time")), default=None),
            "end_time": max((r["subject"].get("end_time") for r in reports if r["subject"].get("end_time")), default=None),
            "makespan_s": None,
            "tasks_completed": sum(r["subject"].get("tasks_completed") or 0 for r in reports) or None,
        },
        "energy": {
            "it_energy_j": it,
            "it_energy_basis": "sum of member reports",
            "facility_energy_j": fac,
            "facility_energy_method": "sum of member reports",
            "facility_overhead_j": fac - it,
            "pue": (fac / it) if it > 0 else 1.0,
            "pue_source": "facility / IT energy over all members",
            **parts,
            "breakdown_basis": "member reports",
            "by_component": [{"component": c, "energy_j": v, "share": _share(v, it)} for c, v in comp.items()],
            "by_node": resort(by_node, "node_id"),
            "by_group": resort(by_group, "group"),
            "by_job": resort(by_job, "job"),
            "attribution_methods": sorted({m for r in reports for m in r["energy"].get("attribution_methods", [])}),
        },
        "provenance": {
            "measured_share": shares["measured"], "modeled_share": shares["modeled"], "replay_share": shares["replay"],
            "mixed_share": shares["mixed"], "unknown_share": shares["unknown"], "by_source": prov_rows,
            "uncertainty": {"standard_j": std, "relative": _share(std, it) if complete else None,
                            "upper_bound_j": upper, "records_without_uncertainty": without_u, "complete": complete,
                            "note": "every member states its uncertainty" if complete
                                    else "some member records state no uncertainty: the figures cover the others only",
                            "method": "members' standard uncertainties in quadrature; upper bounds summed. Per member: "
                                      + UNCERTAINTY_METHOD},
        },
        "hardware": {"nodes": nodes, "node_types": types, "telemetry": telemetry},
        "emissions": em_section,
        "optimization_inversion": {
            "overhead_share": oi_val,
            "inverted": (oi_val > INVERSION_THRESHOLD) if oi_val is not None else None,
            "threshold": INVERSION_THRESHOLD,
            "definition": OI_DEFINITION,
            "source": "facility-energy-weighted mean of the members' indices" if oi_val is not None
                      else "not computable: a member has no index",
        },
        "controller": {
            "policy": None,
            "config": {m["cluster"]: {"policy": m.get("policy")} for m in members},
            "decisions": dict(sorted(decisions.items())),
            "power_budget_w": None,
            "peak_power_w": None,
            "budget_violation_s": None,
            "budget_adherent": all(known_adh) if known_adh else None,
            "budget_adherence": f"{sum(1 for a in known_adh if a)} of {len(known_adh)} member(s) with a budget kept it",
        },
        "regulatory": regulatory_section(
            measured_all=measured_all,
            energy_method="; ".join(sorted({m for r in prov_rows for m in r["methods"]})) or "not stated",
            facility_method="sum of member facility energy", pue_source="each member",
            attribution_methods=sorted({m for r in reports for m in r["energy"].get("attribution_methods", [])}),
            has_emissions=em_section is not None, federated=True,
        ),
        "federation": {"members": members, "method": MERGE_METHOD},
    }
    return seal(to_jsonable(report, "report"))
