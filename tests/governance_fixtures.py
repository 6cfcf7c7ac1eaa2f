"""Ledgers written through the one record writer (``tao_core.accounting.records``) for the
governance tests, and the tools of an attacker who edits a ledger without its private key.
Figures are consistent: node energy = task work + idle, task records add up to their
node's task work. Each task counts units of work (tokens and one request) unless
``units=False``, and floating point operations with ``flops=True``."""
from __future__ import annotations

import json
import pathlib
from typing import Iterable, Optional

from tao_core.accounting.figures import EnergyParts
from tao_core.accounting.records import NodeInfo, NodeRecord, RunConfig, RunSummary, WorkRecord, run_records
from tao_core.control.types import Alternative, DecisionEvent
from tao_core.governance import Ledger
from tao_core.governance.canonical import canonical_bytes, sha256_hex

NODES = [
    NodeInfo("n1", "xeon-2s", 32.0, 0.0),
    NodeInfo("n2", "xeon-2s", 32.0, 0.0),
    NodeInfo("g1", "gpu-a100", 16.0, 2.0),
]
GROUPS = ["train_step", "preprocess", "evaluate"]


def _task_source(node: NodeInfo, source: str) -> str:
    return "measured-nvml+measured-rapl" if node.gpus and source.startswith("measured") else source


def run_parts(*, run_id: str = "run-1", pue: float = 1.4, budget_w: Optional[float] = 2000.0,
              violation_s: float = 0.0, scale: float = 1.0, idle_per_node_j: float = 9000.0,
              source: str = "measured-rapl", cluster_name: Optional[str] = None, policy: str = "tao",
              units: bool = True, flops: bool = False):
    """(config, node records, task records, summary) of one run of 24 tasks on 3 nodes."""
    tasks = []
    for i in range(24):
        counted = {"tokens": 1000.0 + 100.0 * i, "requests": 1.0} if units else {}
        if flops:
            counted["flops"] = 2.5e12 * (i + 1)
        node = NODES[i % 3]
        e = scale * (100.0 + 10.0 * i)
        comps = {"cpu_package": 0.6 * e, "dram": 0.1 * e, "gpu": 0.3 * e if node.gpus else 0.0,
                 "other": 0.0 if node.gpus else 0.3 * e}
        tasks.append(WorkRecord(scope="task", id=f"t{i}", node_id=node.node_id, group=GROUPS[i % 3],
                                job="job-a" if i < 12 else "job-b", energy_j=e, components=comps,
                                source=_task_source(node, source),
                                method="interval split: dynamic by CPU share, static (idle_w) by capacity share",
                                uncertainty=0.05, start_s=float(i), end_s=float(i) + 3.0, units=counted))
    nodes = []
    for n in NODES:
        work = sum(t.energy_j for t in tasks if t.node_id == n.node_id)
        parts = EnergyParts(work, scale * idle_per_node_j)
        total = parts.total_j
        comps = {"cpu_package": 0.55 * total, "dram": 0.1 * total, "gpu": 0.3 * total if n.gpus else 0.0,
                 "other": (0.05 if n.gpus else 0.35) * total}
        measured = source.startswith("measured")
        nodes.append(NodeRecord(node_id=n.node_id, parts=parts, components=comps, source=_task_source(n, source),
                                method="RAPL package+dram counters" if measured else "power curve x utilization",
                                uncertainty=0.02 if measured else 0.15, start_s=0.0, end_s=30.0))
    config = RunConfig(
        run_id=run_id, engine="sim", policy=policy, pue=pue, nodes=tuple(NODES), power_budget_w=budget_w,
        cluster_name=cluster_name,
        controller={"lambda_j_per_s": 50.0, "mu": 1.0, "power_budget_w": budget_w, "pue": pue,
                    "job_budgets_j": {"job-a": 3000.0 * scale, "job-b": 1000.0 * scale}, "job_budget_mode": "warn"},
        telemetry=({"domain": "package-0", "source": source, "method": "powercap sysfs energy_uj"},
                   {"domain": "gpu-0", "source": "measured-nvml", "method": "nvmlDeviceGetTotalEnergyConsumption"}))
    summary = RunSummary(run_id=run_id, policy=policy, makespan_s=30.0, tasks_completed=len(tasks), peak_power_w=1850.0,
                         power_budget_w=budget_w, budget_violation_s=violation_s)
    return config, nodes, tasks, summary


def append_run(led: Ledger, parts) -> None:
    config, nodes, tasks, summary = parts
    recs = run_records(config, nodes, tasks, summary)
    led.append(*recs[0])
    for i, t in enumerate(tasks):
        ev = DecisionEvent(t_s=float(i), kind="place", subject=t.id, group=t.group, node_id=t.node_id,
                           cost=12.5, reason="lowest penalty", alternatives=(Alternative("n2", float("inf"), 0.0, 0.0),),
                           budget={"cluster_power_w": 1500.0, "budget_w": config.power_budget_w})
        led.append("decision", ev.to_dict())
    led.append("decision", DecisionEvent(t_s=20.0, kind="defer", subject="t99", reason="power headroom").to_dict())
    for kind, payload in recs[1:]:
        led.append(kind, payload)


def write_run(path: pathlib.Path, *, checkpoint_every: int = 50, key_path: Optional[pathlib.Path] = None,
              **kw) -> dict:
    """Write one run to a closed ledger at ``path``; returns the expected figures."""
    parts = run_parts(**kw)
    with Ledger(path, key_path=key_path, checkpoint_every=checkpoint_every) as led:
        append_run(led, parts)
    config, nodes, tasks, summary = parts
    it = sum(n.energy_j for n in nodes)
    work = sum(t.energy_j for t in tasks)
    return {"it": it, "facility": it * config.pue, "task": work, "idle": it - work, "tasks": tasks, "nodes": nodes,
            "config": config, "summary": summary}


# ----------------------------------------------------------------------------- attacker's tools
def records_of(path: pathlib.Path) -> list[dict]:
    return [json.loads(x) for x in path.read_bytes().splitlines()]


def rechain(records: Iterable[dict], *, renumber: bool = True) -> bytes:
    """The bytes of ``records`` with seq (when ``renumber``), prev and hash recomputed, as an
    attacker without the private key can do after editing, inserting, deleting or
    reordering records. Signatures stay as they were."""
    prev = "0" * 64
    out = []
    for i, r in enumerate(records, start=1):
        r = {k: v for k, v in r.items() if k != "hash"}
        r["prev"] = prev
        if renumber:
            r["seq"] = i
        prev = sha256_hex(canonical_bytes(r))
        r["hash"] = prev
        out.append(canonical_bytes(r) + b"\n")
    return b"".join(out)


def forged_tail(records: list[dict]) -> list[dict]:
    """A config with the real run id and a summary with energy halved, as appended records."""
    cfg = next(r for r in records if r["kind"] == "config")
    summ = next(r for r in reversed(records) if r["kind"] == "summary")
    nodes = [r for r in records if r["kind"] == "energy" and r["payload"]["scope"] == "node"]
    halved = []
    for n in nodes:
        p = dict(n["payload"])
        for k in ("energy_j", "tasks_j", "idle_j"):
            p[k] = p[k] / 2
        p["components"] = {c: v / 2 for c, v in p["components"].items()}
        halved.append(dict(n, kind="energy", payload=p))
    return [dict(cfg)] + halved + [dict(summ)]
