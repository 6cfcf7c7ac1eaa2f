"""Energy-aware Dask in one line: the same workload with Dask's default and with TAO.

A LocalCluster of 4 worker processes (1 thread each) models a mixed rack: workers 0 and
2 are HP ProLiant ML110 G3 servers (Pentium D 930: 105 W idle, 169 W at full load),
workers 1 and 3 IBM x3250 (Xeon X3470: 41.6 W idle, 113 W at full load); curves from
SPECpower_ssj2008 (tao_core/data/specpower_servers.csv). Each worker's power is modeled
from its curve at the CPU use of its own process: every joule below is ``modeled``.

The workload is a steady stream of small CPU tasks (about 0.5 CPUs of load). First Dask
alone (TAO only observes), then TAO: energy-aware placement plus ``EnergyAdaptive``,
which retires idle workers least efficient first (minimum 2). A retired worker counts
0 W from its removal; a worker left up counts its idle power.

    python examples/dask_energy_aware.py [--seconds 15] [--report PATH]
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time

from distributed import Client, LocalCluster

import tao_dask
from tao_dask.reporting import energy_between, fetch, spans_of

WASTEFUL = "HpProLiantMl110G3PentiumD930"
EFFICIENT = "IbmX3250XeonX3470"
WORKERS = {"0": WASTEFUL, "1": EFFICIENT, "2": WASTEFUL, "3": EFFICIENT}


def burn(x: int, seconds: float = 0.2) -> int:
    """A small CPU-bound task: spin for ``seconds`` of wall time."""
    t = time.perf_counter()
    while time.perf_counter() - t < seconds:
        pass
    return x


def run(with_tao: bool, seconds: float, gap: float, report_path: str | None) -> dict:
    with LocalCluster(n_workers=4, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        # the one line that enables TAO (place=False: observe and account only)
        tao_dask.register(client, workers=WORKERS, place=with_tao)
        if with_tao:
            cluster.adapt(Adaptive=tao_dask.EnergyAdaptive, minimum=2, maximum=4, interval="500ms")
        names = {a: str(w["name"]) for a, w in client.scheduler_info()["workers"].items()}
        time.sleep(1.5)  # a few telemetry samples before the work starts
        t0 = time.time()
        futures, k = [], 0
        while time.time() - t0 < seconds:
            futures.append(client.submit(burn, k, pure=False))
            k += 1
            time.sleep(max(0.0, t0 + k * gap - time.time()))
        assert client.gather(futures) == list(range(k))
        t1 = time.time()
        time.sleep(1.2)  # the next telemetry samples cover t1
        data = fetch(client)
        total, per = energy_between(data, t0, t1)
        where: dict[str, int] = {}
        for span in spans_of(data):
            worker = span.worker
            where[names.get(worker, worker)] = where.get(names.get(worker, worker), 0) + 1
        if report_path:
            df = tao_dask.report(client, report_path)
            print(f"  per-task energy: {len(df)} tasks, mean {df['energy_j'].mean():.1f} J "
                  f"(source: {', '.join(sorted(df['source'].unique()))}); report written to {report_path}")
        retired = sorted(n["name"] for n in data["nodes"] if n["left_s"] is not None)
        return {"energy_j": total, "makespan_s": t1 - t0, "tasks": k, "where": where, "retired": retired}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Dask with and without TAO on a modeled mixed cluster")
    ap.add_argument("--seconds", type=float, default=15.0, help="how long tasks are submitted (s)")
    ap.add_argument("--gap", type=float, default=0.4, help="seconds between two tasks")
    ap.add_argument("--report", default=os.path.join(tempfile.gettempdir(), "tao_dask_report.json"))
    a = ap.parse_args(argv)
    if not (a.seconds > 0 and a.gap > 0):
        print("--seconds and --gap must be > 0", file=sys.stderr)
        return 2
    print("Dask's default placement (TAO observes only) ...", flush=True)
    base = run(False, a.seconds, a.gap, None)
    print("TAO: energy-aware placement + EnergyAdaptive ...", flush=True)
    tao = run(True, a.seconds, a.gap, a.report)
    kind = {"0": "PentiumD930", "1": "XeonX3470", "2": "PentiumD930", "3": "XeonX3470"}
    print(f"\n{'':10s} {'energy (modeled)':>17s} {'makespan':>9s}  tasks per worker")
    for label, r in (("Dask", base), ("Dask+TAO", tao)):
        where = ", ".join(f"{w} ({kind.get(w, '?')}): {n}" for w, n in sorted(r["where"].items()))
        print(f"{label:10s} {r['energy_j']:15.0f} J {r['makespan_s']:8.1f} s  {where}")
    print(f"\nTAO used {100 * (1 - tao['energy_j'] / base['energy_j']):.0f} % less modeled energy, "
          f"makespan x{tao['makespan_s'] / base['makespan_s']:.2f}; workers retired: {tao['retired'] or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
