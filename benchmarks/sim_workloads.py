"""The clusters and workloads of the simulator benchmarks (``sim_scenarios.py``,
``sim_levers.py``, ``sim_speed.py``), each a function of its seed.

Scenarios (``SCENARIOS``: name -> builder returning ``Scenario``):

- ``demo``: ``make demo``'s example, ``examples/cluster_small.json`` and
  ``examples/workload_small.csv`` (6 nodes of three types, one of them with two V100 GPUs;
  60 tasks over 24 minutes; PUE 1.2).
- ``idle-heavy``: a static cluster sized for peak on SPECpower_ssj2008 servers of 2010
  (16 x IBM x3550 M3 2 x X5675, 16 x IBM x3550 M3 2 x X5670, 16 x IBM x3250 X3480; 448
  CPUs; boot 120 s, 10 W off) and bursty traffic with a low mean load: bursts arrive as a
  Poisson process (mean gap 1,200 s), each of 40-160 tasks (uniform) spread over 60 s;
  between bursts a Poisson background of one task per 60 s. Tasks ask 1 or 2 CPUs (equal
  odds) and run a lognormal time (median 60 s, sigma 0.5). 8 hours, seed 1.
- ``budget``: idle-heavy under a cluster IT power budget of 60 % of the peak power
  ``ray-default`` draws on it (measured first).
- ``alibaba-v2023``: the whole Alibaba GPU v2023 trace (8,152 pods, 1,523 nodes), as
  ``tao_core.sim.alibaba`` loads it; needs the trace folder.
- ``modern``: an energy-proportional cluster of five SPECpower_ssj2008 results of
  2018-2021 whose active idle is 11-19 % of their peak (Xeon Platinum 8180, Xeon E-2176G,
  Xeon Gold 5220, Xeon Platinum 8380, EPYC 7763; 1.77 to 6.16 W per hardware thread at full
  load; listed by hardware availability, oldest first), 40 nodes, 3,328 threads; boot 180 s,
  8 W off. Traffic follows a day: Poisson arrivals whose rate follows a sinusoid between
  10 % and 45 % of the cluster's threads (trough at 04:00, peak at 16:00) over 24 hours;
  tasks of four groups ask 1-16 threads and run lognormal times (medians 60-900 s, sigma
  0.8). Powering nodes off is worth less here (idle is a small share) and where work runs,
  and at what load, more.

Held-out variations (to test the levers on what they were not shaped on):

- ``idle-heavy-seed2``: idle-heavy with seed 2.
- ``cron``: the idle-heavy cluster with hourly bursts (a cron job: 40-160 tasks at half
  past each hour, +-60 s) and the same background, 12 hours, seed 3.
- ``deferrable``: idle-heavy whose background tasks are batch work due within an hour of
  their arrival (``deadline_s`` = arrival + 3,600 s).
- ``modern-seed2``: modern with seed 2.

Units: seconds, watts, CPUs.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from tao_core.power.catalog import specpower_node_type
from tao_core.sim.loaders import load_cluster, load_workload
from tao_core.sim.model import ClusterSpec, SimTask, Workload, make_nodes

ROOT = Path(__file__).resolve().parents[1]
TRACE_DIR = ROOT.parent / "shared" / "data" / "traces" / "alibaba-gpu-v2023"


@dataclass
class Scenario:
    """A cluster, a workload, and the IT power budget to run them under (None: none)."""

    name: str
    cluster: ClusterSpec
    workload: Workload
    budget_w: Optional[float] = None
    note: str = ""


def specpower_cluster() -> ClusterSpec:
    """The idle-heavy cluster: three SPECpower_ssj2008 servers (tao_core/data/specpower_servers.csv)."""
    types = {}
    counts = []
    for model, name, n in (("IbmX3550XeonX5675", "x5675", 16), ("IbmX3550XeonX5670", "x5670", 16),
                           ("IbmX3250XeonX3480", "x3480", 16)):
        types[name] = specpower_node_type(model, name=name, boot_s=120.0, off_w=10.0)
        counts.append((name, n))
    return ClusterSpec(node_types=types, nodes=make_nodes(counts), pue=1.0, source="idle-heavy (SPECpower servers)")


def _task(rng: random.Random, tasks: list[SimTask], at: float, group: str, deadline_s: Optional[float] = None) -> None:
    dur = rng.lognormvariate(math.log(60.0), 0.5)
    tasks.append(SimTask(f"t{len(tasks)}", at, dur, float(rng.choice((1, 2))), 0.0, group,
                         None if deadline_s is None else at + deadline_s))


def bursty_workload(seed: int = 1, hours: float = 8.0, background_deadline_s: Optional[float] = None) -> Workload:
    """Bursty, low-mean-load traffic (see the module docstring)."""
    rng = random.Random(seed)
    horizon = hours * 3600.0
    tasks: list[SimTask] = []
    t = 0.0
    while True:
        t += rng.expovariate(1.0 / 1200.0)
        if t >= horizon:
            break
        for _ in range(rng.randint(40, 160)):
            _task(rng, tasks, t + rng.uniform(0.0, 60.0), "burst")
    t = 0.0
    while True:
        t += rng.expovariate(1.0 / 60.0)
        if t >= horizon:
            break
        _task(rng, tasks, t, "background", background_deadline_s)
    tasks.sort(key=lambda x: x.submit_s)
    for k, x in enumerate(tasks):
        x.task_id = f"t{k}"
    src = f"bursty(seed={seed}, {hours:g} h" + (f", background due in {background_deadline_s:g} s)"
                                                  if background_deadline_s else ")")
    return Workload(tasks=tasks, source=src)


def cron_workload(seed: int = 3, hours: float = 12.0) -> Workload:
    """Hourly bursts at half past each hour (+-60 s) and the Poisson background."""
    rng = random.Random(seed)
    tasks: list[SimTask] = []
    for h in range(int(hours)):
        start = h * 3600.0 + 1800.0 + rng.uniform(-60.0, 60.0)
        for _ in range(rng.randint(40, 160)):
            _task(rng, tasks, start + rng.uniform(0.0, 60.0), "cron")
    t = 0.0
    while True:
        t += rng.expovariate(1.0 / 60.0)
        if t >= hours * 3600.0:
            break
        _task(rng, tasks, t, "background")
    tasks.sort(key=lambda x: x.submit_s)
    for k, x in enumerate(tasks):
        x.task_id = f"t{k}"
    return Workload(tasks=tasks, source=f"cron(seed={seed}, {hours:g} h)")


#: the modern cluster: (SPECpower_ssj2008 result, name, nodes), oldest hardware first
MODERN = (
    ("power_ssj2008-20180828-00848", "plat-8180", 8),
    ("power_ssj2008-20181125-00868", "e-2176g", 16),
    ("power_ssj2008-20190730-00996", "gold-5220", 8),
    ("power_ssj2008-20210601-01102", "plat-8380", 4),
    ("power_ssj2008-20211001-01130", "epyc-7763", 4),
)
#: (group, share of tasks, threads asked and their odds, median run time s)
MODERN_GROUPS = (
    ("web", 0.4, ((1, 2), (0.6, 0.4)), 60.0),
    ("etl", 0.3, ((2, 4, 8), (0.3, 0.4, 0.3)), 300.0),
    ("build", 0.2, ((4, 8, 16), (0.4, 0.4, 0.2)), 600.0),
    ("ml", 0.1, ((8, 16), (0.5, 0.5)), 900.0),
)


def modern_cluster() -> ClusterSpec:
    types = {name: specpower_node_type(res, name=name, boot_s=180.0, off_w=8.0) for res, name, _ in MODERN}
    return ClusterSpec(node_types=types, nodes=make_nodes([(name, n) for _, name, n in MODERN]), pue=1.0,
                       source="modern (SPECpower 2018-2021, idle 11-19 % of peak)")


def modern_workload(cluster: ClusterSpec, seed: int = 1, hours: float = 24.0) -> Workload:
    """Diurnal Poisson traffic (see the module docstring)."""
    rng = random.Random(seed)
    threads = sum(cluster.node_types[n.node_type].cpus for n in cluster.nodes)
    shares = [g[1] for g in MODERN_GROUPS]
    mean_work = sum(g[1] * sum(c * p for c, p in zip(*g[2])) * g[3] * math.exp(0.8 ** 2 / 2) for g in MODERN_GROUPS)
    tasks: list[SimTask] = []
    t = 0.0
    peak = 0.45 * threads / mean_work  # tasks per second at the peak load
    while True:
        t += rng.expovariate(peak)  # thinning: accept with the load's share of the peak
        if t >= hours * 3600.0:
            break
        load = 0.275 - 0.175 * math.cos(2 * math.pi * (t / 86400.0 - 4.0 / 24.0))
        if rng.random() > load / 0.45:
            continue
        g = rng.choices(MODERN_GROUPS, weights=shares)[0]
        cpus = float(rng.choices(g[2][0], weights=g[2][1])[0])
        tasks.append(SimTask(f"t{len(tasks)}", t, rng.lognormvariate(math.log(g[3]), 0.8), cpus, 0.0, g[0]))
    return Workload(tasks=tasks, source=f"diurnal(seed={seed}, {hours:g} h)")


def _demo() -> Scenario:
    return Scenario("demo", load_cluster(ROOT / "examples" / "cluster_small.json"),
                    load_workload(ROOT / "examples" / "workload_small.csv"))


def _alibaba(trace_dir: Path = TRACE_DIR) -> Optional[Scenario]:
    from tao_core.sim.alibaba import load_alibaba_nodes, load_alibaba_pods

    pods = trace_dir / "openb_pod_list_default.csv"
    nodes = trace_dir / "openb_node_list_all_node.csv"
    if not pods.exists() or not nodes.exists():
        return None
    return Scenario("alibaba-v2023", load_alibaba_nodes(nodes), load_alibaba_pods(pods))


def budget_scenario() -> Scenario:
    """idle-heavy under 60 % of the peak ray-default draws on it."""
    from tao_core.sim.runner import run_all

    cl, wl = specpower_cluster(), bursty_workload()
    peak = run_all(cl, wl, ["ray-default"], strict=False)["policies"]["ray-default"]["peak_power_w"]
    return Scenario("budget", cl, wl, budget_w=0.6 * peak, note=f"IT budget 60 % of ray-default's peak {peak:.0f} W")


SCENARIOS: dict[str, Callable[[], Optional[Scenario]]] = {
    "demo": _demo,
    "idle-heavy": lambda: Scenario("idle-heavy", specpower_cluster(), bursty_workload(1)),
    "budget": budget_scenario,
    "alibaba-v2023": _alibaba,
    "modern": lambda: Scenario("modern", modern_cluster(), modern_workload(modern_cluster(), 1)),
    "idle-heavy-seed2": lambda: Scenario("idle-heavy-seed2", specpower_cluster(), bursty_workload(2)),
    "cron": lambda: Scenario("cron", specpower_cluster(), cron_workload(3)),
    "deferrable": lambda: Scenario("deferrable", specpower_cluster(), bursty_workload(1, background_deadline_s=3600.0)),
    "modern-seed2": lambda: Scenario("modern-seed2", modern_cluster(), modern_workload(modern_cluster(), 2)),
}
#: the scenarios the goals are set on, and the held-out variations
GOAL_SCENARIOS = ("demo", "idle-heavy", "budget", "alibaba-v2023")
HELD_OUT = ("idle-heavy-seed2", "cron", "deferrable", "modern-seed2")
