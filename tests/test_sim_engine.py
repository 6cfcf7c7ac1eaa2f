"""Simulator invariants and hand-computed energy: conservation, capacity, exactly-once."""
from __future__ import annotations

import random
from collections import defaultdict

import pytest

from tao_core.control.types import NodeType
from tao_core.power.curve import PowerCurve
from tao_core.sim.metrics import lower_bound_j, summarize
from tao_core.sim.model import ClusterSpec, SimTask, Workload, make_nodes
from tao_core.sim.runner import POLICY_NAMES, build_policy, run_policy

LINEAR = PowerCurve(tuple(100.0 + 10.0 * i for i in range(11)))  # 100 W idle .. 200 W busy


def one_node(pue: float = 1.0) -> ClusterSpec:
    nt = NodeType(name="n", cpus=4, power_curve=LINEAR)
    return ClusterSpec(node_types={"n": nt}, nodes=make_nodes([("n", 1)]), pue=pue)


def mixed_cluster() -> ClusterSpec:
    types = {
        "big": NodeType(name="big", cpus=8, power_curve=PowerCurve((60, 90, 100, 110, 120, 135, 150, 165, 180, 195, 210)),
                        boot_s=30, off_w=5),
        "small": NodeType(name="small", cpus=2, power_curve=PowerCurve((40, 45, 50, 55, 60, 66, 72, 78, 84, 90, 96)),
                          speed=1.5, boot_s=20, off_w=2),
        "gpu": NodeType(name="gpu", cpus=8, gpus=2, gpu_idle_w=50, gpu_max_w=250,
                        power_curve=PowerCurve((60, 90, 100, 110, 120, 135, 150, 165, 180, 195, 210)), boot_s=40, off_w=5),
    }
    return ClusterSpec(node_types=types, nodes=make_nodes([("big", 3), ("small", 3), ("gpu", 2)]), pue=1.3)


def random_workload(seed: int, n: int = 150) -> Workload:
    rng = random.Random(seed)
    t = 0.0
    tasks = []
    for i in range(n):
        t += rng.expovariate(1 / 4.0) if rng.random() < 0.8 else rng.expovariate(1 / 200.0)
        gpu = rng.random() < 0.2
        tasks.append(SimTask(f"t{i}", round(t, 3), rng.uniform(1, 60), rng.choice((0.5, 1, 2, 4)),
                             rng.choice((0.5, 1.0, 2.0)) if gpu else 0.0, "g" if gpu else rng.choice(("a", "b"))))
    return Workload(tasks=tasks, source="random")


def _timeline_energy(res) -> float:
    t, w = list(res.timeline_t), list(res.timeline_w)
    return sum(w[i] * (t[i + 1] - t[i]) for i in range(len(t) - 1))


@pytest.mark.parametrize("policy", POLICY_NAMES)
def test_invariants_every_policy(policy):
    cl = mixed_cluster()
    wl = random_workload(3)
    setup = build_policy(policy, cl, seed=5)
    res = run_policy(setup, cl, wl)
    m = summarize(res, cl, wl, lower_bound_j(cl, wl))
    # every task ran exactly once, for its run time at its node's speed
    speeds = [cl.node_types[n.node_type].speed for n in cl.nodes]
    for i, task in enumerate(wl.tasks):
        assert res.start_s[i] >= task.submit_s - 1e-9
        k = res.node_of_task[i]
        assert k >= 0
        assert res.end_s_task[i] == pytest.approx(res.start_s[i] + task.duration_s / speeds[k])
    assert m["tasks_completed"] == len(wl.tasks)
    assert res.placements == len(wl.tasks)
    # no node over capacity at any time
    events = defaultdict(list)
    for i, task in enumerate(wl.tasks):
        k = res.node_of_task[i]
        events[k].append((res.start_s[i], 1, task.cpus, task.gpus))
        events[k].append((res.end_s_task[i], 0, -task.cpus, -task.gpus))
    for k, evs in events.items():
        nt = cl.node_types[cl.nodes[k].node_type]
        c = g = 0.0
        for _, _, dc, dg in sorted(evs):
            c += dc
            g += dg
            assert c <= nt.cpus + 1e-9 and g <= nt.gpus + 1e-9
    # energy conserved: parts sum to IT per node and in total; the power timeline integrates to it
    for ne in res.nodes:
        assert ne.it_j == pytest.approx(ne.dynamic_j + ne.idle_j + ne.boot_j + ne.off_j)
    it = sum(ne.it_j for ne in res.nodes)
    assert m["it_energy_j"] == pytest.approx(it)
    assert m["it_energy_j"] == pytest.approx(m["dynamic_energy_j"] + m["idle_energy_j"] + m["boot_energy_j"] + m["off_energy_j"])
    assert _timeline_energy(res) == pytest.approx(it, rel=1e-9)
    assert m["energy_j"] == pytest.approx(it * cl.pue)
    # task energies (dynamic, split by CPU and GPU share) sum to the dynamic energy
    assert sum(res.energy_task_j) == pytest.approx(m["dynamic_energy_j"], rel=1e-9)
    assert m["energy_j"] >= lower_bound_j(cl, wl) * (1 - 1e-9)
    assert 0.0 <= m["overhead_share"] <= 1.0


def test_hand_computed_energy_one_task():
    cl = one_node(pue=1.5)
    wl = Workload([SimTask("a", 0.0, 10.0, 2.0)])
    res = run_policy(build_policy("pack", cl), cl, wl)
    m = summarize(res, cl, wl, lower_bound_j(cl, wl))
    # 2 of 4 CPUs -> u = 0.5 -> 150 W for 10 s
    assert m["it_energy_j"] == pytest.approx(1500.0)
    assert m["dynamic_energy_j"] == pytest.approx(500.0)
    assert m["idle_energy_j"] == pytest.approx(1000.0)
    assert m["energy_j"] == pytest.approx(2250.0)
    # task work (tao_core.accounting.figures): 500 J dynamic + the idle 100 W for the half of
    # the node's CPUs the task held over its 10 s = 1000 J; overhead share 1 - 1000 / 2250
    assert m["task_energy_j"] == pytest.approx(1000.0)
    assert m["overhead_share"] == pytest.approx(1 - 1000.0 / 2250.0)
    assert m["inverted"] is True
    assert m["peak_power_w"] == pytest.approx(150.0)
    assert m["makespan_s"] == pytest.approx(10.0)
    assert res.energy_task_j[0] == pytest.approx(500.0)
    # bound: min P(u)/(u x 4) is 200/4 = 50 W per CPU-second at u = 1; 20 CPU-s x 50 x PUE
    assert lower_bound_j(cl, wl) == pytest.approx(20 * 50.0 * 1.5)


def test_budget_violation_time_and_shared_energy():
    cl = one_node()
    # two tasks overlap for 5 s: 1 CPU each -> 125 W alone, 150 W together
    wl = Workload([SimTask("a", 0.0, 10.0, 1.0), SimTask("b", 5.0, 10.0, 1.0)])
    res = run_policy(build_policy("pack", cl), cl, wl, budget_w=140.0)
    assert res.budget_violation_s == pytest.approx(5.0)
    assert res.budget_excess_j == pytest.approx(50.0)
    # dynamic: 25 W x 5 + 50 W x 5 + 25 W x 5 = 500 J, split evenly while shared
    assert res.energy_task_j[0] == pytest.approx(125 + 125)
    assert res.energy_task_j[1] == pytest.approx(125 + 125)


def test_lower_bound_picks_best_breakpoint_and_type():
    eff = NodeType(name="eff", cpus=2, power_curve=PowerCurve((10, 12, 14, 16, 18, 20, 22, 30, 40, 50, 60)), speed=2.0)
    gpu = NodeType(name="g", cpus=4, gpus=1, gpu_idle_w=20, gpu_max_w=100, power_curve=LINEAR)
    cl = ClusterSpec(node_types={"eff": eff, "g": gpu}, nodes=make_nodes([("eff", 1), ("g", 1)]))
    wl = Workload([SimTask("a", 0, 100.0, 1.0, 0.5)])
    # eff: min over u of P(u)/(u x 2 x 2): u=0.6 -> 22/2.4 = 9.1667 W per CPU-s; GPU: 100 W per GPU-s
    assert lower_bound_j(cl, wl) == pytest.approx(100 * 22 / 2.4 + 50 * 100.0)


def _node_timelines(res, cl: ClusterSpec, wl: Workload) -> tuple[dict, list]:
    """Per node, cumulative readings at every start and end of its tasks, with the node's
    declared power at the load of the tasks running in between (computed here, from the
    NodeType, not by the simulator), and the tasks as attribution spans."""
    from tao_core.attribution import TaskSpan
    from tao_core.telemetry.base import DomainReading, Reading, SourceKind

    by_node = defaultdict(list)
    spans = []
    for i, task in enumerate(wl.tasks):
        k = res.node_of_task[i]
        nid = cl.nodes[k].node_id
        by_node[nid].append((res.start_s[i], res.end_s_task[i], task.cpus, task.gpus))
        spans.append(TaskSpan(task.task_id, nid, res.start_s[i], res.end_s_task[i], cpus=task.cpus))
    timelines = {}
    for nid, runs in by_node.items():
        nt = cl.node_types[next(n.node_type for n in cl.nodes if n.node_id == nid)]
        times = sorted({t for a, b, _, _ in runs for t in (a, b)})
        e = 0.0
        rows = [Reading(times[0], {"node": DomainReading("node", 0.0, SourceKind.MODELED, "test")})]
        for t0, t1 in zip(times, times[1:]):
            c = sum(r[2] for r in runs if r[0] <= t0 and r[1] >= t1)
            g = sum(r[3] for r in runs if r[0] <= t0 and r[1] >= t1)
            e += nt.power_w(c / nt.cpus, g / nt.gpus if nt.gpus else 0.0) * (t1 - t0)
            rows.append(Reading(t1, {"node": DomainReading("node", e, SourceKind.MODELED, "test")}))
        timelines[nid] = rows
    return timelines, spans


@pytest.mark.parametrize("policy", ["tao", "pack"])
def test_task_finished_gets_the_attributed_energy_tao_core_attribution_computes(policy):
    from tao_core.attribution import attribute

    cl = mixed_cluster()
    wl = random_workload(7, n=80)
    setup = build_policy(policy, cl, seed=1)
    fed = {}
    finished = setup.policy.task_finished

    def spy(task_id, *, now_s, energy_j=None, duration_s=None):
        fed[task_id] = energy_j
        finished(task_id, now_s=now_s, energy_j=energy_j, duration_s=duration_s)

    setup.policy.task_finished = spy
    res = run_policy(setup, cl, wl)
    timelines, spans = _node_timelines(res, cl, wl)
    att = attribute(timelines, spans, idle_w={n.node_id: cl.node_types[n.node_type].idle_w for n in cl.nodes},
                    node_cpus={n.node_id: cl.node_types[n.node_type].cpus for n in cl.nodes})
    want = dict(zip(att.tasks["task_id"], att.tasks["energy_j"]))
    for i, task in enumerate(wl.tasks):
        assert res.attributed_task_j[i] == pytest.approx(want[task.task_id], rel=1e-9, abs=1e-6)
        assert fed[task.task_id] == res.attributed_task_j[i]
    # dynamic by CPU share plus a CPU share of the idle watts: more than the dynamic share alone
    assert sum(res.attributed_task_j) > sum(res.energy_task_j)


def test_simulator_runs_the_adapters_controller_configuration():
    from tao_core.control import ControllerConfig

    cl = mixed_cluster()
    cl.power_budget_w = 2500.0
    setup = build_policy("tao", cl, seed=0)
    shipped = vars(ControllerConfig())
    run_specific = {"power_budget_w", "budget_scope", "pue", "emit_events", "alternatives"}
    assert {k: v for k, v in setup.config.items() if k not in run_specific} == \
        {k: v for k, v in shipped.items() if k not in run_specific}
    assert setup.config["wake_in_decide"] is True
    assert setup.config["power_budget_w"] == 2500.0 and setup.config["pue"] == cl.pue
