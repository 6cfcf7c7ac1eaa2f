"""The energy report of one run (or one job of a run), built from ledger records.

``build_report(ledger_path, ...)`` verifies the ledger and summarises the records of one run
(a run ends at its ``summary`` record; a second ``config`` also starts a new one);
``build_report_from_records(records, ...)`` does the same from records already read. Both
return a dict that validates against the JSON Schema shipped beside this module
(``energy_report.schema.json``) and ends with an ``integrity`` field (``validate.py``).
``write_report(report, path, fmt)`` (``output.py``) writes JSON, Markdown
or HTML (``render.py``).

Record payloads read (see docs/architecture.md, "Ledger records"):

* ``config``: run_id, engine, policy, controller, cluster {name?, pue, power_budget_w,
  nodes [{node_id, node_type, cpus, gpus}]}, telemetry [{domain, source, method}];
* ``energy``: scope (task, node, group, job), id, node_id, group, job, energy_j,
  components {cpu_package, dram, gpu, other}, source, method, uncertainty (relative
  standard uncertainty), start_s, end_s;
* ``summary``: it_energy_j, facility_energy_j, pue, dynamic/idle/boot_energy_j,
  overhead_share, peak_power_w, power_budget_w, budget_violation_s, makespan_s,
  tasks_completed;
* ``decision``: ``DecisionEvent.to_dict()`` (counted per kind).

How the figures are derived (also written into the report's ``method`` fields):

* The basis of the breakdown is the ``node`` energy records when there are any (they hold
  idle energy too), else the ``task`` records, else ``group``/``job`` records.
* IT energy: the summary's ``it_energy_j`` when present, else the sum of the basis.
  Energy in the IT total but in no basis record is shown as ``unattributed``.
* By group and by job: the ``group``/``job`` records when present, else the sum of the
  ``task`` records per group/job. By node: the ``node`` records, else the task records.
* Facility energy: the summary's ``facility_energy_j``, else IT energy x PUE (the
  summary's PUE, else the config's, else 1.0, flagged as assumed).
* Uncertainty: each record's relative standard uncertainty times its energy; combined as
  the root sum of squares (independent errors) with the plain sum (fully correlated
  errors) as an upper bound.
* Emissions: facility energy in kWh x the carbon intensity given (gCO2e/kWh).
* Optimization-Inversion index: ``overhead_share``, the share of facility energy not spent
  on task work (idle, boot, off, facility overhead); above 0.5 the run is "inverted".
  From the summary when present, else 1 - dynamic / facility energy (dynamic: summary's
  ``dynamic_energy_j``, else the sum of task records).
"""
from __future__ import annotations

import datetime as _dt
import math
import os
import pathlib
from collections import OrderedDict
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

from tao_core.errors import InputError
from tao_core.governance.canonical import to_jsonable
from tao_core.governance.validate import seal

REPORT_FORMAT = "tao-energy-report/1"
INVERSION_THRESHOLD = 0.5
COMPONENTS = ("cpu_package", "dram", "gpu", "other")
LEDGER_KINDS = frozenset({"ledger", "checkpoint", "recovery"})
SOURCE_CLASSES = ("measured", "modeled", "replay", "mixed", "unknown")
UNCERTAINTY_METHOD = (
    "per-record relative standard uncertainty x energy; combined by root sum of squares "
    "(independent errors); upper bound: plain sum (fully correlated errors)"
)
OI_DEFINITION = (
    "share of facility energy not spent on task work (idle, boot, off, facility overhead); "
    "inverted when above 0.5"
)

PathLike = Union[str, "os.PathLike[str]"]


# ----------------------------------------------------------------------------- helpers
def _num(value: Any) -> Optional[float]:
    """A finite float, or None (strings such as "inf" written by the ledger count as None)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def _share(part: Optional[float], whole: Optional[float]) -> Optional[float]:
    if part is None or whole is None or whole <= 0:
        return None
    return part / whole


def source_class(source: Optional[str]) -> str:
    """measured, modeled, replay, mixed or unknown, for a source string such as
    ``measured-rapl`` or ``measured-rapl+modeled``."""
    if not source or not isinstance(source, str):
        return "unknown"
    parts = {p.strip() for p in source.split("+") if p.strip()}
    classes = set()
    for p in parts:
        if p.startswith("measured"):
            classes.add("measured")
        elif p == "modeled":
            classes.add("modeled")
        elif p == "replay":
            classes.add("replay")
        else:
            classes.add("unknown")
    if len(classes) == 1:
        return classes.pop()
    return "mixed" if classes else "unknown"


def _iso(t: Optional[float]) -> Optional[str]:
    if t is None:
        return None
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).isoformat(timespec="seconds")


def _generator() -> dict:
    try:
        from importlib.metadata import version

        v = version("tao-energy")
    except Exception:  # not installed as a distribution
        v = "unknown"
    return {"name": "tao-energy", "version": v}


# ----------------------------------------------------------------------------- runs
def split_runs(records: Iterable[Mapping[str, Any]]) -> list[dict]:
    """Group records into runs. A run ends after its ``summary`` record, and a ``config``
    record starts a new run when the current one already has a config; so a writer may
    put a run's decision records before or after its config. Ledger bookkeeping records
    (header, checkpoints, recovery) are left out."""
    runs: list[dict] = []
    current: Optional[dict] = None
    for r in records:
        kind = r.get("kind")
        if kind in LEDGER_KINDS:
            continue
        if current is None or (kind == "config" and current["config"] is not None):
            current = {"config": None, "run_id": None, "policy": None, "records": []}
            runs.append(current)
        current["records"].append(r)
        if kind == "config":
            payload = r.get("payload") or {}
            current.update(config=payload, run_id=payload.get("run_id"), policy=payload.get("policy"))
        elif kind == "summary":
            current = None
    return runs


def _select_run(
    runs: list[dict], run_id: Optional[str], policy: Optional[str] = None
) -> tuple[Optional[dict], list[Mapping[str, Any]]]:
    if not runs:
        raise InputError("ledger holds no config, energy or summary record: nothing to report")
    ids = list(OrderedDict.fromkeys(r["run_id"] for r in runs))
    if policy is not None:
        pol = [r for r in runs if r["policy"] == policy]
        pol_ids = list(OrderedDict.fromkeys(r["run_id"] for r in pol))
        if not pol_ids:
            have = sorted({str(r["policy"]) for r in runs if r["policy"] is not None})
            raise InputError(f"--policy {policy}: no run of this policy in the ledger; it holds {', '.join(have) or 'none'}")
        if run_id is None:
            if len(pol_ids) > 1:
                raise InputError(f"--policy {policy}: {len(pol_ids)} runs ({', '.join(map(str, pol_ids))}); choose one with --run-id")
            run_id = pol_ids[0]
    if run_id is None:
        if len(ids) > 1:
            listing = ", ".join(
                f"{i} (policy {next((r['policy'] for r in runs if r['run_id'] == i), None)})"
                if i is not None else "(records without a config)"
                for i in ids
            )
            raise InputError(f"ledger holds {len(ids)} runs: {listing}; choose one with --run-id or --policy")
        run_id = ids[0]
    chosen = [r for r in runs if r["run_id"] == run_id]
    if not chosen:
        raise InputError(f"--run-id {run_id}: not in the ledger; it holds {', '.join(map(str, ids))}")
    config = next((r["config"] for r in chosen if r["config"]), None)
    recs = [rec for r in chosen for rec in r["records"]]
    return config, recs


# ----------------------------------------------------------------------------- sums
def _group_sum(rows: Iterable[Mapping[str, Any]], key: str) -> "OrderedDict[str, dict]":
    out: "OrderedDict[str, dict]" = OrderedDict()
    for p in rows:
        k = p.get(key)
        if k is None:
            continue
        e = _num(p.get("energy_j"))
        if e is None:
            continue
        d = out.setdefault(str(k), {"energy_j": 0.0, "tasks": 0, "sources": set()})
        d["energy_j"] += e
        d["tasks"] += 1 if p.get("scope") == "task" else 0
        if p.get("source"):
            d["sources"].add(str(p["source"]))
    return out


def _rows(sums: Mapping[str, dict], key: str, total: Optional[float], extra=None) -> list[dict]:
    rows = []
    for k, d in sorted(sums.items(), key=lambda kv: -kv[1]["energy_j"]):
        row = {key: k, "energy_j": d["energy_j"], "share": _share(d["energy_j"], total)}
        if extra:
            row.update(extra(k, d))
        rows.append(row)
    return rows


def _provenance(basis: list[Mapping[str, Any]], unattributed_j: float, total: Optional[float]) -> dict:
    by: "OrderedDict[str, dict]" = OrderedDict()
    std2 = 0.0
    upper = 0.0
    without_u = 0
    for p in basis:
        e = _num(p.get("energy_j"))
        if e is None:
            continue
        src = str(p.get("source") or "unknown")
        d = by.setdefault(src, {"energy_j": 0.0, "methods": [], "u_abs": 0.0, "records": 0, "with_u": 0})
        d["energy_j"] += e
        d["records"] += 1
        m = p.get("method")
        if m and m not in d["methods"]:
            d["methods"].append(str(m))
        u = _num(p.get("uncertainty"))
        if u is None:
            without_u += 1
        else:
            std2 += (u * e) ** 2
            upper += abs(u * e)
            d["u_abs"] += abs(u * e)
            d["with_u"] += 1
    if unattributed_j > 0:
        by["unattributed"] = {"energy_j": unattributed_j, "methods": ["IT total minus the breakdown records"],
                              "u_abs": 0.0, "records": 0, "with_u": 0}
    rows = []
    shares = {c: 0.0 for c in SOURCE_CLASSES}
    for src, d in sorted(by.items(), key=lambda kv: -kv[1]["energy_j"]):
        cls = source_class(src) if src != "unattributed" else "unknown"
        s = _share(d["energy_j"], total)
        shares[cls] += s or 0.0
        rows.append({
            "source": src, "class": cls, "methods": d["methods"], "records": d["records"],
            "energy_j": d["energy_j"], "share": s,
            "uncertainty_rel": _share(d["u_abs"], d["energy_j"]) if d["with_u"] == d["records"] > 0 else None,
        })
    std = math.sqrt(std2)
    with_u = sum(d["with_u"] for d in by.values())
    if without_u and not with_u:
        note = f"no record states an uncertainty ({without_u} record(s)): unknown"
    elif without_u:
        note = f"{without_u} record(s) state no uncertainty: the figures cover the other {with_u} only"
    else:
        note = "every record states an uncertainty"
    return {
        "measured_share": shares["measured"],
        "modeled_share": shares["modeled"],
        "replay_share": shares["replay"],
        "mixed_share": shares["mixed"],
        "unknown_share": shares["unknown"],
        "by_source": rows,
        "uncertainty": {
            "standard_j": std,
            "relative": _share(std, total) if not without_u else None,
            "upper_bound_j": upper,
            "records_without_uncertainty": without_u,
            "complete": without_u == 0,
            "note": note,
            "method": UNCERTAINTY_METHOD,
        },
    }


# ----------------------------------------------------------------------------- build
def _check_carbon_intensity(value: Any) -> None:
    if value is not None:
        ci = _num(value)
        if ci is None or ci < 0:
            raise InputError(f"--carbon-intensity {value!r}: must be a number >= 0 (gCO2e/kWh)")


def build_report_from_records(
    records: Iterable[Mapping[str, Any]],
    *,
    ledger_info: Optional[Mapping[str, Any]] = None,
    run_id: Optional[str] = None,
    job: Optional[str] = None,
    carbon_intensity_g_per_kwh: Optional[float] = None,
    cluster_name: Optional[str] = None,
    generated_at: Optional[str] = None,
    policy: Optional[str] = None,
) -> dict:
    """The report (a dict, sealed with its integrity field) of one run, or of one ``job``
    of it, from ledger records (dicts with kind, payload, seq, time).

    ``ledger_info``: the ``ledger`` section (file, head_hash, head_seq, records,
    checkpoints, closed, status, key_ids, public_key, signer_authenticated); ``build_report``
    fills it from the verification. ``carbon_intensity_g_per_kwh``: grams CO2e per kWh of
    facility energy (omit: no emissions). ``run_id``/``policy``: which run, when the
    records hold several. Raises ``InputError`` on unusable input."""
    _check_carbon_intensity(carbon_intensity_g_per_kwh)
    records = list(records)
    config, recs = _select_run(split_runs(records), run_id, policy)
    config = config or {}
    cluster = config.get("cluster") or {}
    energy = [r["payload"] for r in recs if r.get("kind") == "energy" and isinstance(r.get("payload"), dict)]
    summaries = [r["payload"] for r in recs if r.get("kind") == "summary" and isinstance(r.get("payload"), dict)]
    decisions = [r["payload"] for r in recs if r.get("kind") == "decision" and isinstance(r.get("payload"), dict)]
    summary = summaries[-1] if summaries and job is None else {}
    if job is not None:
        energy = [p for p in energy if p.get("job") == job or (p.get("scope") == "job" and p.get("id") == job)]
        decisions = [d for d in decisions if (d.get("budget") or {}).get("job") == job or d.get("subject") == job
                     or d.get("job") == job]
        if not energy:
            raise InputError(f"--job {job}: no energy record of this job in the run")

    by_scope: dict[str, list] = {"task": [], "node": [], "group": [], "job": []}
    for p in energy:
        by_scope.setdefault(str(p.get("scope")), []).append(p)
    if job is not None:
        basis_name = "task" if by_scope["task"] else "job"
    else:
        basis_name = next((s for s in ("node", "task", "group", "job") if by_scope[s]), "none")
    basis = by_scope.get(basis_name, [])
    basis_sum = sum(_num(p.get("energy_j")) or 0.0 for p in basis)

    it_total = _num(summary.get("it_energy_j")) if summary else None
    it_basis = "summary record" if it_total is not None else f"sum of {basis_name} energy records"
    if it_total is None:
        it_total = basis_sum
    unattributed = it_total - basis_sum if it_total - basis_sum > 1e-9 * max(1.0, it_total) else 0.0

    pue = _num(summary.get("pue")) if summary else None
    pue_source = "summary record"
    if pue is None:
        pue = _num(cluster.get("pue"))
        pue_source = "config record (declared)"
    if pue is None:
        pue, pue_source = 1.0, "assumed 1.0 (no PUE declared)"
    if pue < 1.0:
        raise InputError(f"pue {pue:g} (from the {pue_source}): must be >= 1 (facility watts per IT watt); fix the run's PUE")
    facility = _num(summary.get("facility_energy_j")) if summary else None
    facility_method = "summary record" if facility is not None else "IT energy x PUE"
    if facility is None:
        facility = it_total * pue

    # components
    comp = {c: 0.0 for c in COMPONENTS}
    unspecified = 0.0
    for p in basis:
        e = _num(p.get("energy_j")) or 0.0
        parts = p.get("components") or {}
        known = 0.0
        for c in COMPONENTS:
            v = _num(parts.get(c)) if isinstance(parts, dict) else None
            if v is not None:
                comp[c] += v
                known += v
        if e - known > 1e-9 * max(1.0, e):
            unspecified += e - known
    by_component = [{"component": c, "energy_j": comp[c], "share": _share(comp[c], it_total)} for c in COMPONENTS]
    if unspecified > 0:
        by_component.append({"component": "unspecified", "energy_j": unspecified, "share": _share(unspecified, it_total)})
    if unattributed > 0:
        by_component.append({"component": "unattributed", "energy_j": unattributed, "share": _share(unattributed, it_total)})

    nodes_cfg = {str(n.get("node_id")): n for n in cluster.get("nodes") or [] if isinstance(n, dict)}
    node_src = by_scope["node"] if by_scope["node"] and job is None else by_scope["task"]
    node_sums = _group_sum(node_src, "node_id" if node_src is by_scope["task"] else "id")
    if node_src is by_scope["node"]:
        # node records carry their node in id (and maybe node_id)
        node_sums = _group_sum([dict(p, id=p.get("id") or p.get("node_id")) for p in node_src], "id")
    detail: dict[str, dict[str, float]] = {}
    if node_src is by_scope["node"]:
        for p in node_src:
            # the split lives in payload["detail"], or at the payload's top level
            det = p.get("detail") if isinstance(p.get("detail"), dict) else p
            found = {}
            # tasks_j (all energy charged to tasks) before dynamic_j, so that with idle_j it adds up
            for part, keys in (("dynamic", ("tasks_j", "dynamic_j")), ("idle", ("idle_j",)),
                               ("boot", ("boot_j",)), ("off", ("off_j",))):
                v = next((_num(det.get(k)) for k in keys if _num(det.get(k)) is not None), None)
                if v is not None:
                    found[f"{part}_j"] = v
            if found:
                acc = detail.setdefault(str(p.get("id") or p.get("node_id")), {})
                for k, v in found.items():
                    acc[k] = acc.get(k, 0.0) + v
    by_node = _rows(node_sums, "node_id", it_total, lambda k, d: {
        "node_type": (nodes_cfg.get(k) or {}).get("node_type"),
        "source": "+".join(sorted(d["sources"])) or None,
        **detail.get(k, {}),
    })
    group_sums = _group_sum(by_scope["group"], "id") if by_scope["group"] and job is None else _group_sum(by_scope["task"], "group")
    task_counts = _group_sum(by_scope["task"], "group")
    by_group = _rows(group_sums, "group", it_total, lambda k, d: {
        "tasks": (task_counts.get(k) or {}).get("tasks", 0) if by_scope["task"] else None})
    job_sums = _group_sum(by_scope["job"], "id") if by_scope["job"] else _group_sum(by_scope["task"], "job")
    job_tasks = _group_sum(by_scope["task"], "job")
    budgets = (config.get("controller") or {}).get("job_budgets_j") or {}
    by_job = _rows(job_sums, "job", it_total, lambda k, d: {
        "tasks": (job_tasks.get(k) or {}).get("tasks", 0) if by_scope["task"] else None,
        "budget_j": _num(budgets.get(k)) if isinstance(budgets, dict) else None,
        "within_budget": (d["energy_j"] <= _num(budgets.get(k))) if isinstance(budgets, dict) and _num(budgets.get(k)) is not None else None,
    })
    if job is not None:
        by_job = [r for r in by_job if r["job"] == job]

    task_dynamic = sum(_num(p.get("energy_j")) or 0.0 for p in by_scope["task"])
    dynamic = _num(summary.get("dynamic_energy_j")) if summary else None
    oi = _num(summary.get("overhead_share")) if summary else None
    oi_source = "summary record"
    if oi is None:
        if job is not None:
            oi, oi_source = None, "not defined for one job (idle and facility overhead belong to the run)"
        else:
            d = dynamic if dynamic is not None else (task_dynamic if by_scope["task"] else None)
            oi = (1.0 - d / facility) if d is not None and facility > 0 else None
            oi_source = "computed: 1 - dynamic / facility energy" if oi is not None else "not computable: no task or dynamic energy"

    emissions = None
    summary_em = _num(summary.get("emissions_kg_co2e")) if summary else None
    if carbon_intensity_g_per_kwh is None and summary_em is not None and facility > 0:
        kwh = facility / 3.6e6
        emissions = {
            "carbon_intensity_g_per_kwh": summary_em * 1000.0 / kwh,
            "facility_energy_kwh": kwh,
            "emissions_kg_co2e": summary_em,
            "method": "facility power integrated against a time-varying carbon intensity ("
                      + str(summary.get("carbon_source") or "source not recorded")
                      + "); the intensity shown is the energy-weighted mean; an estimate",
        }
    elif carbon_intensity_g_per_kwh is not None:
        kwh = facility / 3.6e6
        emissions = {
            "carbon_intensity_g_per_kwh": float(carbon_intensity_g_per_kwh),
            "facility_energy_kwh": kwh,
            "emissions_kg_co2e": kwh * float(carbon_intensity_g_per_kwh) / 1000.0,
            "method": "facility energy (kWh) x the average carbon intensity given (gCO2e/kWh); an estimate",
        }

    kinds: dict[str, int] = {}
    for d in decisions:
        k = str(d.get("kind"))
        kinds[k] = kinds.get(k, 0) + 1
    budget_w = _num(summary.get("power_budget_w")) if summary else None
    if budget_w is None:
        budget_w = _num(cluster.get("power_budget_w"))
    if budget_w is None:
        budget_w = _num((config.get("controller") or {}).get("power_budget_w"))
    violation = _num(summary.get("budget_violation_s")) if summary else None
    peak = _num(summary.get("peak_power_w")) if summary else None
    if budget_w is None:
        adherent, adherence = None, "no power budget set"
    elif violation is not None:
        adherent = violation <= 0.0
        adherence = f"{violation:.3f} s above the power budget" if violation > 0 else "never above the power budget"
    elif peak is not None:
        adherent = peak <= budget_w
        adherence = "peak power against the power budget"
    else:
        adherent, adherence = None, "no summary record with budget figures"

    times = [r.get("time") for r in recs if _num(r.get("time")) is not None]
    seqs = [r.get("seq") for r in recs if isinstance(r.get("seq"), int)]
    tasks_completed = summary.get("tasks_completed") if summary else None
    if not isinstance(tasks_completed, int) or isinstance(tasks_completed, bool):
        tasks_completed = sum(d["tasks"] for d in task_counts.values()) or None

    telemetry = [t for t in config.get("telemetry") or [] if isinstance(t, dict)]
    node_rows = [
        {"node_id": str(n.get("node_id")), "node_type": n.get("node_type"),
         "cpus": _num(n.get("cpus")), "gpus": _num(n.get("gpus"))}
        for n in nodes_cfg.values()
    ]
    types: "OrderedDict[str, dict]" = OrderedDict()
    for n in node_rows:
        t = types.setdefault(str(n["node_type"]), {"node_type": str(n["node_type"]), "count": 0,
                                                    "cpus": n["cpus"], "gpus": n["gpus"]})
        t["count"] += 1

    attribution_methods = sorted({str(p.get("method")) for sc in ("task", "group", "job")
                                  for p in by_scope[sc] if p.get("method")})
    prov = _provenance(basis, unattributed, it_total)
    measured_all = prov["measured_share"] >= 1.0 - 1e-9
    energy_method = "; ".join(sorted({m for row in prov["by_source"] for m in row["methods"]})) or "not stated"

    report: dict = {
        "report_format": REPORT_FORMAT,
        "report_type": "run",
        "generated_at": generated_at or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "generator": _generator(),
        "subject": {
            "run_id": config.get("run_id"),
            "job": job,
            "engine": config.get("engine"),
            "policy": config.get("policy"),
            "cluster_name": cluster_name or cluster.get("name") or config.get("run_id"),
            "start_time": _iso(min(times)) if times else None,
            "end_time": _iso(max(times)) if times else None,
            "first_seq": min(seqs) if seqs else None,
            "last_seq": max(seqs) if seqs else None,
            "makespan_s": _num(summary.get("makespan_s")) if summary else None,
            "tasks_completed": tasks_completed,
        },
        "ledger": dict(ledger_info) if ledger_info else {
            "file": None, "head_hash": None, "head_seq": None, "records": len(records), "checkpoints": 0,
            "closed": False, "status": "unverified", "key_ids": [], "public_key": None,
            "signer_authenticated": False,
        },
        "energy": {
            "it_energy_j": it_total,
            "it_energy_basis": it_basis,
            "facility_energy_j": facility,
            "facility_energy_method": facility_method,
            "facility_overhead_j": facility - it_total,
            "pue": pue,
            "pue_source": pue_source,
            "dynamic_energy_j": dynamic if dynamic is not None else (task_dynamic if by_scope["task"] else None),
            "idle_energy_j": _num(summary.get("idle_energy_j")) if summary else None,
            "boot_energy_j": _num(summary.get("boot_energy_j")) if summary else None,
            "off_energy_j": _num(summary.get("off_energy_j")) if summary else None,
            "breakdown_basis": f"{basis_name} energy records",
            "by_component": by_component,
            "by_node": by_node,
            "by_group": by_group,
            "by_job": by_job,
            "attribution_methods": attribution_methods,
        },
        "provenance": prov,
        "hardware": {"nodes": node_rows, "node_types": list(types.values()), "telemetry": telemetry},
        "emissions": emissions,
        "optimization_inversion": {
            "overhead_share": oi,
            "inverted": (oi > INVERSION_THRESHOLD) if oi is not None else None,
            "threshold": INVERSION_THRESHOLD,
            "definition": OI_DEFINITION,
            "source": oi_source,
        },
        "controller": {
            "policy": config.get("policy"),
            "config": config.get("controller") or {},
            "decisions": dict(sorted(kinds.items())),
            "power_budget_w": budget_w,
            "peak_power_w": peak,
            "budget_violation_s": violation,
            "budget_adherent": adherent,
            "budget_adherence": adherence,
        },
        "regulatory": regulatory_section(
            measured_all=measured_all, energy_method=energy_method, facility_method=facility_method,
            pue_source=pue_source, attribution_methods=attribution_methods, has_emissions=emissions is not None,
        ),
    }
    return seal(to_jsonable(report, "report"))


def regulatory_section(
    *, measured_all: bool, energy_method: str, facility_method: str, pue_source: str,
    attribution_methods: Sequence[str], has_emissions: bool, federated: bool = False,
) -> dict:
    """Which report field serves which provision, and which figures are estimates."""
    e_note = "Annex XI, Section 1, point 2(e): known or estimated energy consumption"
    mapping = [
        {"field": "energy.it_energy_j, energy.facility_energy_j",
         "provision": "Regulation (EU) 2024/1689, Annex XI, Section 1, point 2(e)",
         "purpose": "the known or estimated energy consumption; facility energy is the figure at the meter"},
        {"field": "provenance (measured/modeled shares, by_source methods, uncertainty)",
         "provision": "Annex XI, Section 1, point 2(e), second subparagraph",
         "purpose": "whether the consumption is known (measured) or estimated, and the basis of the estimate"},
        {"field": "hardware, subject.makespan_s, subject.tasks_completed, energy.by_node",
         "provision": "Annex XI, Section 1, point 2(d)",
         "purpose": "computational resources and time used (context; floating point operations are not counted)"},
        {"field": "ledger.head_hash, ledger.key_ids, integrity.content_sha256",
         "provision": "Article 53(1)(a)",
         "purpose": "documentation drawn up, kept up to date and provided on request: the report is tied to a signed, "
                    "hash-chained record that a third party can check offline (the Act does not prescribe this)"},
        {"field": "energy.by_component, energy.by_group, energy.by_job, optimization_inversion, controller, emissions",
         "provision": "none (supporting detail)",
         "purpose": "not required by Article 53 or Annex XI; explains where the energy went and how it was managed"},
    ]
    estimates = [
        {"field": "energy.it_energy_j", "estimated": not measured_all,
         "method": ("measured" if measured_all else "partly or wholly modeled") + f": {energy_method}"},
        {"field": "energy.facility_energy_j", "estimated": True,
         "method": f"{facility_method}; PUE from {pue_source}"},
        {"field": "energy.by_group, energy.by_job", "estimated": True,
         "method": "apportioned from node energy: " + ("; ".join(attribution_methods) or "method of the records")},
        {"field": "provenance.uncertainty", "estimated": True, "method": UNCERTAINTY_METHOD},
    ]
    if has_emissions:
        estimates.append({"field": "emissions.emissions_kg_co2e", "estimated": True,
                          "method": "facility energy x average carbon intensity given"})
    notes = (
        "Article 53(1)(a) requires providers of general-purpose AI models to keep technical documentation holding "
        "at least the information of Annex XI; " + e_note + ", which may be based on the computational resources "
        "used where the consumption is unknown. This report covers one run or job; relating it to a model "
        "(its training, testing or inference) is up to the provider."
    )
    if federated:
        notes += " A federated report sums member reports; each member's figures keep their own provenance."
    return {"regulation": "Regulation (EU) 2024/1689 (AI Act)", "mapping": mapping, "estimates": estimates, "notes": notes}


def build_report(
    ledger_path: PathLike,
    *,
    pubkey: Any = None,
    run_id: Optional[str] = None,
    job: Optional[str] = None,
    carbon_intensity_g_per_kwh: Optional[float] = None,
    cluster_name: Optional[str] = None,
    upto_seq: Optional[int] = None,
    generated_at: Optional[str] = None,
    policy: Optional[str] = None,
) -> dict:
    """Verify the ledger at ``ledger_path`` and build the report of one run (or ``job``).

    ``pubkey``: an Ed25519 public key object, or a path to one, to authenticate the signer.
    ``upto_seq``: use only records up to this sequence number (to rebuild a report made
    before more records were appended). A ledger that fails verification raises
    ``InputError``; a torn last line is tolerated (the report says so)."""
    from tao_core.governance.keys import load_public_key
    from tao_core.governance.verify import verify_ledger

    _check_carbon_intensity(carbon_intensity_g_per_kwh)
    if isinstance(pubkey, (str, os.PathLike)):
        pubkey = load_public_key(pubkey)
    try:
        res = verify_ledger(ledger_path, pubkey, collect=True)
    except FileNotFoundError:
        raise InputError(f"--ledger {ledger_path}: no such file") from None
    except OSError as exc:
        raise InputError(f"--ledger {ledger_path}: cannot read ({exc.strerror})") from None
    if res.status == "bad":
        raise InputError(
            f"--ledger {ledger_path}: fails verification at seq {res.first_bad_seq}: {res.reason}; "
            f"run `tao audit verify {ledger_path}`"
        )
    recs = res.records_list or []
    head_seq, head_hash = res.last_seq, res.head_hash
    if upto_seq is not None:
        if not 1 <= upto_seq <= res.last_seq:
            raise InputError(f"upto_seq={upto_seq}: the ledger holds records 1..{res.last_seq}")
        recs = recs[:upto_seq]
        head_seq, head_hash = upto_seq, recs[-1]["hash"]
    signed_upto = max([r["seq"] for r in recs if r["kind"] == "checkpoint"], default=0)
    info = {
        "file": pathlib.Path(ledger_path).name,
        "head_hash": head_hash,
        "head_seq": head_seq,
        "records": len(recs),
        "checkpoints": sum(1 for r in recs if r["kind"] == "checkpoint"),
        "signed_through_seq": signed_upto,
        "closed": bool(recs and recs[-1]["kind"] == "checkpoint" and recs[-1]["payload"].get("final") is True),
        "status": "torn" if res.status == "torn" and upto_seq is None else "intact",
        "key_ids": list(res.key_ids),
        "public_key": res.public_key,
        "signer_authenticated": bool(res.pubkey_checked and res.key_ids),
    }
    return build_report_from_records(
        recs, ledger_info=info, run_id=run_id, job=job, carbon_intensity_g_per_kwh=carbon_intensity_g_per_kwh,
        cluster_name=cluster_name, generated_at=generated_at, policy=policy,
    )
