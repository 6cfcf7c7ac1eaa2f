"""Modeled energy and makespan of a live Dask workload with busy and quiet phases: Dask's own
``Adaptive`` against TAO's ``EnergyAdaptive`` on the same cluster. Goal: TAO >= 20 % less
modeled energy than Dask's autoscaler at makespan <= 1.1x.

Cluster: a LocalCluster whose workers (worker processes of 1 thread) come and go as the
adaptive loop scales it, over a pool of four slots named 0..3 (``PoolCluster``: a new
worker takes the lowest free slot, whatever its type, unless the adaptive loop names the
slot: TAO's ``EnergyAdaptive`` starts the free declared slot of the most efficient type). Each slot is modeled as one server
with a SPECpower_ssj2008 curve (tao_core/data/specpower_servers.csv): slots 0 and 2 HP
ProLiant ML110 G3 (Pentium D 930, 105 W idle .. 169 W peak), slots 1 and 3 IBM x3250 (Xeon
X3470, 41.6 W idle .. 113 W peak). Every type boots in ``live_model.BOOT_S`` seconds at its
idle watts and draws ``live_model.OFF_W`` watts while off; TAO's controller is given the
same figures. A worker's power is its curve at the CPU utilization of its own process.

Workload (``live_model.Phases``): tasks of ``--task`` seconds of wall time, about a fifth of
it busy on the CPU, one every ``--busy-gap`` s in busy phases of ``--busy`` s and one every
``--quiet-gap`` s in quiet phases of ``--quiet`` s, ``--cycles`` quiet phases.

Variants, each on a fresh cluster that starts with no worker (``minimum=0``, ``maximum=4``):

- ``adaptive``: Dask places; ``cluster.adapt(minimum=0, maximum=4)`` with Dask's defaults
  (interval 1 s, wait_count 3, target_duration 5 s); TAO only accounts (``place=False``);
- ``adaptive-tuned``: the same with interval 0.5 s, target_duration 1 s, wait_count 2;
- ``adaptive-breakeven``: Dask's defaults but ``wait_count`` = the longest break-even time
  of the node types (``boot energy / (idle W - off W)``, about 34 s) over the 1 s
  interval: a worker is retired only after a pause that costs more idle energy than a boot;
- ``tao``: TAO places; ``EnergyAdaptive`` with Dask's defaults;
- ``tao-tuned``: TAO places; ``EnergyAdaptive`` with the tuned settings;
- ``tao-nospare``: as ``tao`` with the controller's ``spare_horizon_s=0``: no free capacity
  kept for expected arrivals (by default it keeps the CPUs that the recent arrival rate asks
  for within the longest boot time, which holds workers on through a quiet phase shorter
  than a few arrival-rate half-lives).

Energy (``live_model``): the workers' modeled joules while up (TAO's worker samplers, in
every variant), plus boot energy per worker started and off watts per slot while no worker
holds it, first submission to last result. The lower bound is printed with each result.

``--baseline static`` runs the earlier steady-stream comparison instead (variants
``default,default_adaptive,tao_static,tao`` on 4 workers started at once; ``--seconds``,
``--gap``, ``--steady-task``, ``--rounds``).

    python benchmarks/dask_live.py [--json OUT] [--variants adaptive,adaptive-tuned,adaptive-breakeven,tao]
    python benchmarks/dask_live.py --baseline static [--rounds N] [--seconds S]
"""
from __future__ import annotations

import argparse
import logging
import math
import statistics
import sys
import time
from pathlib import Path

from distributed import Client, LocalCluster
from distributed.deploy.adaptive import Adaptive

import tao_dask
from tao_core.power.catalog import specpower_node_type
from tao_dask.reporting import energy_between, fetch, spans_of

sys.path.insert(0, str(Path(__file__).resolve().parent))
from live_model import BOOT_S, OFF_W, chosen_variants, NodeRun, Phases, TaskRun, charged_energy, load_average, lower_bound, print_table  # noqa: E402
from results_file import write_json  # noqa: E402

WASTEFUL = "HpProLiantMl110G3PentiumD930"
EFFICIENT = "IbmX3250XeonX3470"
WORKERS = {"0": WASTEFUL, "1": EFFICIENT, "2": WASTEFUL, "3": EFFICIENT}
STATIC_VARIANTS = ("default", "default_adaptive", "tao_static", "tao")
ADAPTIVE_VARIANTS = ("adaptive", "adaptive-tuned", "adaptive-breakeven", "tao", "tao-tuned", "tao-nospare")
DASK_DEFAULTS = {"interval": "1s", "wait_count": 3, "target_duration": "5s"}
TUNED = {"interval": "500ms", "wait_count": 2, "target_duration": "1s"}
GOAL = {"energy_saving": 0.20, "makespan_ratio": 1.10}


class PoolCluster(LocalCluster):
    """A LocalCluster over a fixed pool of worker names: a new worker takes the lowest
    free one (so each name, and its node type, is one server slot)."""

    slots = tuple(int(k) for k in WORKERS)

    def new_worker_spec(self):
        free = [s for s in self.slots if s not in self.worker_spec]
        if not free:
            return super().new_worker_spec()
        return {free[0]: self.new_spec}


def node_types() -> list:
    return [specpower_node_type(m, cpus=1, boot_s=BOOT_S, off_w=OFF_W) for m in (WASTEFUL, EFFICIENT)]


def breakeven_settings() -> dict:
    """Dask's defaults, but a worker is retired only after the longest break-even time of
    the node types (``boot energy / (idle W - off W)``): what a user who knows the boot
    cost would set ``wait_count`` to."""
    worst = max(t.boot_energy_j / (t.idle_w - t.off_w) for t in node_types())
    return {**DASK_DEFAULTS, "wait_count": int(math.ceil(worst / 1.0))}


def adapt_settings(variant: str) -> dict:
    if variant.endswith("-tuned"):
        return TUNED
    if variant.endswith("-breakeven"):
        return breakeven_settings()
    return DASK_DEFAULTS


def burn(x: int, seconds: float) -> int:
    """Spin on the CPU for ``seconds`` of wall time (on a shared machine the CPU time it
    gets, and so its modeled power, depends on the load; its duration does not)."""
    t = time.perf_counter()
    while time.perf_counter() - t < seconds:
        pass
    return x


def request(x: int, seconds: float, submitted_s: float) -> tuple:
    """A request-like task: ``seconds`` of wall time, about a fifth busy on the CPU.
    Returns (x, submitted, start, end, CPU seconds of this thread)."""
    t_start, c0 = time.time(), time.thread_time()
    end = t_start + seconds
    while time.time() < end:
        busy = time.time() + 0.01
        while time.time() < busy:
            pass
        time.sleep(0.04)
    return x, submitted_s, t_start, time.time(), time.thread_time() - c0


def run_static_variant(variant: str, seconds: float, gap: float, task_s: float) -> dict:
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


def run_adaptive_variant(variant: str, phases: Phases, task_s: float) -> dict:
    """One variant of the autoscaler comparison on a fresh cluster (see the module doc)."""
    types = {t.name: t for t in node_types()}
    load0 = load_average()
    with PoolCluster(n_workers=0, threads_per_worker=1, processes=True, dashboard_address=":0",
                     silence_logs=logging.ERROR) as cl, Client(cl) as c:
        tao = variant.startswith("tao")
        tao_dask.register(c, node_types=list(types.values()), workers=WORKERS, default_type=WASTEFUL, place=tao,
                          config={"spare_horizon_s": 0.0} if variant == "tao-nospare" else None)
        settings = adapt_settings(variant)
        cl.adapt(Adaptive=tao_dask.EnergyAdaptive if tao else Adaptive, minimum=0, maximum=len(WORKERS), **settings)
        time.sleep(2.0)
        t0 = time.time()
        futs = []
        for k, off in enumerate(phases.arrivals()):
            time.sleep(max(0.0, t0 + off - time.time()))
            futs.append(c.submit(request, k, task_s, time.time(), pure=False))
        out = c.gather(futs)
        t1 = time.time()
        time.sleep(1.2)  # the workers' next samples cover t1
        data = fetch(c)
    load1 = load_average()
    _, per = energy_between(data, t0, t1)
    nodes = [NodeRun(n["name"], str(n["node_type"]), n["joined_s"], n["left_s"], per.get(n["address"], 0.0))
             for n in data["nodes"]]
    res = charged_energy(nodes, types, {WASTEFUL: 2, EFFICIENT: 2}, t0, t1)
    tasks = [TaskRun(s, e, 1.0, cpu) for _, _, s, e, cpu in out]
    waits = sorted(s - sub for _, sub, s, _, _ in out)
    ran: dict[str, int] = {}
    names = {n["address"]: n["name"] for n in data["nodes"]}
    for span in spans_of(data):
        w = str(names.get(span.worker, span.worker))
        ran[w] = ran.get(w, 0) + 1
    res.update({
        "makespan_s": t1 - t0, "tasks": len(out), "tasks_per_slot": ran, "settings": settings,
        "wait_p50_s": statistics.median(waits), "wait_p95_s": waits[int(0.95 * (len(waits) - 1))],
        "workers": [{"slot": n.name, "type": n.node_type, "joined_s": round(n.joined_s - t0, 1),
                     "left_s": None if n.left_s is None else round(n.left_s - t0, 1), "metered_j": round(n.metered_j, 1)}
                    for n in nodes],
        "lower_bound": lower_bound(tasks, types.values(), t0, t1, min_nodes=0),
        "window_s": [t0, t1], "load_average_before": load0, "load_average_after": load1, "source": "modeled",
    })
    res["energy_over_lower_bound"] = res["energy_j"] / res["lower_bound"]["energy_j"]
    return res


def adaptive_suite(a: argparse.Namespace) -> int:
    phases = Phases(a.busy, a.quiet, a.cycles, a.busy_gap, a.quiet_gap)
    variants = chosen_variants(a.variants, ADAPTIVE_VARIANTS)
    if variants is None:
        return 2
    rows: dict[str, dict] = {}
    for v in variants:
        r = rows[v] = run_adaptive_variant(v, phases, a.task)
        print(f"{v:16s} {r['energy_j']:9.0f} J (metered {r['metered_j']:.0f}, boot {r['boot_j']:.0f} x{r['boots']}, "
              f"off {r['off_j']:.0f})  makespan {r['makespan_s']:.1f} s  p95 wait {r['wait_p95_s']:.1f} s  "
              f"tasks per slot {r['tasks_per_slot']}  load {r['load_average_after']}", flush=True)
    out: dict = {"setup": {"slots": WORKERS, "threads_per_worker": 1, "boot_s": BOOT_S, "off_w": OFF_W,
                           "task_s": a.task, "phases": phases.to_dict(), "dask_defaults": DASK_DEFAULTS,
                           "tuned": TUNED, "breakeven": breakeven_settings(), "minimum": 0, "maximum": len(WORKERS), "energy_source": "modeled",
                           "accounting": "TAO's worker samplers (curve at the worker process's CPU utilization) "
                                         "while up + boot_s x idle W per worker started in the window + off_w per "
                                         "slot while no worker holds it; first submission to last result"},
           "variants": rows}
    print_table(rows, "adaptive")
    for tao_v, base_v in [(t, b) for t in ("tao", "tao-tuned", "tao-nospare")
                          for b in ("adaptive", "adaptive-tuned", "adaptive-breakeven")]:
        if tao_v in rows and base_v in rows:
            t, b = rows[tao_v], rows[base_v]
            s = {"energy_saving": 1 - t["energy_j"] / b["energy_j"], "makespan_ratio": t["makespan_s"] / b["makespan_s"],
                 "goal": GOAL}
            s["goal_met"] = s["energy_saving"] >= GOAL["energy_saving"] and s["makespan_ratio"] <= GOAL["makespan_ratio"]
            out[f"{tao_v}_vs_{base_v}"] = s
            print(f"{tao_v} vs {base_v}: {100 * s['energy_saving']:.1f} % less modeled energy (goal >= 20 %), "
                  f"makespan {s['makespan_ratio']:.3f}x (goal <= 1.1x): {'met' if s['goal_met'] else 'NOT met'}")
    write_json(out, a.json)
    print(f"wrote {a.json}")
    return 0


def static_suite(a: argparse.Namespace) -> int:
    variants = chosen_variants(a.variants, STATIC_VARIANTS)
    if variants is None:
        return 2
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    for r in range(a.rounds):
        for v in (variants if r % 2 == 0 else variants[::-1]):
            res = run_static_variant(v, a.seconds, a.gap, a.steady_task)
            runs[v].append(res)
            print(f"round {r + 1} {v:17s} {res['energy_j']:9.0f} J  {res['makespan_s']:6.2f} s  "
                  f"tasks per worker {res['tasks_per_worker']}  retired {res['retired_before_end']}", flush=True)
    out: dict = {"setup": {"workers": WORKERS, "threads_per_worker": 1, "seconds": a.seconds, "gap_s": a.gap,
                           "task_cpu_s": a.steady_task, "rounds": a.rounds, "energy_source": "modeled",
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", choices=("adaptive", "static"), default="adaptive")
    ap.add_argument("--json", default=None, help="default: benchmarks/results/dask_live_adaptive.json "
                                                 "(static: dask_live.json)")
    ap.add_argument("--variants", default=None, help="adaptive: " + ",".join(ADAPTIVE_VARIANTS)
                    + " (default adaptive,adaptive-tuned,adaptive-breakeven,tao)")
    ap.add_argument("--busy", type=float, default=45.0)
    ap.add_argument("--quiet", type=float, default=80.0)
    ap.add_argument("--cycles", type=int, default=2)
    ap.add_argument("--busy-gap", type=float, default=0.4)
    ap.add_argument("--quiet-gap", type=float, default=15.0)
    ap.add_argument("--task", type=float, default=1.0, help="seconds each task runs (wall clock)")
    ap.add_argument("--rounds", type=int, default=1, help="static: rounds")
    ap.add_argument("--seconds", type=float, default=30.0, help="static: how long tasks are submitted (s)")
    ap.add_argument("--gap", type=float, default=0.25, help="static: seconds between two submissions")
    ap.add_argument("--steady-task", type=float, default=0.2, help="static: seconds each task spins")
    a = ap.parse_args(argv)
    results = Path(__file__).parent / "results"
    if a.baseline == "static":
        a.json = a.json or str(results / "dask_live.json")
        a.variants = a.variants or ",".join(STATIC_VARIANTS)
        return static_suite(a)
    a.json = a.json or str(results / "dask_live_adaptive.json")
    a.variants = a.variants or "adaptive,adaptive-tuned,adaptive-breakeven,tao"
    return adaptive_suite(a)


if __name__ == "__main__":
    sys.exit(main())
