"""The energy report of one run (or one job of a run), built from ledger records.

``build_report(ledger_path, ...)`` verifies the ledger and summarises the records of one run;
``build_report_from_records(records, ...)`` does the same from records that come from no
verified ledger (the report then says ``ledger.status: unverified``). Both return a dict
that validates against the JSON Schema shipped beside this module
(``energy_report.schema.json``) and ends with an ``integrity`` field (``validate.py``).
``write_report(report, path, fmt)`` (``output.py``) writes JSON, Markdown or HTML.

Records read: the shape of ``tao_core.accounting.records`` (``runs.parse_run``). Figures:
``tao_core.accounting.figures`` (task work, idle, boot, off, overhead share, inverted);
how the energy section is broken down: ``breakdown.py``; provenance: ``provenance.py``.

Signed records only: a report is built from the records a checkpoint signature covers
(up to the last checkpoint, without records a recovery record declared unvouched), so
records appended without the key never reach a report. ``include_unsigned=True`` also
uses the records after the last checkpoint; the report then says how many of its run's
records no signature covers (``ledger.unsigned_records_used``) and ``parameters`` records
the choice.

``parameters`` records how the report was built (run, policy, job, carbon intensity,
cluster name, unsigned records), and ``ledger`` what the report covers (head, signed range,
closed, signer): ``tao report validate --ledger`` rebuilds the report with those parameters
from the ledger prefix up to ``ledger.head_seq`` and compares every field.

Emissions: facility energy in kWh x the carbon intensity given (gCO2e/kWh), else the
summary's emissions when a time-varying carbon signal priced the run.

Sections for the field's formats: ``model_documentation`` (the energy and compute items of
the GPAI Code of Practice's Model Documentation Form, ``mdf.py``), ``work_units`` (energy and
emissions per unit of work the tasks counted, ``work_units.py``) and ``sci`` (the Software
Carbon Intensity per unit, ISO/IEC 21031:2024, ``sci.py``; embodied emissions only as given
in ``embodied_g_co2e``).
"""
from __future__ import annotations

import datetime as _dt
import math
import os
import pathlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

from tao_core.accounting.figures import INVERSION_THRESHOLD, OVERHEAD_SHARE_DEFINITION, RunFigures
from tao_core.accounting.records import RunRecords
from tao_core.errors import InputError, ParameterError
from tao_core.governance import mdf, work_units
from tao_core.governance.breakdown import Basis, energy_section, job_work
from tao_core.governance.canonical import to_jsonable
from tao_core.governance.provenance import provenance_section
from tao_core.governance.regulatory import regulatory_section
from tao_core.governance.runs import parse_run, select_run, split_runs
from tao_core.governance.sci import sci_section
from tao_core.governance.validate import seal

REPORT_FORMAT = "tao-energy-report/3"

PathLike = Union[str, "os.PathLike[str]"]


# ----------------------------------------------------------------------------- helpers
def iso_time(t: Optional[float]) -> Optional[str]:
    if t is None:
        return None
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).isoformat(timespec="seconds")


def generator() -> dict:
    try:
        from importlib.metadata import version

        v = version("tao-energy")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        v = "unknown"
    return {"name": "tao-energy", "version": v}


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ReportParameters:
    """How a run report is built. ``carbon_intensity_g_per_kwh``: grams CO2e per kWh of
    facility energy (None: emissions from the summary record, if any); it should be the
    grid's location-based intensity (the SCI uses it). ``embodied_g_co2e``: embodied
    emissions of the hardware's share for the run (gCO2e), the SCI's M (None: missing)."""

    run_id: Optional[str] = None
    policy: Optional[str] = None
    job: Optional[str] = None
    carbon_intensity_g_per_kwh: Optional[float] = None
    cluster_name: Optional[str] = None
    include_unsigned: bool = False
    embodied_g_co2e: Optional[float] = None

    def __post_init__(self) -> None:
        for name, unit in (("carbon_intensity_g_per_kwh", "gCO2e/kWh"), ("embodied_g_co2e", "gCO2e")):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
                                  or v < 0):
                raise ParameterError(name, v, f"must be a finite number >= 0 ({unit})")
        if not isinstance(self.include_unsigned, bool):
            raise ParameterError("include_unsigned", self.include_unsigned, "must be true or false")

    def section(self) -> dict:
        ci, m = self.carbon_intensity_g_per_kwh, self.embodied_g_co2e
        return {"run_id": self.run_id, "policy": self.policy, "job": self.job,
                "carbon_intensity_g_per_kwh": float(ci) if ci is not None else None,
                "cluster_name": self.cluster_name, "include_unsigned": self.include_unsigned,
                "embodied_g_co2e": float(m) if m is not None else None}

    @classmethod
    def from_section(cls, p: Mapping[str, Any]) -> "ReportParameters":
        return cls(**{k: p.get(k) for k in ("run_id", "policy", "job", "carbon_intensity_g_per_kwh", "cluster_name",
                                            "embodied_g_co2e")},
                   include_unsigned=bool(p.get("include_unsigned")))


# ----------------------------------------------------------------------------- sections
def _subject(rr: RunRecords, params: ReportParameters, basis: Basis) -> dict:
    s, c = rr.summary, rr.config
    whole_run = params.job is None
    tasks = s.tasks_completed if (s is not None and whole_run) else None
    if tasks is None:
        tasks = sum(1 for r in basis.records if getattr(r, "scope", None) == "task") or None
    return {
        "run_id": c.run_id, "job": params.job, "engine": c.engine, "policy": c.policy,
        "cluster_name": params.cluster_name or c.cluster_name or c.run_id,
        "start_time": iso_time(min(rr.times)) if rr.times else None,
        "end_time": iso_time(max(rr.times)) if rr.times else None,
        "first_seq": min(rr.seqs) if rr.seqs else None,
        "last_seq": max(rr.seqs) if rr.seqs else None,
        "makespan_s": s.makespan_s if (s is not None and whole_run) else None,
        "tasks_completed": tasks,
    }


def _hardware(rr: RunRecords) -> dict:
    nodes = [n.payload() for n in rr.config.nodes]
    types: "OrderedDict[str, dict]" = OrderedDict()
    for n in nodes:
        t = types.setdefault(n["node_type"], {"node_type": n["node_type"], "count": 0, "cpus": n["cpus"],
                                              "gpus": n["gpus"], "cluster": None})
        t["count"] += 1
    return {"nodes": nodes, "node_types": list(types.values()),
            "telemetry": [dict(t, cluster=None) for t in rr.config.telemetry]}


def _emissions(rr: RunRecords, fig: RunFigures, params: ReportParameters) -> Optional[dict]:
    kwh = fig.facility_j / 3.6e6
    ci = params.carbon_intensity_g_per_kwh
    if ci is not None:
        return {"carbon_intensity_g_per_kwh": float(ci), "facility_energy_kwh": kwh,
                "emissions_kg_co2e": kwh * float(ci) / 1000.0, "basis": "intensity given",
                "method": "facility energy (kWh) x the average carbon intensity given (gCO2e/kWh); an estimate"}
    s = rr.summary
    if params.job is None and s is not None and s.emissions_kg_co2e is not None and kwh > 0:
        return {"carbon_intensity_g_per_kwh": s.emissions_kg_co2e * 1000.0 / kwh, "facility_energy_kwh": kwh,
                "emissions_kg_co2e": s.emissions_kg_co2e, "basis": "summary record",
                "method": "facility power integrated against a time-varying carbon intensity ("
                          + (s.carbon_source or "source not recorded")
                          + "); the intensity shown is the energy-weighted mean; an estimate"}
    return None


def _inversion(fig: RunFigures, basis: Basis, job: Optional[str]) -> dict:
    if job is not None:
        share, source = None, "not defined for one job (idle and facility overhead belong to the run)"
    elif basis.parts is None:
        share, source = None, "not computable: no node energy records, so idle, boot and off energy are unknown"
    else:
        share, source = fig.overhead_share, "computed from the node records: 1 - task work / facility energy"
    return {"overhead_share": share, "inverted": None if share is None else share > INVERSION_THRESHOLD,
            "threshold": INVERSION_THRESHOLD, "definition": OVERHEAD_SHARE_DEFINITION, "source": source}


def _decision_of_job(d: Mapping[str, Any], job: str) -> bool:
    budget = d.get("budget") if isinstance(d.get("budget"), Mapping) else {}
    return budget.get("job") == job or d.get("subject") == job or d.get("job") == job


def _budget(rr: RunRecords) -> tuple[Optional[float], Optional[bool], str]:
    s = rr.summary
    budget = (s.power_budget_w if s is not None else None) or rr.config.power_budget_w
    if budget is None:
        b = rr.config.controller.get("power_budget_w")
        budget = float(b) if isinstance(b, (int, float)) and not isinstance(b, bool) and math.isfinite(b) else None
    violation = s.budget_violation_s if s is not None else None
    peak = s.peak_power_w if s is not None else None
    if budget is None:
        return None, None, "no power budget set"
    if violation is not None:
        return budget, violation <= 0.0, (f"{violation:.3f} s above the power budget" if violation > 0
                                          else "never above the power budget")
    if peak is not None:
        return budget, peak <= budget, "peak power against the power budget"
    return budget, None, "no summary record with budget figures"


def _controller(rr: RunRecords, job: Optional[str]) -> dict:
    decisions = [d for d in rr.decisions if job is None or _decision_of_job(d, job)]
    kinds: dict[str, int] = {}
    for d in decisions:
        kinds[str(d.get("kind"))] = kinds.get(str(d.get("kind")), 0) + 1
    budget, adherent, adherence = _budget(rr)
    s = rr.summary
    return {"policy": rr.config.policy, "config": dict(rr.config.controller), "decisions": dict(sorted(kinds.items())),
            "power_budget_w": budget, "peak_power_w": s.peak_power_w if s is not None else None,
            "budget_violation_s": s.budget_violation_s if s is not None else None,
            "budget_adherent": adherent, "budget_adherence": adherence}


def _regulatory(energy: dict, prov: dict, emissions: Optional[dict]) -> dict:
    return regulatory_section(
        measured_all=prov["measured_share"] >= 1.0 - 1e-9,
        energy_method="; ".join(sorted({m for row in prov["by_source"] for m in row["methods"]})) or "not stated",
        facility_method=energy["facility_energy_method"], pue_source=energy["pue_source"],
        attribution_methods=energy["attribution_methods"],
        emissions_method=emissions["method"] if emissions else None,
    )


def _documentation(rr: RunRecords, params: ReportParameters, energy: dict, prov: dict, basis: Basis,
                   emissions: Optional[dict], hardware: dict, ledger: Mapping[str, Any]) -> dict:
    """The model_documentation, work_units and sci sections."""
    scope = job_work(rr, params.job) if params.job is not None else rr.work
    units = work_units.run_section(scope, energy, prov, emissions)
    flops = next((t["amount"] for t in units["totals"] if t["unit"] == "flops"), None)
    return {
        "model_documentation": mdf.mdf_section(mdf.run_inputs(rr, params.job, energy, prov, basis, hardware, ledger,
                                                              flops)),
        "work_units": units,
        "sci": sci_section(facility_j=energy["facility_energy_j"], emissions=emissions,
                           embodied_g=params.embodied_g_co2e, work_units=units, job=params.job),
    }


def assemble_run_report(rr: RunRecords, params: ReportParameters, ledger: Mapping[str, Any],
                        generated_at: Optional[str] = None) -> dict:
    """The report of one run's records (sealed); ``ledger``: the ledger section."""
    energy, basis, fig = energy_section(rr, params.job)
    prov = provenance_section(basis.records, energy["it_energy_j"])
    emissions = _emissions(rr, fig, params)
    hardware = _hardware(rr)
    report = {
        "report_format": REPORT_FORMAT,
        "report_type": "run",
        "generated_at": generated_at or now_iso(),
        "generator": generator(),
        "parameters": params.section(),
        "subject": _subject(rr, params, basis),
        "ledger": dict(ledger),
        "energy": energy,
        "provenance": prov,
        "hardware": hardware,
        "emissions": emissions,
        "optimization_inversion": _inversion(fig, basis, params.job),
        "controller": _controller(rr, params.job),
        "regulatory": _regulatory(energy, prov, emissions),
        **_documentation(rr, params, energy, prov, basis, emissions, hardware, ledger),
    }
    report = seal(to_jsonable(report, "report"))
    from tao_core.governance.consistency import sum_problems

    problems = sum_problems(report)
    if problems:
        raise InputError(f"run {rr.config.run_id}: its records do not add up ({problems[0]}); "
                         "the writer of the ledger wrote inconsistent figures")
    return report


def _unverified_ledger(records_used: int) -> dict:
    return {"file": None, "head_hash": None, "head_seq": None, "checkpoints": 0, "signed_through_seq": 0,
            "unsigned_records_used": records_used, "closed": False, "status": "unverified", "key_ids": [],
            "public_key": None, "signer_authenticated": False}


def build_report_from_records(
    records: Iterable[Mapping[str, Any]],
    *,
    run_id: Optional[str] = None,
    job: Optional[str] = None,
    carbon_intensity_g_per_kwh: Optional[float] = None,
    cluster_name: Optional[str] = None,
    generated_at: Optional[str] = None,
    policy: Optional[str] = None,
    embodied_g_co2e: Optional[float] = None,
) -> dict:
    """The report of one run (or ``job``) from records (dicts with kind, payload and
    optionally time) that come from no verified ledger: ``ledger.status`` is
    ``unverified`` and the report names no sequence numbers. Raises
    ``InputError`` (``ParameterError`` naming the parameter) on unusable input."""
    params = ReportParameters(run_id=run_id, policy=policy, job=job,
                              carbon_intensity_g_per_kwh=carbon_intensity_g_per_kwh, cluster_name=cluster_name,
                              include_unsigned=True, embodied_g_co2e=embodied_g_co2e)
    run = select_run(split_runs(list(records)), run_id, policy)
    rr = parse_run(run)
    rr.seqs = []  # numbers of no ledger: the report names no sequence numbers
    return assemble_run_report(rr, params, _unverified_ledger(len(run.records)), generated_at)


# ----------------------------------------------------------------------------- from a ledger
@dataclass
class LedgerPrefix:
    """The verified records of a ledger up to ``head_seq``, and what signs them."""

    file: str
    records: list[dict]
    pubkey_checked: bool

    @property
    def checkpoints(self) -> list[dict]:
        return [r for r in self.records if r["kind"] == "checkpoint"]

    @property
    def signed_through_seq(self) -> int:
        return self.checkpoints[-1]["seq"] if self.checkpoints else 0

    def unvouched(self) -> list[tuple[int, int]]:
        """(first, last) seq ranges that recovery records declared unvouched."""
        return [tuple(r["payload"]["unvouched_seqs"]) for r in self.records
                if r["kind"] == "recovery" and r["payload"].get("unvouched_seqs")]

    def signed_seqs(self) -> set[int]:
        """Seqs of the records a checkpoint signature covers, unvouched ones excepted."""
        out = set(range(1, self.signed_through_seq + 1))
        for a, b in self.unvouched():
            out -= set(range(a, b + 1))
        return out

    def section(self, run_seqs: Sequence[int]) -> dict:
        """The ledger section of a report covering this prefix and these records of its run."""
        cps = self.checkpoints
        key_ids = list(OrderedDict.fromkeys(c["payload"]["key_id"] for c in cps))
        head = self.records[-1]
        return {"file": self.file, "head_hash": head["hash"], "head_seq": head["seq"], "checkpoints": len(cps),
                "signed_through_seq": self.signed_through_seq,
                "unsigned_records_used": len(set(run_seqs) - self.signed_seqs()),
                "closed": head["kind"] == "checkpoint" and head["payload"]["final"] is True,
                "status": "intact", "key_ids": key_ids, "public_key": cps[-1]["payload"]["public_key"] if cps else None,
                "signer_authenticated": self.pubkey_checked and bool(cps)}


def _read_ledger(ledger_path: PathLike, pubkey: Any, upto_seq: Optional[int]) -> LedgerPrefix:
    from tao_core.governance.keys import load_public_key
    from tao_core.governance.verify import verify_ledger

    if isinstance(pubkey, (str, os.PathLike)):
        pubkey = load_public_key(pubkey)
    res = verify_ledger(ledger_path, pubkey, collect=True)
    if res.status == "bad":
        raise ParameterError("ledger", str(ledger_path), f"fails verification at seq {res.first_bad_seq}: {res.reason}; "
                                                         f"run `tao audit verify {ledger_path}`")
    recs = res.records_list or []
    if upto_seq is not None:
        if isinstance(upto_seq, bool) or not isinstance(upto_seq, int) or not 1 <= upto_seq <= res.last_seq:
            raise ParameterError("upto_seq", upto_seq, f"the ledger holds records 1..{res.last_seq}")
        recs = recs[:upto_seq]
    return LedgerPrefix(pathlib.Path(ledger_path).name, recs, res.pubkey_checked)


def _signed_part(prefix: LedgerPrefix, include_unsigned: bool) -> LedgerPrefix:
    if include_unsigned:
        return prefix
    if prefix.signed_through_seq == 0:
        raise ParameterError("include_unsigned", None,
                             "no record of the ledger is covered by a signature yet (no checkpoint); "
                             "set {include_unsigned} to report unsigned records anyway")
    signed = prefix.signed_seqs()
    kept = [r for r in prefix.records[:prefix.signed_through_seq]
            if r["seq"] in signed or r["kind"] in ("ledger", "checkpoint", "recovery")]
    return LedgerPrefix(prefix.file, kept, prefix.pubkey_checked)


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
    include_unsigned: bool = False,
    notes: Optional[list[str]] = None,
    embodied_g_co2e: Optional[float] = None,
) -> dict:
    """Verify the ledger at ``ledger_path`` and build the report of one run (or ``job``)
    from its signed records (all verified records with ``include_unsigned``).

    ``pubkey``: an Ed25519 public key object, or a path to one, to authenticate the signer.
    ``upto_seq``: treat the ledger as ending at this sequence number (to rebuild a report
    made before more records were appended). ``notes``: a list that gets one line per
    thing the caller should know (records left out). ``embodied_g_co2e``: the SCI's
    embodied emissions M (gCO2e), when known. A ledger that fails verification raises
    ``ParameterError`` (parameter ``ledger``); a torn last line is left out."""
    params = ReportParameters(run_id=run_id, policy=policy, job=job,
                              carbon_intensity_g_per_kwh=carbon_intensity_g_per_kwh, cluster_name=cluster_name,
                              include_unsigned=include_unsigned, embodied_g_co2e=embodied_g_co2e)
    prefix = _read_ledger(ledger_path, pubkey, upto_seq)
    used = _signed_part(prefix, include_unsigned)
    left = len(prefix.records) - len(used.records)
    if notes is not None and left:
        notes.append(f"{left} record(s) of the ledger after its last signed checkpoint (seq {prefix.signed_through_seq})"
                     " or declared unvouched were left out (include_unsigned uses them)")
    run = select_run(split_runs(used.records), run_id, policy)
    rr = parse_run(run)
    if rr.summary is None and left:
        raise ParameterError("include_unsigned", None,
                             f"run {rr.config.run_id} goes on after the last signed checkpoint (seq "
                             f"{prefix.signed_through_seq}): its later records, summary included, are not covered by "
                             "a signature yet; set {include_unsigned} to report them anyway")
    return assemble_run_report(rr, params, used.section(rr.seqs), generated_at)
