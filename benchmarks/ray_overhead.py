"""Submission overhead of tao_ray, side by side on one cluster: 2,000 no-op tasks end to end
(submit all, then get all) and a tiny-task map (``ray.get([square.remote(x) for x in
xs])`` over 2,000 integers), each with Ray's default scheduling and with TAO placement (no
power budget: open admission), runs alternated, median tasks/s of each. Goal: TAO /
default >= 0.95 for the map (the no-op ratio is the reference).

Cluster: ``ray.cluster_utils.Cluster`` with a head node without CPUs and three 2-CPU worker
nodes (one efficient, two old server types). TAO's samplers and controller run during both
variants, so the ratio measures the per-task path only.

    python benchmarks/ray_overhead.py [--json OUT] [--tasks 2000] [--runs 7]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ray  # noqa: E402
from ray_cluster import LocalCluster  # noqa: E402

import tao_ray  # noqa: E402
from results_file import write_json  # noqa: E402

GOAL = 0.95


def noop():
    return None


def square(x):
    return x * x


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "ray_overhead.json"))
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=7)
    a = ap.parse_args(argv)

    load_before = os.getloadavg()
    lc = LocalCluster([("eff", 2), ("old", 2), ("old", 2)]).start()
    try:
        tao_ray.init([tao_ray.specpower_node_type("IbmX3250XeonX3470", name="eff", cpus=2),
                      tao_ray.specpower_node_type("HpProLiantMl110G3PentiumD930", name="old", cpus=2)])
        n = a.tasks
        fns = {"noop": (ray.remote(noop), tao_ray.remote(noop), lambda f: [f.remote() for _ in range(n)]),
               "map": (ray.remote(square), tao_ray.remote(square), lambda f: [f.remote(x) for x in range(n)])}

        def run(work: str, variant: str) -> float:
            plain, tao, submit = fns[work]
            t = time.perf_counter()
            ray.get(submit(plain if variant == "default" else tao))
            return n / (time.perf_counter() - t)

        for work in fns:  # warm up worker pools on every node
            run(work, "default")
            run(work, "tao")
        rates = {w: {"default": [], "tao": []} for w in fns}
        for i in range(a.runs):
            for work in fns:
                for k in (("default", "tao") if i % 2 == 0 else ("tao", "default")):
                    rates[work][k].append(run(work, k))
        st = tao_ray.stats()["counters"]
        load_after = os.getloadavg()
    finally:
        tao_ray.shutdown()
        lc.stop()
    med = {w: {k: statistics.median(v) for k, v in r.items()} for w, r in rates.items()}
    ratio = {w: m["tao"] / m["default"] for w, m in med.items()}
    out = {
        "ratio": ratio["map"], "ratio_noop": ratio["noop"],
        "default_tasks_per_s": med["map"]["default"], "tao_tasks_per_s": med["map"]["tao"],
        "median_tasks_per_s": med, "runs": rates, "tasks": n, "goal_ratio": GOAL,
        "tao_counters": st, "load_average_1_5_15": {"before": list(load_before), "after": list(load_after)},
        "cpus": os.cpu_count(),
        "setup": "ray.cluster_utils.Cluster: head 0 CPUs (with Ray's dashboard) + 3 nodes x 2 CPUs on one "
                 "machine; TAO running in both variants (samplers, controller, task-event reads); no power "
                 "budget (open admission); no-op and map workloads interleaved, variants alternated; median",
    }
    print(f"{'workload':<8}{'variant':<10}{'median tasks/s':>16}   runs")
    for w in fns:
        for k in ("default", "tao"):
            print(f"{w:<8}{k:<10}{med[w][k]:>16.0f}   {', '.join(f'{x:.0f}' for x in rates[w][k])}")
    print(f"ratio tao/default: map {ratio['map']:.3f} (goal >= {GOAL}), no-op {ratio['noop']:.3f}; TAO placed "
          f"{st['placed']}, default-fallback {st['default']}")
    print(f"load average (1, 5, 15 min) before {', '.join(f'{x:.2f}' for x in load_before)}, after "
          f"{', '.join(f'{x:.2f}' for x in load_after)} on {os.cpu_count()} CPUs (the machine is shared)")
    write_json(out, a.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
