"""Each of the controller's levers measured on its own: TAO with every lever on, then with
one switched off at a time, on the scenarios and held-out variations of
``sim_workloads.py``.

    python benchmarks/sim_levers.py [--scenario NAME ...] [--json OUT]

Levers (``ControllerConfig`` switches): ``predictive_scaling`` (capacity held and booted
for forecast arrivals, idle nodes off at once when the forecast says the quiet outlasts
their break-even), ``size_boots`` (boots for a queue sized by the energy-delay trade),
``pack_efficient`` (nodes kept and drained by the watts their curves say they draw at the
load they would carry), ``gpu_power_limits`` (a GPU power limit learned per task group,
from the measured per-limit profiles), ``defer_to_on_windows`` (deferrable work with a
deadline waits for nodes that are on anyway). For each run: facility energy (kWh), the p95
wait of the tasks without a deadline (s), the mean wait (s), boots, deadlines missed, and
TAO's own objective, energy + lambda x the summed waits (J), which is what a lever trades.
A lever that cannot act on a scenario (GPU power limits without measured per-limit profiles
or GPU tasks, on-window deferral without deadlines) is not run switched off: its run is the
one with every lever on (``same_as``).
Writes ``benchmarks/results/sim_levers.json`` and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from results_file import write_json  # noqa: E402
from sim_workloads import GOAL_SCENARIOS, HELD_OUT, SCENARIOS, Scenario  # noqa: E402
from tao_core.control import ControllerConfig  # noqa: E402
from tao_core.sim.gpu_limits import GpuLimitModel  # noqa: E402
from tao_core.sim.runner import run_all  # noqa: E402

LEVERS = ("predictive_scaling", "size_boots", "pack_efficient", "gpu_power_limits", "defer_to_on_windows")
SHORT = {"predictive_scaling": "predictive", "size_boots": "sized boots", "pack_efficient": "packing",
         "gpu_power_limits": "GPU limits", "defer_to_on_windows": "on-window deferral"}


def _figures(m: dict[str, Any], n_tasks: int, lam: float) -> dict[str, Any]:
    return {"energy_kwh": m["energy_j"] / 3.6e6, "p95_wait_s": m["service_wait_p95_s"], "mean_wait_s": m["wait_mean_s"],
            "boots": m["boots"], "deadlines_missed": m.get("deadlines_missed", 0),
            "tasks_completed": m["tasks_completed"], "tasks_total": m["tasks_total"],
            "objective_j": m["energy_j"] + lam * m["wait_mean_s"] * n_tasks,
            "gpu_limited_tasks": m.get("gpu_limited_tasks", 0)}


def idle_levers(sc: Scenario) -> set[str]:
    """The levers that cannot act on a scenario: GPU power limits where no node type has
    measured per-limit profiles or no task asks for a GPU, on-window deferral where no task
    has a deadline. Switching one of them off gives the run with every lever on."""
    out = set()
    model = GpuLimitModel(sc.cluster.node_types)
    used = {n.node_type for n in sc.cluster.nodes}
    if not any(model.limits_w(t) for t in used) or not any(t.gpus > 0 for t in sc.workload.tasks):
        out.add("gpu_power_limits")
    if not any(t.deadline_s is not None for t in sc.workload.tasks):
        out.add("defer_to_on_windows")
    return out


def measure(name: str, doc: dict[str, Any], json_path: str) -> dict[str, Any] | None:
    """TAO with every lever on, then each switched off, on scenario ``name``; the JSON is
    rewritten after each run (a long series stopped early keeps what it measured; a
    scenario still running has ``complete`` false)."""
    sc = SCENARIOS[name]()
    if sc is None:
        return None
    lam = ControllerConfig().lambda_j_per_s
    idle = idle_levers(sc)
    out: dict[str, Any] = {"tasks": len(sc.workload), "nodes": len(sc.cluster.nodes), "runs": {},
                           "levers_without_effect": sorted(idle), "complete": False}
    doc["scenarios"][name] = out
    t0 = time.perf_counter()
    for off in (None,) + LEVERS:
        key = "all on" if off is None else f"without {off}"
        if off in idle:  # it cannot act here: the run is the one with every lever on
            out["runs"][key] = dict(out["runs"]["all on"], same_as="all on")
            continue
        opts = {} if off is None else {off: False}
        m = run_all(sc.cluster, sc.workload, ["tao"], budget_w=sc.budget_w, controller_options=opts, strict=False,
                    sweep=())["policies"]["tao"]
        out["runs"][key] = _figures(m, len(sc.workload), lam)
        print(f"  {name}: {key}: {m['energy_j'] / 3.6e6:.4g} kWh, p95 {m['service_wait_p95_s']:.0f} s", flush=True)
        out["wall_s"] = time.perf_counter() - t0
        write_json(doc, json_path)
    out["complete"] = True
    out["wall_s"] = time.perf_counter() - t0
    write_json(doc, json_path)
    return out


def _kwh(x: float) -> str:
    return f"{x:,.0f}" if x >= 1000 else f"{x:.4g}"


def table(doc: dict[str, Any]) -> str:
    """Markdown: per scenario, every lever on, and each lever's effect when switched off."""
    head = "| scenario | all on: kWh, p95 s | " + " | ".join(f"without {SHORT[lv]}" for lv in LEVERS) + " |"
    lines = [head, "|" + "---|" * (len(LEVERS) + 2)]
    for name, d in doc["scenarios"].items():
        on = d["runs"].get("all on")
        if on is None:
            continue
        cells = [f"{_kwh(on['energy_kwh'])}, {on['p95_wait_s']:.0f}"]
        for lv in LEVERS:
            r = d["runs"].get(f"without {lv}")
            if r is None or "same_as" in r:
                cells.append("(not run)" if r is None else "(cannot act)")
                continue
            diff = r["energy_kwh"] / on["energy_kwh"] - 1.0
            cells.append(f"{_kwh(r['energy_kwh'])} ({100 * diff:+.1f} %), {r['p95_wait_s']:.0f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenario", action="append", help="scenario (repeatable; default: the goals, modern, held-out)")
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "sim_levers.json"))
    args = ap.parse_args(argv)
    names = args.scenario or list(GOAL_SCENARIOS) + ["modern"] + list(HELD_OUT)
    doc: dict[str, Any] = {"levers": list(LEVERS), "lambda_j_per_s": ControllerConfig().lambda_j_per_s,
                           "scenarios": {}, "source": "modeled (discrete-event simulation)"}
    for n in names:
        print(f"== {n}", flush=True)
        if measure(n, doc, args.json) is None:
            print(f"{n}: input not found; skipped")
    print(table(doc))
    write_json(doc, args.json)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
