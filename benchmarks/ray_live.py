"""Modeled energy and makespan of a live Ray workload with busy and quiet phases: Ray's own
autoscaler (idle termination) against TAO steering the same autoscaler. Goal: TAO >= 20 %
less modeled energy than Ray's autoscaler at makespan <= 1.1x.

Cluster (``ray_autoscaling.py``): Ray's ``AutoscalingCluster`` (fake multi-node provider),
a head node without CPUs and a pool of worker node types: ``eff`` (4 CPUs, SPECpower curve of
the IBM x3250 Xeon X3470: 41.6 W idle, 113 W at full load; min 1, max 1 node) and ``old``
(2 CPUs, HP ProLiant ML110 G3 Pentium D 930: 105 W idle, 169 W; min 0, max 3). Curves from
``tao_core/data/specpower_servers.csv`` (SPECpower_ssj2008 results as shipped in CloudSim).
Every node type boots in ``live_model.BOOT_S`` seconds at its idle watts and draws
``live_model.OFF_W`` watts while off; TAO's controller is given the same figures.

Workload (``live_model.Phases``): request-like tasks of ``--work`` seconds (about a fifth on
the CPU, 1 CPU each), one every ``--busy-gap`` s in busy phases of ``--busy`` s and one every
``--quiet-gap`` s in quiet phases of ``--quiet`` s, ``--cycles`` quiet phases.

Variants, each on a fresh cluster (with ``--lock FILE`` each holds an exclusive lock on that
file while its cluster exists, so that no other Ray cluster shares the machine's ports):

- ``ray-autoscaler``: plain ``@ray.remote`` tasks; Ray's autoscaler launches nodes for the
  pending tasks and removes a node idle for ``idle_timeout_minutes`` (``--idle-minutes``,
  1 by default; Ray's own default is 5, longer than a quiet phase of a run this length);
- ``ray-autoscaler-breakeven`` (not run by default): the same with the idle timeout at the
  longest break-even time of the node types (``boot energy / (idle W - off W)``, about
  0.57 min): what a user who knows the boot cost would set;
- ``tao``: ``tao_ray.remote`` tasks under strict admission on the same cluster and
  autoscaler; TAO asks the autoscaler for nodes (``request_resources`` with the type's
  resource, ``launchable`` = the pool) and drains the idle nodes its controller powers off
  (``drain="gcs"``); the idle timeout stays as in the baseline. The controller's defaults;
- ``tao-nospare`` (not run by default): the same with ``spare_horizon_s=0``: the controller
  keeps no free capacity for expected arrivals (by default it keeps the CPUs that the
  recent arrival rate asks for within the longest boot time, which holds nodes on through
  a quiet phase shorter than a few arrival-rate half-lives).

Energy (``live_model``): every variant is metered the same way from the driver
(``ray_autoscaling.NodeMeter``) and charged boot and off energy by the same model; TAO's own
report of its variant is kept beside as a cross-check. The lower bound is printed with
each result.

``--baseline static`` runs the earlier comparison instead: a static ``Cluster`` of one
``eff`` and three ``old`` nodes with Ray's default scheduling, TAO, and TAO placement only
(variants ``default,tao,tao-placement-only``; ``--tasks``, ``--interval``, ``--work 0.5``).

    python benchmarks/ray_live.py [--lock FILE] [--json OUT] [--variants ray-autoscaler,tao]
    python benchmarks/ray_live.py --baseline static [--tasks 60] [--interval 0.2] [--work 0.5]
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import tao_ray  # noqa: E402
from live_model import BOOT_S, OFF_W, chosen_variants, Phases, TaskRun, charged_energy, load_average, lower_bound, print_table  # noqa: E402
from results_file import write_json  # noqa: E402

NODES = [("eff", 4), ("old", 2), ("old", 2), ("old", 2)]
#: autoscaler pool: node type -> (CPUs, min_workers, max_workers)
POOL = {"eff": (4, 1, 1), "old": (2, 0, 3)}
AUTOSCALER_VARIANTS = ("ray-autoscaler", "ray-autoscaler-breakeven", "tao", "tao-nospare")
GOAL = {"energy_saving": 0.20, "makespan_ratio": 1.10}


def node_types(boot_s: float = 0.0, off_w: float = 0.0):
    return [tao_ray.specpower_node_type("IbmX3250XeonX3470", name="eff", cpus=4, boot_s=boot_s, off_w=off_w),
            tao_ray.specpower_node_type("HpProLiantMl110G3PentiumD930", name="old", cpus=2, boot_s=boot_s,
                                        off_w=off_w)]


def breakeven_minutes() -> float:
    """The longest break-even time of the node types (``boot energy / (idle W - off W)``),
    in minutes: the idle timeout a user who knows the boot cost would give Ray."""
    return max(t.boot_energy_j / (t.idle_w - t.off_w) for t in node_types(BOOT_S, OFF_W)) / 60.0


def timed_job(i: int, work_s: float, submitted_s: float) -> tuple:
    """A request-like task: ``work_s`` seconds, about a fifth of them busy on the CPU.
    Returns (i, node id, submitted, start, end, CPU seconds of this thread)."""
    import ray

    t_start, c0 = time.time(), time.thread_time()
    end = t_start + work_s
    while time.time() < end:
        busy = time.time() + 0.01
        while time.time() < busy:
            pass
        time.sleep(0.04)
    return i, ray.get_runtime_context().get_node_id(), submitted_s, t_start, time.time(), time.thread_time() - c0


@contextlib.contextmanager
def held(lock_path: Optional[str]) -> Iterator[None]:
    """An exclusive lock on ``lock_path`` for the block (none without a path)."""
    if not lock_path:
        yield
        return
    with open(lock_path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _submit(fn: Any, phases: Phases, work_s: float) -> tuple[list, float, float]:
    import ray

    offsets = phases.arrivals()
    t0 = time.time()
    refs = []
    for i, off in enumerate(offsets):
        delay = t0 + off - time.time()
        if delay > 0:
            time.sleep(delay)
        refs.append(fn.remote(i, work_s, time.time()))
    out = ray.get(refs)
    return out, t0, time.time()


def _tao_figures(t0: float, t1: float) -> dict:
    df = tao_ray.report(window=(t0, t1))
    st = tao_ray.stats()
    return {"tao_report_it_energy_j": df.attrs["report"]["energy"]["it_energy_j"],
            "tao_report_tasks": int(len(df)),
            "scale_log": [{k: e.get(k) for k in ("action", "node_types", "node_id", "t_s") if k in e}
                          for e in st.get("scale_log", [])][:200]}


def run_autoscaler_variant(variant: str, phases: Phases, work_s: float, idle_minutes: float,
                           lock: Optional[str]) -> dict:
    """One variant on a fresh autoscaling cluster (see the module doc)."""
    import ray

    from ray_autoscaling import NodeMeter, start_cluster, wait_for_workers

    types = {t.name: t for t in node_types(BOOT_S, OFF_W)}
    with held(lock):
        load0 = load_average()
        cluster = start_cluster(POOL, idle_minutes)
        try:
            wait_for_workers({t: lo for t, (_, lo, _) in POOL.items() if lo})
            meter = NodeMeter(types).start()
            extra: dict = {}
            if variant.startswith("tao"):
                from tao_core.control.config import ControllerConfig

                cfg = ControllerConfig(spare_horizon_s=0.0) if variant == "tao-nospare" else None
                tao_ray.init(list(types.values()), config=cfg, launchable={t: hi for t, (_, _, hi) in POOL.items()},
                             strict_admission=True, hint_with="resource", drain="gcs")
                fn = tao_ray.remote(timed_job)
            else:
                fn = ray.remote(timed_job)
            time.sleep(2.0)
            out, t0, t1 = _submit(fn, phases, work_s)
            if variant.startswith("tao"):
                extra = _tao_figures(t0, t1)
            meter.stop()
            nodes = meter.runs(t0, t1)
            unmetered = meter.unmetered()
        finally:
            if tao_ray.is_initialized():
                tao_ray.shutdown()
            ray.shutdown()
            cluster.shutdown()
        load1 = load_average()
    tasks = [TaskRun(s, e, 1.0, c) for _, _, _, s, e, c in out]
    waits = sorted(s - sub for _, _, sub, s, _, _ in out)
    pool = {t: hi for t, (_, _, hi) in POOL.items()}
    res = charged_energy(nodes, types, pool, t0, t1)
    by_type: dict[str, int] = {}
    type_of = {n.name: n.node_type for n in nodes}
    for _, nid, *_ in out:
        by_type[type_of.get(nid, "?")] = by_type.get(type_of.get(nid, "?"), 0) + 1
    res.update({
        "makespan_s": t1 - t0, "tasks": len(out), "tasks_by_node_type": by_type,
        "wait_p50_s": statistics.median(waits), "wait_p95_s": waits[int(0.95 * (len(waits) - 1))],
        "nodes": [{"node": n.name[-8:], "type": n.node_type, "joined_s": round(n.joined_s - t0, 1),
                   "left_s": None if n.left_s is None else round(n.left_s - t0, 1), "metered_j": round(n.metered_j, 1)}
                  for n in nodes],
        "unmetered_nodes": unmetered,
        "lower_bound": lower_bound(tasks, types.values(), t0, t1, min_nodes=1),
        "window_s": [t0, t1], "load_average_before": load0, "load_average_after": load1,
        "idle_timeout_minutes": idle_minutes, "source": "modeled", **extra,
    })
    return res


def autoscaler_suite(a: argparse.Namespace) -> int:
    phases = Phases(a.busy, a.quiet, a.cycles, a.busy_gap, a.quiet_gap)
    variants = chosen_variants(a.variants, AUTOSCALER_VARIANTS)
    if variants is None:
        return 2
    rows: dict[str, dict] = {}
    for v in variants:
        idle = breakeven_minutes() if v == "ray-autoscaler-breakeven" else a.idle_minutes
        rows[v] = run_autoscaler_variant(v, phases, a.work, idle, a.lock)
        r = rows[v]
        print(f"{v:16s} {r['energy_j']:9.0f} J (metered {r['metered_j']:.0f}, boot {r['boot_j']:.0f} x{r['boots']}, "
              f"off {r['off_j']:.0f})  makespan {r['makespan_s']:.1f} s  p95 wait {r['wait_p95_s']:.1f} s  "
              f"tasks by type {r['tasks_by_node_type']}  load {r['load_average_after']}", flush=True)
    for r in rows.values():
        r["energy_over_lower_bound"] = r["energy_j"] / r["lower_bound"]["energy_j"]
    out: dict = {"setup": {"pool": {t: {"cpus": c, "min_workers": lo, "max_workers": hi} for t, (c, lo, hi) in POOL.items()},
                           "eff": "IbmX3250XeonX3470 curve", "old": "HpProLiantMl110G3PentiumD930 curve",
                           "boot_s": BOOT_S, "off_w": OFF_W, "work_s": a.work, "phases": phases.to_dict(),
                           "energy_source": "modeled",
                           "accounting": "metered from the driver (curve at the CPU utilization of each node's raylet "
                                         "and children) while up + boot_s x idle W per node started in the window + "
                                         "off_w per pool slot while not up; first submission to last result"},
           "variants": rows}
    print_table(rows, "ray-autoscaler")
    for tao_v, base in [(t, b) for t in ("tao", "tao-nospare") for b in ("ray-autoscaler", "ray-autoscaler-breakeven")]:
        if base in rows and tao_v in rows:
            b, t = rows[base], rows[tao_v]
            s = {"energy_saving": 1 - t["energy_j"] / b["energy_j"], "makespan_ratio": t["makespan_s"] / b["makespan_s"],
                 "goal": GOAL}
            s["goal_met"] = s["energy_saving"] >= GOAL["energy_saving"] and s["makespan_ratio"] <= GOAL["makespan_ratio"]
            out[f"{tao_v}_vs_{base}".replace("-", "_")] = s
            print(f"\n{tao_v} vs {base} (idle timeout {b['idle_timeout_minutes']:.2f} min): {100 * s['energy_saving']:.1f} % "
                  f"less modeled energy (goal >= 20 %), makespan {s['makespan_ratio']:.3f}x (goal <= 1.1x): "
                  f"{'met' if s['goal_met'] else 'NOT met'}")
    write_json(out, a.json)
    print(f"wrote {a.json}")
    return 0


def static_suite(a: argparse.Namespace) -> int:
    from ray_cluster import compare

    res = compare(NODES, node_types(), tasks=a.tasks, interval_s=a.interval, work_s=a.work,
                  variants=a.variants.split(","))
    d, t = res["default"], res["tao"]
    saving = 1.0 - t["energy_j"] / d["energy_j"]
    slow = t["makespan_s"] / d["makespan_s"]
    out = dict(res)
    out.update({
        "energy_saving": saving, "makespan_ratio": slow,
        "goal": {"energy_saving": 0.40, "makespan_ratio": 1.15},
        "workload": {"tasks": a.tasks, "interval_s": a.interval, "work_s": a.work},
        "cluster": {"nodes": NODES, "eff": "IbmX3250XeonX3470 curve", "old": "HpProLiantMl110G3PentiumD930 curve"},
        "accounting": "modeled node energy (curve at per-node process CPU utilization), all nodes, first "
                      "submission to last result; a node TAO removed counts 0 W (off_w) after removal; "
                      "default keeps every node on",
    })
    if "tao-placement-only" in res:
        out["energy_saving_placement_only"] = 1.0 - res["tao-placement-only"]["energy_j"] / d["energy_j"]
    print(f"\nTAO vs default: {100 * saving:.1f} % less modeled energy (goal >= 40 %), makespan "
          f"{slow:.3f}x (goal <= 1.15x)")
    if "energy_saving_placement_only" in out:
        print(f"placement only (no node powered off): {100 * out['energy_saving_placement_only']:.1f} % less")
    write_json(out, a.json)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", choices=("autoscaler", "static"), default="autoscaler")
    ap.add_argument("--json", default=None, help="default: benchmarks/results/ray_live_autoscaler.json "
                                                 "(static: ray_live.json)")
    ap.add_argument("--variants", default=None, help="autoscaler: " + ",".join(AUTOSCALER_VARIANTS)
                    + " (default ray-autoscaler,tao)")
    ap.add_argument("--lock", default=None, help="file to hold an exclusive lock on while a cluster runs")
    ap.add_argument("--idle-minutes", type=float, default=1.0, help="Ray's idle_timeout_minutes")
    ap.add_argument("--busy", type=float, default=45.0)
    ap.add_argument("--quiet", type=float, default=80.0)
    ap.add_argument("--cycles", type=int, default=2)
    ap.add_argument("--busy-gap", type=float, default=0.33)
    ap.add_argument("--quiet-gap", type=float, default=15.0)
    ap.add_argument("--work", type=float, default=None, help="seconds per task (autoscaler 2.0, static 0.5)")
    ap.add_argument("--tasks", type=int, default=60, help="static: tasks")
    ap.add_argument("--interval", type=float, default=0.2, help="static: seconds between tasks")
    a = ap.parse_args(argv)
    results = ROOT / "benchmarks" / "results"
    if a.baseline == "static":
        a.json = a.json or str(results / "ray_live.json")
        a.variants = a.variants or "default,tao,tao-placement-only"
        a.work = 0.5 if a.work is None else a.work
        return static_suite(a)
    a.json = a.json or str(results / "ray_live_autoscaler.json")
    a.variants = a.variants or "ray-autoscaler,tao"
    a.work = 2.0 if a.work is None else a.work
    return autoscaler_suite(a)


if __name__ == "__main__":
    raise SystemExit(main())
