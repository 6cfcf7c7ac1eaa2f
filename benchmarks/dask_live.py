"""Modeled energy and makespan of one workload on a live Dask cluster: Dask's default vs TAO.

Cluster: a LocalCluster of 4 worker processes, 1 thread each, each modeled as one server
with a SPECpower_ssj2008 curve (tao_core/data/specpower_servers.csv): workers 0 and 2 are
HP ProLiant ML110 G3 (Pentium D 930, 105 W idle .. 169 W peak), workers 1 and 3 IBM x3250
(Xeon X3470, 41.6 W idle .. 113 W peak). A worker's power is its curve at the CPU
utilization of its own process (modeled, not measured).

Workload: a steady stream, one task every ``--gap`` seconds for ``--seconds`` seconds,
each spinning on the CPU for ``--task`` seconds of wall time (about 0.8 CPUs of load on 4
CPUs, the 20-30 % utilization servers spend most of their time at). Tasks are timed by
the wall clock so that a busy shared machine stretches neither variant's makespan; the
CPU time a task gets (and so its modeled power) still depends on that machine's load.

Variants, each on a fresh cluster, alternated ``--rounds`` times:

- ``default``: Dask places; the 4 workers stay up (a static cluster).
- ``default_adaptive``: Dask places; Dask's own ``Adaptive(minimum=2, maximum=4)``.
- ``tao_static``: TAO places; the 4 workers stay up (an idle worker draws its idle power).
- ``tao``: TAO places; ``EnergyAdaptive(minimum=2, maximum=4)`` retires workers.

Energy: the sum over workers of modeled joules from the first submission until the last
result, each worker counted while it is up. A retired worker is counted as drawing 0 W
from the moment Dask removed it (the node is assumed powered off; ``off_w`` = 0); a worker
left idle but not retired draws its idle power throughout. Every figure is ``modeled``.

    python benchmarks/dask_live.py [--json OUT] [--rounds N] [--seconds S]
"""
from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

from distributed import Client, LocalCluster
from distributed.deploy.adaptive import Adaptive

import tao_dask
from tao_dask.reporting import energy_between, fetch, spans_of
from results_file import write_json  # noqa: E402

WASTEFUL = "HpProLiantMl110G3PentiumD930"
EFFICIENT = "IbmX3250XeonX3470"
WORKERS = {"0": WASTEFUL, "1": EFFICIENT, "2": WASTEFUL, "3": EFFICIENT}
VARIANTS = ("default", "default_adaptive", "tao_static", "tao")


def burn(x: int, seconds: float) -> int:
    """Spin on the CPU for ``seconds`` of wall time (on a shared machine the CPU time it
    gets, and so its modeled power, depends on the load; its duration does not)."""
    t = time.perf_counter()
    while time.perf_counter() - t < seconds:
        pass
    return x


def run_variant(variant: str, seconds: float, gap: float, task_s: float) -> dict:
    with LocalCluster(n_workers=4, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.ERROR) as cl, Client(cl) as c:
        tao = variant.startswith("tao")
        tao_dask.register(c, workers=WORKERS, default_type=WASTEFUL, place=tao)
        if variant == "tao":
            cl.adapt(Adaptive=tao_dask.EnergyAdaptive, minimum=2, maximum=4, interval="500ms", wait_count=3)
        elif variant == "default_adaptive":
            cl.adapt(Adaptive=Adaptive, minimum=2, maximum=4, interval="500ms", wait_count=3)
        end = time.time() + 20
        while time.time() < end and sum(len(tl["t_s"]) >= 2 for tl in fetch(c)["timelines"].values()) < 4:
            time.sleep(0.1)
        names = {a: str(w["name"]) for a, w in c.scheduler_info()["workers"].items()}
        t0 = time.time()
        futs = []
        k = 0
        while time.time() - t0 < seconds:
            futs.append(c.submit(burn, k, task_s, pure=False))
            k += 1
            time.sleep(max(0.0, t0 + k * gap - time.time()))
        results = c.gather(futs)
        t1 = time.time()
        assert results == list(range(k))
        time.sleep(1.2)  # the workers' next samples cover t1
        data = fetch(c)
        names.update({n["address"]: n["name"] for n in data["nodes"]})
        total, per = energy_between(data, t0, t1)
        ran: dict[str, int] = {}
        for span in spans_of(data):
            w = span.worker
            ran[names.get(w, w)] = ran.get(names.get(w, w), 0) + 1
        retired = sorted(n["name"] for n in data["nodes"] if n["left_s"] is not None and n["left_s"] < t1)
        return {"energy_j": total, "makespan_s": t1 - t0, "tasks": k, "tasks_per_worker": ran,
                "energy_per_worker_j": {names.get(a, a): v for a, v in per.items()},
                "retired_before_end": retired, "source": "modeled"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", default=str(Path(__file__).parent / "results" / "dask_live.json"))
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=30.0, help="how long tasks are submitted (s)")
    ap.add_argument("--gap", type=float, default=0.25, help="seconds between two submissions")
    ap.add_argument("--task", type=float, default=0.2, help="seconds each task spins (wall clock)")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    a = ap.parse_args(argv)
    variants = [v for v in a.variants.split(",") if v]
    for v in variants:
        if v not in VARIANTS:
            print(f"--variants: unknown {v!r}; choose from {', '.join(VARIANTS)}", file=sys.stderr)
            return 2
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    for r in range(a.rounds):
        for v in (variants if r % 2 == 0 else variants[::-1]):
            res = run_variant(v, a.seconds, a.gap, a.task)
            runs[v].append(res)
            print(f"round {r + 1} {v:17s} {res['energy_j']:9.0f} J  {res['makespan_s']:6.2f} s  "
                  f"tasks per worker {res['tasks_per_worker']}  retired {res['retired_before_end']}", flush=True)
    out: dict = {"setup": {"workers": WORKERS, "threads_per_worker": 1, "seconds": a.seconds, "gap_s": a.gap,
                           "task_cpu_s": a.task, "rounds": a.rounds, "energy_source": "modeled",
                           "idle_accounting": "a worker draws its curve's power while up; a retired worker "
                                              "draws 0 W after Dask removed it"}}
    for v, rs in runs.items():
        out[v] = {"energy_j": statistics.median(x["energy_j"] for x in rs),
                  "makespan_s": statistics.median(x["makespan_s"] for x in rs), "runs": rs}
    base = out.get("default")
    print(f"\n{'variant':17s} {'energy J':>9s} {'vs default':>10s} {'makespan s':>10s} {'x default':>9s}")
    for v in variants:
        e, m = out[v]["energy_j"], out[v]["makespan_s"]
        if base:
            print(f"{v:17s} {e:9.0f} {100 * (e / base['energy_j'] - 1):+9.1f}% {m:10.2f} {m / base['makespan_s']:9.3f}")
        else:
            print(f"{v:17s} {e:9.0f} {'':>10s} {m:10.2f}")
    if base and "tao" in out:
        out["tao_vs_default"] = {"energy_saving": 1 - out["tao"]["energy_j"] / base["energy_j"],
                                 "makespan_ratio": out["tao"]["makespan_s"] / base["makespan_s"],
                                 "goal": "energy_saving >= 0.40 at makespan_ratio <= 1.15"}
    write_json(out, a.json)
    print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
