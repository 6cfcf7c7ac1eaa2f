"""TAO's cost on Dask's throughput: 20,000 tiny tasks, Dask alone vs Dask with TAO.

Two LocalClusters (2 worker processes, 1 thread each) stay up side by side, one plain,
one with ``tao_dask.register`` (telemetry every 0.5 s, placement on). Each round runs
``client.map(inc, range(N))`` on each, in alternating order, and times submit -> all
results in memory. Reported: the median of the per-round ratios, TAO tasks/s over
default tasks/s (goal >= 0.97), the medians of each, and the time spent in TAO's
``transition`` hook per task and as a share of the TAO runs' wall time (on a machine
other jobs load, throughput swings from round to round; the hook time does not).

``--decide-all`` adds a third cluster where TAO decides every task itself
(``min_task_s=0``: no hand-off of tiny tasks to Dask), to show what a per-task decision
costs.

``--task-s 0.03`` replaces ``inc`` with tasks that spin 30 ms: above ``min_task_s`` (20 ms),
so TAO decides each and admits one task per worker thread at a time.

    python benchmarks/dask_overhead.py [--json OUT] [--rounds 5] [--tasks 20000] [--decide-all] [--task-s S]
"""
from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from distributed import Client, LocalCluster, wait

import tao_dask
from results_file import write_json  # noqa: E402


def inc(x: int) -> int:
    return x + 1


def spin(x: int, seconds: float) -> int:
    t = time.perf_counter()
    while time.perf_counter() - t < seconds:
        pass
    return x + 1


def time_hooks(dask_scheduler) -> None:
    """Count the seconds spent in TAO's ``transition`` hook (Dask calls it about five
    times per task): a measure of TAO's own cost that other load on the machine does
    not blur the way it blurs throughput."""
    p = dask_scheduler.plugins["tao"]
    hook = type(p).transition.__get__(p)
    acc = p.hook_time = {"s": 0.0, "calls": 0}

    def timed(*args, **kw):
        t = time.perf_counter()
        hook(*args, **kw)
        acc["s"] += time.perf_counter() - t
        acc["calls"] += 1

    p.transition = timed  # an instance attribute named like the hook is what Dask calls


def one_run(c: Client, n: int, task_s: float = 0.0) -> float:
    """Tasks per second for n tasks, submit to all done."""
    t0 = time.perf_counter()
    if task_s > 0:
        futs = c.map(spin, range(n), seconds=task_s, pure=False)
    else:
        futs = c.map(inc, range(n), pure=False)  # fresh keys, same prefix "inc" every run
    wait(futs)
    dt = time.perf_counter() - t0
    assert futs[-1].result() == n
    del futs
    return n / dt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", default=str(Path(__file__).parent / "results" / "dask_overhead.json"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tasks", type=int, default=20_000)
    ap.add_argument("--decide-all", action="store_true")
    ap.add_argument("--task-s", type=float, default=0.0,
                    help="tasks spin this many seconds instead of inc (0: inc); above min_task_s TAO decides each")
    a = ap.parse_args(argv)
    if a.rounds < 1 or a.tasks < 1:
        print("--rounds and --tasks must be >= 1", file=sys.stderr)
        return 2
    variants = ["default", "tao"] + (["tao_decide_all"] if a.decide_all else [])
    rates: dict[str, list[float]] = {v: [] for v in variants}
    with ExitStack() as stack:
        clients = {}
        for v in variants:
            cl = stack.enter_context(LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                                  dashboard_address=":0", silence_logs=logging.ERROR))
            c = stack.enter_context(Client(cl))
            if v == "tao":
                tao_dask.register(c, default_type="IbmX3250XeonX3470")
            elif v == "tao_decide_all":
                tao_dask.register(c, default_type="IbmX3250XeonX3470", min_task_s=0.0)
            clients[v] = c
        # warm-up: imports, connections, and Dask's measured duration of the prefix "inc"
        # (with it, TAO hands these tiny tasks to Dask's own placement and queuing)
        for v, c in clients.items():
            one_run(c, min(a.tasks, 2000), a.task_s)
        clients["tao"].run_on_scheduler(time_hooks)
        tao_wall_s = 0.0
        for r in range(a.rounds):
            order = variants if r % 2 == 0 else variants[::-1]
            for v in order:
                rates[v].append(one_run(clients[v], a.tasks, a.task_s))
                if v == "tao":
                    tao_wall_s += a.tasks / rates[v][-1]
            line = "  ".join(f"{v} {rates[v][-1]:7.0f}/s" for v in variants)
            print(f"round {r + 1}: {line}", flush=True)
        counts = clients["tao"].run_on_scheduler(lambda dask_scheduler: dict(dask_scheduler.plugins["tao"].counts))
        hooks = clients["tao"].run_on_scheduler(lambda dask_scheduler: dict(dask_scheduler.plugins["tao"].hook_time))
    ratios = [t / d for t, d in zip(rates["tao"], rates["default"])]
    out = {
        "ratio": statistics.median(ratios),
        "ratios": ratios,
        "goal": ">= 0.97",
        "tasks": a.tasks,
        "task_s": a.task_s,
        "rounds": a.rounds,
        "tasks_per_s": {v: statistics.median(x) for v, x in rates.items()},
        "runs_tasks_per_s": rates,
        "tao_counts": counts,
        "tao_hook_s": hooks["s"],
        "tao_hook_calls": hooks["calls"],
        "tao_hook_us_per_task": 1e6 * hooks["s"] / (a.rounds * a.tasks),
        "tao_hook_share_of_wall": hooks["s"] / tao_wall_s if tao_wall_s > 0 else None,
        "setup": "LocalCluster, 2 worker processes x 1 thread, one cluster per variant, rounds alternate the order",
    }
    if a.decide_all:
        out["ratio_decide_all"] = statistics.median(t / d for t, d in zip(rates["tao_decide_all"], rates["default"]))
    print("\nmedian tasks/s: " + ", ".join(f"{v} {out['tasks_per_s'][v]:.0f}" for v in variants))
    print(f"TAO's transition hook: {out['tao_hook_us_per_task']:.1f} us per task, "
          f"{100 * (out['tao_hook_share_of_wall'] or 0):.2f} % of the TAO runs' wall time")
    print(f"median ratio tao/default: {out['ratio']:.3f} (goal >= 0.97)"
          + (f"; decide-all/default: {out['ratio_decide_all']:.3f}" if a.decide_all else ""))
    write_json(out, a.json)
    print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
