"""The runs a ledger holds, the one a report is about, and its records read into the shape
of ``tao_core.accounting.records``.

A run ends after its ``summary`` record, and a ``config`` record starts a new run when the
current one already has a config; so a writer may put a run's decision records before or
after its config. Ledger bookkeeping records (header, checkpoints, recovery) belong to no run.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional

from tao_core.accounting import legacy
from tao_core.accounting.records import NodeRecord, RunConfig, RunRecords, RunSummary, WorkRecord
from tao_core.errors import InputError, ParameterError

LEDGER_KINDS = frozenset({"ledger", "checkpoint", "recovery"})


@dataclass
class Run:
    """The raw records of one run (ledger records: dicts with seq, time, kind, payload)."""

    records: list[Mapping[str, Any]] = field(default_factory=list)
    config: Optional[Mapping[str, Any]] = None

    @property
    def run_id(self) -> Optional[str]:
        return (self.config or {}).get("run_id")

    @property
    def policy(self) -> Optional[str]:
        return (self.config or {}).get("policy")


def split_runs(records: Iterable[Mapping[str, Any]]) -> list[Run]:
    """Group records into runs (see the module docstring)."""
    runs: list[Run] = []
    current: Optional[Run] = None
    for r in records:
        kind = r.get("kind")
        if kind in LEDGER_KINDS:
            continue
        if current is None or (kind == "config" and current.config is not None):
            current = Run()
            runs.append(current)
        current.records.append(r)
        if kind == "config":
            current.config = r.get("payload") if isinstance(r.get("payload"), Mapping) else {}
        elif kind == "summary":
            current = None
    return runs


def _listing(runs: list[Run]) -> str:
    return ", ".join(f"{r.run_id} (policy {r.policy})" if r.run_id is not None else "(records without a config)"
                     for r in runs)


def _by_policy(runs: list[Run], policy: str) -> list[Run]:
    chosen = [r for r in runs if r.policy == policy]
    if not chosen:
        have = sorted({str(r.policy) for r in runs if r.policy is not None})
        raise ParameterError("policy", policy, f"no run of this policy in the ledger; it holds {', '.join(have) or 'none'}")
    if len(chosen) > 1:
        raise ParameterError("policy", policy, f"{len(chosen)} runs ({_listing(chosen)}); choose one with {{run_id}}")
    return chosen


def select_run(runs: list[Run], run_id: Optional[str] = None, policy: Optional[str] = None) -> Run:
    """The one run named by ``run_id`` and/or ``policy`` (either may be None when the
    ledger holds one run, or one run of that policy). ``ParameterError`` otherwise."""
    if not runs:
        raise InputError("ledger holds no config, energy or summary record: nothing to report")
    chosen = _by_policy(runs, policy) if policy is not None else runs
    if run_id is not None:
        chosen = [r for r in chosen if r.run_id == run_id]
        if not chosen:
            where = f" of policy {policy}" if policy is not None else ""
            raise ParameterError("run_id", run_id, f"no run{where} with this id in the ledger; it holds {_listing(runs)}")
    if len(chosen) > 1:
        ids = [r.run_id for r in chosen]
        repeated = sorted({str(i) for i in ids if ids.count(i) > 1})
        if repeated:
            raise ParameterError("run_id", run_id, f"{len(chosen)} runs have the id {', '.join(repeated)} "
                                                   f"({_listing(chosen)}); the ledger is ambiguous")
        raise ParameterError("run_id", None, f"the ledger holds {len(chosen)} runs: {_listing(chosen)}; "
                                             "choose one with {run_id} or {policy}")
    return chosen[0]


def _where(r: Mapping[str, Any]) -> str:
    return f"ledger seq {r.get('seq')} ({r.get('kind')} record)"


def _payload(r: Mapping[str, Any], old: bool, config: Mapping[str, Any]) -> Any:
    """The record's payload in the one record shape (upgraded from the adapters' shapes when ``old``)."""
    kind, p = r.get("kind"), r.get("payload")
    if not old or not isinstance(p, Mapping):
        return p
    if kind == "config":
        return legacy.upgrade_config(p)
    if kind == "energy":
        return legacy.upgrade_energy(p, _where(r))
    if kind == "summary":
        return legacy.upgrade_summary(p, config)
    return p


def parse_run(run: Run) -> RunRecords:
    """The run's records in the one record shape (records of the shapes tao_ray and
    tao_dask write today go through ``accounting.legacy`` first). ``InputError`` naming
    the record and field when a record has another shape."""
    if run.config is None:
        first = run.records[0] if run.records else {}
        raise InputError(f"{_where(first)}: the run has no config record; a report needs the run's config")
    old = legacy.is_legacy(run.config)
    fmt = legacy.RECORD_FORMAT if old else run.config.get("record_format")
    out = RunRecords(config=None, nodes=[], work=[], summary=None, decisions=[],  # type: ignore[arg-type]
                     seqs=[r["seq"] for r in run.records if isinstance(r.get("seq"), int)],
                     times=[float(r["time"]) for r in run.records
                            if isinstance(r.get("time"), (int, float)) and not isinstance(r.get("time"), bool)])
    for r in run.records:
        kind, p, where = r.get("kind"), _payload(r, old, run.config), _where(r)
        if kind == "config":
            out.config = RunConfig.from_payload(p, where)
        elif kind == "energy" and isinstance(p, Mapping) and p.get("scope") == "node":
            out.nodes.append(NodeRecord.from_payload(p, where))
        elif kind == "energy":
            out.work.append(WorkRecord.from_payload(p, where, fmt))
        elif kind == "summary":
            out.summary = RunSummary.from_payload(p, where)
        elif kind == "decision" and isinstance(p, Mapping):
            out.decisions.append(p)
    return out
