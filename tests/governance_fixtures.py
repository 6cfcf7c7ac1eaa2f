"""Ledgers written with the record shapes of docs/architecture.md ("Ledger records"), for
the governance tests. Figures are consistent: node energy = task energy + idle, and the
summary's totals are the sums of the node records."""
from __future__ import annotations

import pathlib
from typing import Optional

from tao_core.control.types import Alternative, DecisionEvent
from tao_core.governance import Ledger

NODES = [
    {"node_id": "n1", "node_type": "xeon-2s", "cpus": 32, "gpus": 0},
    {"node_id": "n2", "node_type": "xeon-2s", "cpus": 32, "gpus": 0},
    {"node_id": "g1", "node_type": "gpu-a100", "cpus": 16, "gpus": 2},
]


def write_run(
    path: pathlib.Path,
    *,
    run_id: str = "run-1",
    pue: float = 1.4,
    budget_w: Optional[float] = 2000.0,
    violation_s: float = 0.0,
    scale: float = 1.0,
    idle_per_node_j: float = 9000.0,
    source: str = "measured-rapl",
    checkpoint_every: int = 50,
    cluster_name: Optional[str] = None,
    key_path: Optional[pathlib.Path] = None,
) -> dict:
    """Write one run; returns the expected totals."""
    tasks = []
    groups = ["train_step", "preprocess", "evaluate"]
    for i in range(24):
        node = NODES[i % 3]["node_id"]
        group = groups[i % 3]
        job = "job-a" if i < 12 else "job-b"
        e = scale * (100.0 + 10.0 * i)
        comps = {"cpu_package": 0.6 * e, "dram": 0.1 * e, "gpu": 0.3 * e if node == "g1" else 0.0, "other": 0.0}
        if node != "g1":
            comps["other"] = 0.3 * e
        tasks.append({"scope": "task", "id": f"t{i}", "node_id": node, "group": group, "job": job,
                      "energy_j": e, "components": comps,
                      "source": "measured-nvml+measured-rapl" if node == "g1" and source.startswith("measured") else source,
                      "method": "interval split: dynamic by CPU share, static (idle_w) by capacity share",
                      "uncertainty": 0.05, "start_s": float(i), "end_s": float(i) + 3.0})
    node_recs = []
    for n in NODES:
        te = sum(t["energy_j"] for t in tasks if t["node_id"] == n["node_id"])
        idle = scale * idle_per_node_j
        total = te + idle
        comps = {"cpu_package": 0.55 * total, "dram": 0.1 * total,
                 "gpu": 0.3 * total if n["gpus"] else 0.0, "other": 0.05 * total if n["gpus"] else 0.35 * total}
        src = "measured-nvml+measured-rapl" if n["gpus"] and source.startswith("measured") else source
        node_recs.append({"scope": "node", "id": n["node_id"], "node_id": n["node_id"], "group": None, "job": None,
                          "energy_j": total, "components": comps, "source": src,
                          "method": "RAPL package+dram counters" if source.startswith("measured") else "power curve x utilization",
                          "uncertainty": 0.02 if source.startswith("measured") else 0.15,
                          "start_s": 0.0, "end_s": 30.0})
    it = sum(r["energy_j"] for r in node_recs)
    dyn = sum(t["energy_j"] for t in tasks)
    fac = it * pue
    summary = {"it_energy_j": it, "facility_energy_j": fac, "pue": pue, "dynamic_energy_j": dyn,
               "idle_energy_j": it - dyn, "boot_energy_j": 0.0, "overhead_share": 1.0 - dyn / fac,
               "peak_power_w": 1850.0, "power_budget_w": budget_w, "budget_violation_s": violation_s,
               "makespan_s": 30.0, "tasks_completed": len(tasks)}
    config = {"run_id": run_id, "engine": "sim", "policy": "tao",
              "controller": {"lambda_j_per_s": 50.0, "mu": 1.0, "power_budget_w": budget_w, "pue": pue,
                             "job_budgets_j": {"job-a": 3000.0 * scale, "job-b": 1000.0 * scale},
                             "job_budget_mode": "warn"},
              "cluster": {"pue": pue, "power_budget_w": budget_w, "nodes": NODES},
              "telemetry": [{"domain": "package-0", "source": source, "method": "powercap sysfs energy_uj"},
                            {"domain": "gpu-0", "source": "measured-nvml", "method": "nvmlDeviceGetTotalEnergyConsumption"}]}
    if cluster_name:
        config["cluster"]["name"] = cluster_name
    with Ledger(path, key_path=key_path, checkpoint_every=checkpoint_every) as led:
        led.append("config", config)
        for i, t in enumerate(tasks):
            ev = DecisionEvent(t_s=float(i), kind="place", subject=t["id"], group=t["group"], node_id=t["node_id"],
                               cost=12.5, reason="lowest penalty",
                               alternatives=(Alternative("n2", float("inf"), 0.0, 0.0),),
                               budget={"cluster_power_w": 1500.0, "budget_w": budget_w})
            led.append("decision", ev.to_dict())
            led.append("energy", t)
        led.append("decision", DecisionEvent(t_s=20.0, kind="defer", subject="t99", reason="power headroom").to_dict())
        for r in node_recs:
            led.append("energy", r)
        led.append("summary", summary)
    return {"it": it, "facility": fac, "dynamic": dyn, "tasks": tasks, "nodes": node_recs, "summary": summary}
