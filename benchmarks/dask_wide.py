"""What worker restrictions do to Dask's root-ish queuing on a wide graph, and how TAO copes.

Restricted tasks are never root-ish in Dask, so they skip scheduler-side queuing: every
ready root task is sent to a worker at once, and roots can run far ahead of the
reductions that free their memory. TAO restricts no root-ish task: it admits them and
Dask's own root-ish queue places them; it pins only smaller groups and dependent tasks,
to a worker with a free slot that holds one of their inputs.

Graph: ``--roots`` root tasks, each making a ``--mb`` MB array with ``--root-s`` CPU
seconds of work, reduced pairwise to one number. Variants on a fresh LocalCluster each
(2 worker processes x 1 thread):

- ``default``: Dask alone (root-ish queuing on).
- ``restrict_all``: every task restricted in ``update_graph`` to a worker (round robin),
  the naive way to steer placement.
- ``tao``: TAO (controller admission, placement where Dask's contract allows it).

Reported per variant: peak bytes held in worker memory (sum of the workers' ``nbytes``,
sampled at every task completion), peak tasks in memory, makespan.

    python benchmarks/dask_wide.py [--json OUT] [--roots 200] [--mb 4]
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import dask
import numpy as np
from distributed import Client, LocalCluster
from distributed.diagnostics.plugin import SchedulerPlugin

import tao_dask
from results_file import write_json  # noqa: E402


def make(i: int, mb: float, seconds: float) -> np.ndarray:
    t = time.thread_time()
    while time.thread_time() - t < seconds:
        pass
    return np.full(int(mb * 1e6 / 8), float(i))


def combine(a, b):
    return (a if isinstance(a, float) else float(a.sum())) + (b if isinstance(b, float) else float(b.sum()))


class Probe(SchedulerPlugin):
    """Peak worker memory and tasks in memory, sampled at every completion."""

    name = "wide-probe"

    def __init__(self) -> None:
        self.peak_bytes = 0
        self.peak_in_memory = 0
        self.in_memory = 0
        self.scheduler = None

    async def start(self, scheduler) -> None:
        self.scheduler = scheduler

    def transition(self, key, start, finish, *args, **kw) -> None:
        if finish == "memory":
            self.in_memory += 1
            self.peak_in_memory = max(self.peak_in_memory, self.in_memory)
            self.peak_bytes = max(self.peak_bytes, sum(ws.nbytes for ws in self.scheduler.workers.values()))
        elif start == "memory":
            self.in_memory -= 1


class RestrictAll(SchedulerPlugin):
    """Naive steering: restrict every new task to a worker, round robin."""

    name = "restrict-all"

    async def start(self, scheduler) -> None:
        self.scheduler = scheduler
        self.i = 0

    def update_graph(self, scheduler, *, keys, **kw) -> None:
        workers = sorted(scheduler.workers)
        for ts in scheduler.tasks.values():
            if ts.state == "released" and not ts.worker_restrictions:
                ts.worker_restrictions = {workers[self.i % len(workers)]}
                ts.loose_restrictions = False
                self.i += 1


def graph(roots: int, mb: float, root_s: float):
    layer = [dask.delayed(make)(i, mb, root_s, dask_key_name=f"make-{i}") for i in range(roots)]
    level = 0
    while len(layer) > 1:
        nxt = []
        for j in range(0, len(layer) - 1, 2):
            nxt.append(dask.delayed(combine)(layer[j], layer[j + 1], dask_key_name=f"combine-{level}-{j}"))
        if len(layer) % 2:
            nxt.append(layer[-1])
        layer, level = nxt, level + 1
    return layer[0]


def run(variant: str, roots: int, mb: float, root_s: float) -> dict:
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.ERROR, memory_limit="4GiB") as cl, Client(cl) as c:
        if variant == "tao":
            tao_dask.register(c, default_type="IbmX3250XeonX3470")
        elif variant == "restrict_all":
            c.register_plugin(RestrictAll())
        c.register_plugin(Probe())
        g = graph(roots, mb, root_s)
        t0 = time.time()
        total = g.compute()
        dt = time.time() - t0
        expect = float(sum(i * int(mb * 1e6 / 8) for i in range(roots)))
        assert abs(total - expect) < 1e-6 * max(1.0, expect)
        peak = c.run_on_scheduler(lambda dask_scheduler: (dask_scheduler.plugins["wide-probe"].peak_bytes,
                                                          dask_scheduler.plugins["wide-probe"].peak_in_memory))
        return {"peak_worker_bytes": peak[0], "peak_tasks_in_memory": peak[1], "makespan_s": dt}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", default=str(Path(__file__).parent / "results" / "dask_wide.json"))
    ap.add_argument("--roots", type=int, default=200)
    ap.add_argument("--mb", type=float, default=4.0)
    ap.add_argument("--root-s", type=float, default=0.03)
    a = ap.parse_args(argv)
    out: dict = {"setup": {"roots": a.roots, "mb_per_root": a.mb, "root_cpu_s": a.root_s,
                           "cluster": "LocalCluster, 2 worker processes x 1 thread"}}
    print(f"{'variant':13s} {'peak MB':>8s} {'peak in memory':>15s} {'makespan s':>10s}")
    for v in ("default", "restrict_all", "tao"):
        r = run(v, a.roots, a.mb, a.root_s)
        out[v] = r
        print(f"{v:13s} {r['peak_worker_bytes'] / 1e6:8.0f} {r['peak_tasks_in_memory']:15d} {r['makespan_s']:10.2f}",
              flush=True)
    write_json(out, a.json)
    print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
