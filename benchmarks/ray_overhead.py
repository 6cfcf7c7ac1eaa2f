"""Submission overhead of tao_ray: 2,000 no-op tasks end to end (submit all, then get all)
with Ray's default scheduling and with TAO placement (no power budget: open admission),
runs alternated on one cluster, median tasks/s of each. Goal: TAO / default >= 0.85.

Cluster: ``ray.cluster_utils.Cluster`` with a head node without CPUs and three 2-CPU worker
nodes (one efficient, two old server types). TAO's samplers and controller run during both
variants, so the ratio measures the per-task path only.

    python benchmarks/ray_overhead.py [--json OUT] [--tasks 2000] [--runs 7]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ray  # noqa: E402
from tao_ray.localcluster import LocalCluster  # noqa: E402

import tao_ray  # noqa: E402
from results_file import write_json  # noqa: E402


def noop():
    return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "ray_overhead.json"))
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=7)
    a = ap.parse_args(argv)

    lc = LocalCluster([("eff", 2), ("old", 2), ("old", 2)]).start()
    try:
        tao_ray.init([tao_ray.specpower_node_type("IbmX3250XeonX3470", name="eff", cpus=2),
                      tao_ray.specpower_node_type("HpProLiantMl110G3PentiumD930", name="old", cpus=2)])
        plain = ray.remote(noop)
        tao = tao_ray.remote(noop)
        n = a.tasks

        def run(fn) -> float:
            t = time.perf_counter()
            ray.get([fn.remote() for _ in range(n)])
            return n / (time.perf_counter() - t)

        run(plain)  # warm up worker pools on every node
        run(tao)
        rates = {"default": [], "tao": []}
        for i in range(a.runs):
            order = ("default", "tao") if i % 2 == 0 else ("tao", "default")
            for k in order:
                rates[k].append(run(plain if k == "default" else tao))
        st = tao_ray.stats()["counters"]
    finally:
        tao_ray.shutdown()
        lc.stop()
    med = {k: statistics.median(v) for k, v in rates.items()}
    out = {
        "ratio": med["tao"] / med["default"],
        "default_tasks_per_s": med["default"], "tao_tasks_per_s": med["tao"],
        "runs": rates, "tasks": n, "goal_ratio": 0.85,
        "tao_counters": st,
        "setup": "ray.cluster_utils.Cluster: head 0 CPUs + 3 nodes x 2 CPUs on one machine; "
                 "no power budget (open admission); alternating runs; median",
    }
    print(f"{'variant':<10}{'median tasks/s':>16}   runs")
    for k in ("default", "tao"):
        print(f"{k:<10}{med[k]:>16.0f}   {', '.join(f'{x:.0f}' for x in rates[k])}")
    print(f"ratio tao/default = {out['ratio']:.3f} (goal >= 0.85); TAO placed {st['placed']}, "
          f"default-fallback {st['default']}")
    write_json(out, a.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
