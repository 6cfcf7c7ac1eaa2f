"""Simulator speed: a scale run of N tasks on M nodes (default 1,000,000 tasks on 10,000
nodes), one policy at a time, reporting wall seconds and events per second.

    python benchmarks/sim_speed.py [--tasks 1000000] [--nodes 10000] [--policy tao] [--json OUT]

Cluster: the three SPECpower servers of the idle-heavy scenario in equal numbers (boot 120 s).
Traffic: Poisson arrivals sized for a mean load of about 40 % of the cluster's CPUs; tasks
ask 1 or 2 CPUs and run a lognormal time (median 60 s, sigma 0.5); seed 1. Goal (issue 4):
under 10 minutes on the 2-core development machine. The 8k-pod Alibaba trace with all
policies (goal: under 60 s) is timed by ``sim_scenarios.py --scenario alibaba-v2023``.
"""
from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from sim_workloads import specpower_cluster  # noqa: E402
from tao_core.sim import output  # noqa: E402
from tao_core.sim.metrics import lower_bound_j, summarize  # noqa: E402
from tao_core.sim.model import ClusterSpec, SimTask, Workload, make_nodes  # noqa: E402
from tao_core.sim.runner import build_policy, run_policy  # noqa: E402


def scale_cluster(nodes: int) -> ClusterSpec:
    base = specpower_cluster()
    names = list(base.node_types)
    per = [nodes // len(names) + (1 if i < nodes % len(names) else 0) for i in range(len(names))]
    return ClusterSpec(node_types=base.node_types, nodes=make_nodes(list(zip(names, per))), pue=1.0,
                       source=f"{nodes} SPECpower nodes")


def scale_workload(n: int, cluster: ClusterSpec, seed: int = 1) -> Workload:
    rng = random.Random(seed)
    cpus = sum(cluster.node_types[x.node_type].cpus for x in cluster.nodes)
    mean_work = 1.5 * 60.0 * math.exp(0.5 ** 2 / 2)  # CPU-seconds per task
    rate = 0.4 * cpus / mean_work
    t = 0.0
    tasks = []
    for i in range(n):
        t += rng.expovariate(rate)
        tasks.append(SimTask(f"t{i}", t, rng.lognormvariate(math.log(60.0), 0.5), float(rng.choice((1, 2))), 0.0,
                             "g" + str(i % 10)))
    return Workload(tasks=tasks, source=f"poisson({n} tasks, {rate:.1f}/s)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=1_000_000)
    ap.add_argument("--nodes", type=int, default=10_000)
    ap.add_argument("--policy", action="append", help="policies to time (default: tao)")
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "sim_speed.json"))
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    cl = scale_cluster(args.nodes)
    wl = scale_workload(args.tasks, cl)
    gen_s = time.perf_counter() - t0
    out = {"tasks": args.tasks, "nodes": args.nodes, "generate_s": gen_s, "cpu_count": os.cpu_count(),
           "note": "wall clock on a shared machine; other work ran beside it", "policies": {}}
    bound = lower_bound_j(cl, wl)
    for name in args.policy or ["tao"]:
        setup = build_policy(name, cl)
        t = time.perf_counter()
        res = run_policy(setup, cl, wl, strict=False, record_timeline=False)
        wall = time.perf_counter() - t
        m = summarize(res, cl, wl, bound)
        out["policies"][name] = {"wall_s": wall, "tasks_per_s": args.tasks / wall, "ticks": res.ticks,
                                 "tasks_completed": m["tasks_completed"], "energy_j": m["energy_j"],
                                 "wait_p95_s": m["wait_p95_s"], "bound_ratio": m["bound_ratio"],
                                 "goal_s": 600.0, "met": wall < 600.0}
        print(f"{name}: {args.tasks} tasks on {args.nodes} nodes in {wall:.1f} s ({args.tasks / wall:.0f} tasks/s), "
              f"{res.ticks} ticks, {m['tasks_completed']} completed", flush=True)
    jp = Path(args.json)
    jp.parent.mkdir(parents=True, exist_ok=True)
    os.replace(output.write_json(out, jp), jp)
    print(f"wrote {jp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
