"""Outputs of a simulation: the table, the JSON document, the power plot and the ledger
records (written through ``tao_core.accounting.records``, the one record shape of the
simulator and the adapters). Files are written to a temporary name beside the target and
renamed, so a failed run leaves no partial file."""
from __future__ import annotations

import json
import math
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any, Iterable, Optional

from tao_core.accounting.figures import EnergyParts
from tao_core.accounting.records import NodeInfo, NodeRecord, RunConfig, RunSummary, WorkRecord, run_records
from tao_core.sim.engine import SimResult
from tao_core.sim.model import ClusterSpec, Workload
from tao_core.units import add_units

COLUMNS = (  # (header, width, format)
    ("policy", 22, "{:<22}"), ("energy kWh", 11, "{:>11.3f}"), ("x bound", 8, "{:>8.2f}"),
    ("idle kWh", 9, "{:>9.3f}"), ("boot kWh", 9, "{:>9.3f}"), ("p95 wait s", 10, "{:>10.1f}"),
    ("mean wait s", 11, "{:>11.1f}"), ("makespan s", 11, "{:>11.0f}"), ("peak W", 9, "{:>9.0f}"),
    ("over budget s", 13, "{:>13.0f}"), ("overhead", 8, "{:>8.3f}"), ("done", 13, "{:>13}"),
)


def table(doc: dict[str, Any]) -> str:
    """A fixed-width table of the policies of a ``tao simulate`` document."""
    lines = [" ".join(f"{h:<{w}}" if i == 0 else f"{h:>{w}}" for i, (h, w, _) in enumerate(COLUMNS))]
    for name, m in doc["policies"].items():
        vals = (name, m["energy_j"] / 3.6e6, m.get("bound_ratio", math.nan), m["idle_energy_j"] / 3.6e6,
                m["boot_energy_j"] / 3.6e6, m["wait_p95_s"], m["wait_mean_s"], m["makespan_s"], m["peak_power_w"],
                m["budget_violation_s"], m["overhead_share"], f"{m['tasks_completed']}/{m['tasks_total']}")
        row = " ".join(fmt.format(v) for (_, _, fmt), v in zip(COLUMNS, vals))
        if m.get("inverted"):
            row += "  inverted"
        lines.append(row)
    if doc.get("carbon_source"):
        lines.append("emissions (kg CO2e, " + doc["carbon_source"] + "): " + ", ".join(
            f"{name} {m['emissions_kg_co2e']:.3f}" for name, m in doc["policies"].items()))
    late = {name: m["deadlines_missed"] for name, m in doc["policies"].items() if "deadlines_missed" in m}
    if late:
        lines.append("deadlines missed: " + ", ".join(f"{name} {n}" for name, n in late.items()))
    lines.append(f"lower bound: {doc['lower_bound_j'] / 3.6e6:.3f} kWh (facility; every unit of work at the most "
                 f"efficient node type and load, no idle, no boot)")
    if doc.get("tao_sweep"):
        lines.append("tao at other lambdas (J/s): " + ", ".join(
            f"{lam}: {m['energy_j'] / 3.6e6:.3f} kWh, p95 wait {m['wait_p95_s']:.1f} s"
            for lam, m in doc["tao_sweep"].items()))
    if doc.get("verdicts"):
        from tao_core.sim.verdict import WAIT_SLACK_S, Verdict

        lines.append(f"verdict (tao at lambda {doc.get('tao_lambda_j_per_s', 'default'):g} J/s against each baseline: "
                     f"less energy at a p95 wait no worse than the baseline's + {WAIT_SLACK_S:g} s, else a point of "
                     "its lambda sweep that has both):")
        lines.extend("  " + Verdict(**v).line() for v in doc["verdicts"])
    return "\n".join(lines)


def json_document(doc: dict[str, Any]) -> dict[str, Any]:
    """The serialisable part of a run document (without SimResult objects)."""
    return {k: v for k, v in doc.items() if k != "results"}


def _tmp_beside(path: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent or Path(".")))
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(name, 0o666 & ~umask)  # as a plain open() would create it
    return Path(name)


def write_json(doc: dict[str, Any], path: Path) -> Path:
    """Write the JSON to a temporary file beside ``path``; returns the temporary path."""
    tmp = _tmp_beside(path)
    with open(tmp, "w") as fh:
        json.dump(json_document(doc), fh, indent=2, default=_jsonable)
        fh.write("\n")
    return tmp


def _jsonable(v: Any) -> Any:
    if hasattr(v, "item"):
        return v.item()
    if isinstance(v, (set, tuple)):
        return list(v)
    return str(v)


def write_plot(results: dict[str, SimResult], path: Path, title: str = "", budget_w: Optional[float] = None) -> Path:
    """A step plot of cluster IT power over time per policy (Agg backend) to a temporary
    PNG beside ``path``; returns the temporary path."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5))
    span = max((r.end_s for r in results.values()), default=0.0)
    scale, unit = (3600.0, "h") if span > 4 * 3600 else ((60.0, "min") if span > 600 else (1.0, "s"))
    for name, r in results.items():
        t = list(r.timeline_t)
        w = list(r.timeline_w)
        if len(t) > 20000:
            step = len(t) // 20000 + 1
            t, w = t[::step] + t[-1:], w[::step] + w[-1:]
        ax.step([x / scale for x in t], [y / 1000.0 for y in w], where="post", label=name, linewidth=1)
    if budget_w is not None:
        ax.axhline(budget_w / 1000.0, color="k", linestyle="--", linewidth=1, label="power budget")
    ax.set_xlabel(f"time ({unit})")
    ax.set_ylabel("cluster IT power (kW)")
    ax.set_title(title or "cluster power per policy")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = _tmp_beside(path)
    fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return tmp


SIM_METHOD = "simulated: declared power curve per node, integrated exactly between events"
TASK_METHOD = ("simulated: each node's dynamic energy split by the CPUs and GPUs each task holds, plus its idle draw "
               "split by the share of its CPUs each task holds")


def attributed_energy(res: SimResult, cluster: ClusterSpec, workload: Workload) -> tuple[list[float], dict[str, EnergyParts]]:
    """Task work per task (J; 0 for a task that never ran) and the energy parts of each
    node, by node id, as ``tao_core.accounting.figures`` defines them: a task's work is the
    dynamic energy the simulator attributes to it plus its node's idle draw for the share
    of the node's CPUs it holds (the static split of ``tao_core.attribution``); a node's
    idle energy is what no task was charged with."""
    task_j = [0.0] * len(workload.tasks)
    per_node: dict[str, float] = {}
    for i, t in enumerate(workload.tasks):
        s, e, n = res.start_s[i], res.end_s_task[i], res.node_of_task[i]
        if not (s == s and e == e) or n < 0:
            continue
        node = cluster.nodes[n]
        nt = cluster.node_types[node.node_type]
        static = nt.idle_w * (e - s) * min(1.0, t.cpus / nt.cpus)
        task_j[i] = res.energy_task_j[i] + static
        per_node[node.node_id] = per_node.get(node.node_id, 0.0) + task_j[i]
    parts = {}
    for ne in res.nodes:
        tasks = per_node.get(ne.node_id, 0.0)
        idle = ne.it_j - tasks - ne.boot_j - ne.off_j
        if idle < -1e-6 * max(1.0, ne.it_j):
            raise ValueError(f"node {ne.node_id}: tasks charged {tasks} J, more than its {ne.it_j - ne.boot_j - ne.off_j} J on")
        parts[ne.node_id] = EnergyParts(tasks, max(idle, 0.0), ne.boot_j, ne.off_j)
    return task_j, parts


def _groups(res: SimResult, workload: Workload, task_j: list[float]) -> list[WorkRecord]:
    """One record per task group: its task work, time span, and the units of work of its
    tasks that completed (a task counts its units when it ends)."""
    groups: dict[str, list[float]] = {}
    units: dict[str, dict[str, float]] = {}
    for i, t in enumerate(workload.tasks):
        s, e = res.start_s[i], res.end_s_task[i]
        if s == s:
            g = groups.setdefault(t.group, [0.0, math.inf, 0.0])
            g[0] += task_j[i]
            g[1] = min(g[1], s)
            g[2] = max(g[2], e if e == e else s)
            units[t.group] = add_units(units.get(t.group, {}), t.units if e == e else {})
    return [WorkRecord(scope="group", id=g, group=g, energy_j=e, source="modeled", method=TASK_METHOD,
                       start_s=s0, end_s=s1, units=units[g]) for g, (e, s0, s1) in sorted(groups.items())]


def ledger_records(name: str, setup_config: dict[str, Any], res: SimResult, cluster: ClusterSpec,
                   workload: Workload, summary: dict[str, Any], run_id: Optional[str] = None) -> Iterable[tuple[str, dict]]:
    """(kind, payload) of the config, energy and summary records of one policy's run, in
    the shape of ``tao_core.accounting.records`` (decision records are appended as the run
    produces them). ``summary``: ``metrics.summarize`` of the run."""
    run_id = run_id or f"sim-{name}-{uuid.uuid4().hex[:12]}"
    config = RunConfig(
        run_id=run_id, engine="sim", policy=name, pue=cluster.pue, controller=setup_config,
        power_budget_w=res.budget_w,
        nodes=tuple(NodeInfo(n.node_id, n.node_type, float(cluster.node_types[n.node_type].cpus),
                             float(cluster.node_types[n.node_type].gpus)) for n in cluster.nodes),
        telemetry=({"domain": "node", "source": "modeled", "method": SIM_METHOD},),
    )
    task_j, parts = attributed_energy(res, cluster, workload)
    nodes = [NodeRecord(node_id=ne.node_id, parts=parts[ne.node_id], source="modeled", method=SIM_METHOD,
                        start_s=0.0, end_s=res.end_s) for ne in res.nodes]
    run_summary = RunSummary(
        run_id=run_id, policy=name, makespan_s=summary["makespan_s"], tasks_completed=summary["tasks_completed"],
        peak_power_w=summary["peak_power_w"], power_budget_w=res.budget_w,
        budget_violation_s=summary["budget_violation_s"], emissions_kg_co2e=summary.get("emissions_kg_co2e"),
        carbon_source=summary.get("carbon_source"), deadlines_total=summary.get("deadlines_total"),
        deadlines_missed=summary.get("deadlines_missed"))
    return run_records(config, nodes, _groups(res, workload, task_j), run_summary)
