"""What-if scenarios for the simulator: TAO against the engines' own policies and
autoscalers, judged by energy and by service.

    python benchmarks/sim_scenarios.py --scenario NAME|goals|held-out|all [--json OUT]

Scenarios and held-out variations: ``sim_workloads.py``. Every policy of ``tao simulate``
runs on the same cluster, workload and boot and off model: Ray's default scheduling (static),
Ray's autoscaler with ``idle_timeout_minutes`` 5 (its default) and 1, Dask's placement
(static), Dask's ``Adaptive`` with its defaults and tuned, spread, pack, and TAO at its
default lambda; TAO is also run at lambda 0, 2, 200 and 2,000 J/s (its energy-delay front).
Each scenario prints the table with the verdict per baseline
(:mod:`tao_core.sim.verdict`) and writes ``benchmarks/results/sim_<name>.json`` (the
``tao simulate --json`` document plus ``goals``) with two plots: cluster IT power over time
(``.png``) and energy against p95 wait with TAO's front (``_pareto.png``).

Goals (the scenarios of ``GOAL_SCENARIOS``): TAO's energy the lowest of every policy that
runs every task, at a p95 wait no worse than ``ray-default-autoscale``'s plus 1 s, at least
5 % below the best baseline where node types differ, and every baseline beaten or
dominated by a point of TAO's front; budget: 0 s over the budget for TAO. The static
``ray-default`` stays as the reference of the "74.8 % less power" headline (reported, not a
rival).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from results_file import write_json  # noqa: E402
from sim_workloads import GOAL_SCENARIOS, HELD_OUT, SCENARIOS, Scenario, specpower_cluster  # noqa: E402,F401
from tao_core.sim import output  # noqa: E402
from tao_core.sim.runner import POLICY_NAMES, run_all  # noqa: E402
from tao_core.sim.verdict import goals  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
#: lambdas (J/s) of TAO's front beside its default
FRONT = (0.0, 2.0, 200.0, 2000.0)


def _rel(source: str) -> str:
    """An input's path relative to the checkout (results name no absolute paths)."""
    p = Path(source)
    if p.is_absolute() and p.exists():
        return os.path.relpath(p, ROOT)
    return source


def run_scenario(sc: Scenario) -> dict[str, Any]:
    """Every policy and TAO's front on one scenario; the document with ``goals``."""
    t0 = time.perf_counter()
    doc = run_all(sc.cluster, sc.workload, POLICY_NAMES, budget_w=sc.budget_w, strict=False, progress=True,
                  sweep=FRONT, sweep_all=True)
    doc["wall_s"] = time.perf_counter() - t0
    pol = doc["policies"]
    g = goals(pol, doc.get("tao_sweep"))
    tao, static = pol["tao"], pol["ray-default"]
    g["tao_saving_vs_ray_default"] = 1.0 - tao["energy_j"] / static["energy_j"]
    g["node_types"] = len({n.node_type for n in sc.cluster.nodes})
    if sc.budget_w is not None:
        g["tao_budget_violation_s"] = tao["budget_violation_s"]
        g["budget_met"] = tao["budget_violation_s"] == 0.0
        g["violation_s"] = {k: v["budget_violation_s"] for k, v in pol.items()}
    doc["goals"] = g
    doc["scenario"] = {"name": sc.name, "cluster": _rel(sc.cluster.source), "workload": _rel(sc.workload.source),
                       "tasks": len(sc.workload), "nodes": len(sc.cluster.nodes), "note": sc.note,
                       "cluster_cpus": sum(sc.cluster.node_types[n.node_type].cpus for n in sc.cluster.nodes),
                       "budget_w": sc.budget_w}
    return doc


def _front_plot(doc: dict[str, Any], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    front = dict(doc.get("tao_sweep", {}))
    front[f"{doc['tao_lambda_j_per_s']:g}"] = doc["policies"]["tao"]
    pts = sorted(((m["wait_p95_s"], m["energy_j"] / 3.6e6, lam) for lam, m in front.items()))
    ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label="tao (lambda sweep)")
    for x, y, lam in pts:
        ax.annotate(f"lambda={lam}", (x, y), fontsize=7)
    for name, m in doc["policies"].items():
        if name != "tao":
            ax.plot([m["wait_p95_s"]], [m["energy_j"] / 3.6e6], "s", label=name)
    ax.axhline(doc["lower_bound_j"] / 3.6e6, color="k", linestyle="--", linewidth=1, label="lower bound")
    ax.set_xscale("symlog", linthresh=10.0)
    ax.set_xlabel("p95 wait (s)")
    ax.set_ylabel("energy (kWh)")
    ax.set_title(title)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = output._tmp_beside(path)
    fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def write(doc: dict[str, Any], name: str, json_path: Optional[str]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    jp = Path(json_path) if json_path else RESULTS / f"sim_{name}.json"
    results = doc.pop("results")
    write_json(output.json_document(doc), jp)
    pp = jp.with_suffix(".png")
    os.replace(output.write_plot(results, pp, title=f"{name}: cluster IT power", budget_w=doc.get("power_budget_w")),
               pp)
    _front_plot(doc, jp.with_name(jp.stem + "_pareto.png"), f"{name}: energy against p95 wait")
    return jp


def _print(doc: dict[str, Any]) -> None:
    print(output.table(doc))
    g = doc["goals"]
    keys = ("tao_over_best", "best_baseline", "lowest", "margin_met", "wait_reference_p95_s", "wait_met",
            "pareto_met", "tao_bound_ratio", "tao_saving_vs_ray_default", "budget_met")
    print("goals: " + ", ".join(f"{k}={g[k]:.4g}" if isinstance(g.get(k), float) else f"{k}={g.get(k)}"
                                for k in keys if k in g))
    print(f"all policies and the front in {doc['wall_s']:.1f} s")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenario", default="goals",
                    help="a scenario of sim_workloads.SCENARIOS, or goals, held-out, all (default goals)")
    ap.add_argument("--json", help="output JSON (one scenario; default benchmarks/results/sim_<scenario>.json)")
    args = ap.parse_args(argv)
    groups = {"goals": GOAL_SCENARIOS + ("modern",), "held-out": HELD_OUT,
              "all": GOAL_SCENARIOS + ("modern",) + HELD_OUT}
    names = groups.get(args.scenario, (args.scenario,))
    if any(n not in SCENARIOS for n in names):
        ap.error(f"--scenario: choose from {', '.join(list(SCENARIOS) + list(groups))}")
    for n in names:
        print(f"== {n}", flush=True)
        sc = SCENARIOS[n]()
        if sc is None:
            print(f"{n}: input not found; skipped")
            continue
        doc = run_scenario(sc)
        _print(doc)
        print(f"wrote {write(doc, n, args.json if len(names) == 1 else None)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
