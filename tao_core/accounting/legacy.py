"""The record shape ``tao_dask.reporting.ledger_records`` writes today, read into the one
shape of ``records.py``. Delete this module once tao_dask writes through
``records.run_records`` (tao_ray does).

A run whose ``config`` record has no ``record_format`` is one of these. What differs from
``tao-run-records/1``, and what this module does about it:

- node records: ``tasks_j`` and ``idle_j`` under ``detail`` (beside a ``dynamic_j`` that is
  not a report figure); no ``boot_j``/``off_j`` (taken as 0). A node record without
  ``detail.tasks_j`` (the simulator's shape before ``tao-run-records/1``, or tao_ray's
  before it wrote that format) cannot be told apart into task work and idle: refused.
- components: only ``other`` is written; the other components are filled with 0.
- summary: no ``run_id``; energy totals (``it_energy_j``, ``dynamic_energy_j``,
  ``overhead_share``, ...) that the report now derives from the node records. Only the
  fields of ``records.RunSummary`` are kept.
- config: no ``record_format`` and no ``cluster.name``.
- work records: no ``units`` (read as nothing counted).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

from tao_core.accounting.records import RECORD_FORMAT, SUMMARY_KEYS, WORK_KEYS, components_of
from tao_core.errors import InputError


def is_legacy(config: Optional[Mapping[str, Any]]) -> bool:
    """Whether a run's config payload predates ``tao-run-records/1``."""
    return isinstance(config, Mapping) and "record_format" not in config


def upgrade_config(p: Mapping[str, Any]) -> dict[str, Any]:
    cluster = p.get("cluster") if isinstance(p.get("cluster"), Mapping) else {}
    nodes = [{"node_id": str(n.get("node_id")), "node_type": str(n.get("node_type")),
              "cpus": n.get("cpus"), "gpus": n.get("gpus") or 0.0}
             for n in cluster.get("nodes") or [] if isinstance(n, Mapping)]
    return {
        "record_format": RECORD_FORMAT, "run_id": p.get("run_id"), "engine": p.get("engine"),
        "policy": p.get("policy"), "controller": p.get("controller") or {},
        "cluster": {"name": cluster.get("name"), "pue": cluster.get("pue", 1.0),
                    "power_budget_w": cluster.get("power_budget_w"), "nodes": nodes},
        "telemetry": [{"domain": t.get("domain"), "source": t.get("source"), "method": t.get("method")}
                      for t in p.get("telemetry") or [] if isinstance(t, Mapping)],
    }


def _components(p: Mapping[str, Any]) -> Optional[dict[str, float]]:
    comps = p.get("components")
    return components_of(p.get("energy_j") or 0.0, comps) if isinstance(comps, Mapping) and comps else None


def upgrade_energy(p: Mapping[str, Any], where: str) -> dict[str, Any]:
    if p.get("scope") != "node":
        out = {k: p.get(k) for k in WORK_KEYS}
        out["units"] = p.get("units") or {}
        out["components"] = _components(p) or components_of(p.get("energy_j") or 0.0)
        return out
    det = p["detail"] if isinstance(p.get("detail"), Mapping) else {}
    if det.get("tasks_j") is None:
        raise InputError(f"{where}: node record without detail.tasks_j (written before tao-run-records/1): its task "
                         "work cannot be told from idle; write the run again")
    node = p.get("node_id") or p.get("id")
    return {"scope": "node", "id": node, "node_id": node, "group": None, "job": None,
            "energy_j": p.get("energy_j"), "tasks_j": det.get("tasks_j"), "idle_j": det.get("idle_j", 0.0),
            "boot_j": det.get("boot_j", 0.0), "off_j": det.get("off_j", 0.0),
            "components": _components(p) or components_of(p.get("energy_j") or 0.0),
            "source": p.get("source"), "method": p.get("method"), "uncertainty": p.get("uncertainty"),
            "start_s": p.get("start_s"), "end_s": p.get("end_s")}


def upgrade_summary(p: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: p.get(k) for k in SUMMARY_KEYS}
    out["run_id"] = p.get("run_id") or config.get("run_id")
    out["policy"] = p.get("policy") or config.get("policy")
    return out
