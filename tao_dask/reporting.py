"""Per-task energy of a Dask run and its energy report, through the core's live report.

The scheduler plugin keeps each worker's energy timeline (the readings its sampler sent)
and, for every task run, the compute interval Dask reported (``startstops`` of the
``processing -> memory`` or ``-> erred`` transition) with its job and the units of work it
counted. :func:`report_inputs` turns that export into
:class:`tao_core.live.report.ReportInputs`; :func:`tao_core.live.report.build` attributes
each worker's energy to its tasks and idle, conserving it, and writes the ledger records
(``tao_core.accounting.records``, the one record shape of the simulator and tao_ray) and
the report. Units: joules, seconds (wall clock), watts.
"""
from __future__ import annotations

from typing import Any, Optional

import pandas as pd

from tao_core.attribution import Attribution
from tao_core.hardware import curve_provenance
from tao_core.live import report as live_report
from tao_core.live.runs import TaskRun
from tao_core.live.worker_telemetry import series_rows
from tao_core.power.node_json import node_type_from_dict
from tao_core.task_rows import TaskRow

#: how the report's task rows were known
KNOWN_BY = "dask-startstops"
DEFAULT_REPORT = "tao-dask-report.json"


def spans_of(data: dict[str, Any]) -> list[TaskRun]:
    """The exported spans as :class:`~tao_core.live.runs.TaskRun` records (one per task run)."""
    return [TaskRun(*row) for row in data["spans"]]


def report_inputs(data: dict[str, Any], *, window: Optional[tuple[float, float]] = None) -> live_report.ReportInputs:
    """The exported plugin state ``data`` (``TAOSchedulerPlugin.export``) as the core
    report's inputs over ``window`` (wall clock; default: from registration to the export).
    Workers without a node type are not metered; a worker that left is carried at its last
    sampled power until Dask removed it and is off (its type's ``off_w``) from then on."""
    types, nodes, curves = {}, [], {}
    for n in data["nodes"]:
        tl = data["timelines"].get(n["address"])
        if n.get("node_type_json") is None or tl is None:
            continue
        nt = node_type_from_dict(n["node_type_json"], f"worker {n['name']}")
        types[nt.name] = nt
        curves.setdefault(nt.name, n.get("curve") or curve_provenance(nt).to_dict())
        nodes.append(live_report.NodeHistory(n["address"], nt.name, float(n["nthreads"]), series_rows(tl, n["left_s"]),
                                             removed_at=n["left_s"]))
    tasks = [TaskRow(task_id=s.task_id, node_id=s.worker, start_s=s.start_s, end_s=s.end_s, name=s.group, job=s.job,
                     cpus=1.0, known_by=KNOWN_BY, resolution_s=1e-6) for s in spans_of(data)]
    units = {s.task_id: s.units for s in spans_of(data) if s.units}
    t0, t1 = window or (data["started_s"], data["exported_s"])
    return live_report.ReportInputs("dask", types, nodes, tasks, data["config"], t0, t1, data["decisions"],
                                    units=units, curves=curves)


def attribution_of(data: dict[str, Any]) -> Attribution:
    """Every worker's energy split into its tasks and idle (conserved), from an export."""
    inp = report_inputs(data)
    return live_report.attribution(inp, live_report.window_readings(inp))


def energy_between(data: dict[str, Any], t0: float, t1: float) -> tuple[float, dict[str, float]]:
    """Modeled joules of every worker between wall times ``t0`` and ``t1`` (total, per
    worker address): each worker's timeline cut to the window; a worker that left is
    counted at its last sampled power until Dask removed it, as off (its node type's
    ``off_w``) from then on."""
    per = live_report.energy_by_node(report_inputs(data, window=(t0, t1)))
    return sum(per.values()), per


def fetch(client: Any, name: str = "tao") -> dict[str, Any]:
    """The scheduler plugin's state, as plain data."""
    def _export(dask_scheduler: Any, name: str = name) -> dict[str, Any]:
        return dask_scheduler.plugins[name].export()

    return client.run_on_scheduler(_export)


def report(client: Any, path: Optional[str] = DEFAULT_REPORT, *, ledger: Optional[str] = None,
           name: str = "tao", job: Optional[str] = None) -> pd.DataFrame:
    """Per-task energy of everything the cluster ran since TAO was registered.

    Returns one row per task run (``task_id`` ``"<key>#<run>"``, ``key``, ``run``,
    ``group``, ``job``, ``node_id``, ``start_s``, ``end_s``, ``energy_j``, ``dynamic_j``,
    ``static_j``, the components, ``source``, ``method``, ``uncertainty``), energy
    conserved per worker (tasks + idle == the worker's energy). A key Dask computed twice
    is two runs, two rows.

    Writes the run to a signed, hash-chained ledger (``ledger``, default
    ``<path>.ledger.jsonl``) and the JSON energy report built from it to ``path`` (default
    ``tao-dask-report.json``; ``path=None`` writes neither). ``job``: the report of one
    ``tao_job``. ``df.attrs``: ``summary``, ``report`` and ``nodes``, as ``tao_ray.report``."""
    data = fetch(client, name)
    inp = report_inputs(data)
    led = (ledger or f"{path}.ledger.jsonl") if path else None
    df, _rep = live_report.build(inp, path=path or None, ledger=led, job=job,
                                 policy="tao" if data["placing"] else "dask-default")
    return with_keys(df, data)


def with_keys(tasks: pd.DataFrame, data: dict[str, Any]) -> pd.DataFrame:
    """``tasks`` (one row per ``task_id``) with each run's Dask ``key`` and ``run`` number."""
    runs = {s.task_id: (s.key, s.run) for s in spans_of(data)}
    out = tasks.copy()
    pos = out.columns.get_loc("task_id") + 1
    out.insert(pos, "key", [runs.get(t, (t, 1))[0] for t in out["task_id"]])
    out.insert(pos + 1, "run", [runs.get(t, (t, 1))[1] for t in out["task_id"]])
    out.attrs = dict(tasks.attrs)
    return out
