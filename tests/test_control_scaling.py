"""Scaling: never power off a node with work, boot on demand, hysteresis, order."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control_fixtures import TYPES
from tao_core.control import Action, Controller, ControllerConfig, NodeState, TaskRequest

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

op_st = st.lists(
    st.one_of(
        st.tuples(st.just("task"), st.sampled_from([1.0, 2.0, 4.0, 8.0]), st.sampled_from([0.0, 0.0, 1.0]),
                  st.floats(1.0, 50.0)),
        st.tuples(st.just("finish"), st.integers(0, 1000)),
        st.tuples(st.just("plan"), st.integers(0, 6), st.floats(0.0, 120.0)),
        st.tuples(st.just("ready"), st.integers(0, 1000)),
    ),
    min_size=5, max_size=80)


@FAST
@given(ops=op_st, idle_timeout=st.sampled_from([None, 0.0, 5.0]), consolidate=st.booleans())
def test_scaling_never_powers_down_a_node_with_work(ops, idle_timeout, consolidate):
    ctl = Controller(TYPES, ControllerConfig(idle_timeout_s=idle_timeout, consolidate=consolidate))
    for i, t in enumerate(["big", "big", "small", "small", "small", "gpu"]):
        ctl.add_node(f"n{i}", t, state=NodeState.ON if i % 2 == 0 else NodeState.OFF)
    now = 0.0
    placed: list[str] = []
    tid = 0
    for op in ops:
        now += 1.0
        if op[0] == "task":
            d = ctl.decide(TaskRequest(f"t{tid}", "g", cpus=op[1], gpus=op[2], duration_hint_s=op[3]), now_s=now)
            if d.action == Action.PLACE:
                placed.append(d.task_id)
                ctl.task_started(d.task_id, now_s=now)
            tid += 1
        elif op[0] == "finish" and placed:
            ctl.task_finished(placed.pop(op[1] % len(placed)), now_s=now)
        elif op[0] == "ready":
            booting = [n for n in ctl.cluster.node_ids if ctl.node_state(n) == NodeState.BOOTING]
            if booting:
                ctl.set_node_state(booting[op[1] % len(booting)], NodeState.ON, now_s=now)
        elif op[0] == "plan":
            now += op[2]
            pending = [TaskRequest(f"p{j}", "g", cpus=2.0) for j in range(op[1])]
            work = {n: ctl.reserved(n)[2] for n in ctl.cluster.node_ids}
            plan = ctl.plan_scaling(now_s=now, pending=pending)
            for n in plan.power_off:
                assert work[n] == 0, (n, work[n])
            assert not set(plan.power_off) & set(plan.power_on)
            for n in plan.power_on:
                assert ctl.node_state(n) == NodeState.BOOTING
            for n in plan.drain:
                assert ctl.node_state(n) == NodeState.DRAINING
    # every task still holding a reservation is on a node that is on or draining
    for n in ctl.cluster.node_ids:
        if ctl.reserved(n)[2]:
            assert ctl.node_state(n) in (NodeState.ON, NodeState.DRAINING)


def _cluster(**kw):
    cfg = ControllerConfig(**kw)
    ctl = Controller(TYPES, cfg)
    for i in range(3):
        ctl.add_node(f"b{i}", "big")
    for i in range(3):
        ctl.add_node(f"s{i}", "small")
    return ctl


def test_idle_nodes_go_after_timeout_least_efficient_first():
    # the order without packing (pack_efficient off): least efficient at full load first
    ctl = _cluster(idle_timeout_s=10.0, pack_efficient=False)
    ctl.decide(TaskRequest("t", "g", cpus=2.0, duration_hint_s=1000.0), now_s=0.0)
    assert ctl.plan_scaling(now_s=5.0).power_off == ()  # not idle long enough
    plan = ctl.plan_scaling(now_s=11.0)
    assert len(plan.power_off) == 5
    busy = [n for n in ctl.cluster.node_ids if ctl.reserved(n)[2]]
    assert busy and busy[0] not in plan.power_off
    eff = {t.name: t.peak_w / (t.cpus * t.speed) for t in TYPES}
    names = {n: ctl.cluster.node_type(n).name for n in ctl.cluster.node_ids}
    order = [eff[names[n]] for n in plan.power_off]
    assert order == sorted(order, reverse=True)


def test_hotter_idle_node_goes_first():
    ctl = _cluster(idle_timeout_s=0.0, spare_cpus=60.0, scale_down_band=0.0, pack_efficient=False)
    ctl.observe_node("b1", now_s=0.0, temperature_k=330.0)
    plan = ctl.plan_scaling(now_s=1.0)
    # 120 CPUs on, 60 must stay: smalls (least efficient) go, then the hottest big one
    assert set(plan.power_off) == {"s0", "s1", "s2", "b1"} and plan.power_off[-1] == "b1"


def test_scale_down_band_keeps_headroom():
    ctl = _cluster(idle_timeout_s=0.0, spare_cpus=60.0, scale_down_band=0.5, pack_efficient=False)
    plan = ctl.plan_scaling(now_s=1.0)
    # 120 CPUs on; 90 (60 x 1.5) must stay: only the three small nodes go
    assert set(plan.power_off) == {"s0", "s1", "s2"}


def test_min_on_time_prevents_flapping():
    ctl = _cluster(idle_timeout_s=0.0, min_on_s=30.0)
    ctl.set_node_state("b0", NodeState.OFF, now_s=0.0)
    ctl.set_node_state("b0", NodeState.ON, now_s=1.0)
    plan = ctl.plan_scaling(now_s=2.0)
    assert "b0" not in plan.power_off
    assert "b0" in ctl.plan_scaling(now_s=40.0).power_off


def test_default_idle_timeout_is_break_even():
    # lambda 0: only the boot energy is weighed against the idle draw
    ctl = _cluster(lambda_j_per_s=0.0)
    big = TYPES[0]
    be = big.boot_energy_j / (big.idle_w - big.off_w)
    ctl.set_node_state("s0", NodeState.DRAINING, now_s=0.0)
    assert "b0" not in ctl.plan_scaling(now_s=be - 1.0).power_off
    assert "b0" in ctl.plan_scaling(now_s=be + 1.0).power_off


def test_boot_on_pending_demand_most_efficient_first():
    # one node for every task that fits nowhere (size_boots off)
    ctl = Controller(TYPES, ControllerConfig(size_boots=False))
    ctl.add_node("on", "small")
    for i in range(2):
        ctl.add_node(f"s{i}", "small", state=NodeState.OFF)
        ctl.add_node(f"b{i}", "big", state=NodeState.OFF)
    pending = [TaskRequest(f"p{j}", "g", cpus=4.0) for j in range(10)]
    plan = ctl.plan_scaling(now_s=0.0, pending=pending)
    assert plan.power_on[0].startswith("b")  # big: fewer watts per unit of work
    assert sum(32 if n.startswith("b") else 8 for n in plan.power_on) + 8 >= 40
    assert all(ctl.node_state(n) == NodeState.BOOTING for n in plan.power_on)
    # a second call does not boot them again
    assert ctl.plan_scaling(now_s=1.0, pending=pending).power_on == ()


def _big_nodes(n: int) -> Controller:
    """``n`` big nodes (32 CPUs each) that are on, a 60 s spare horizon, no idle timeout."""
    ctl = Controller(TYPES, ControllerConfig(spare_horizon_s=60.0, idle_timeout_s=0.0, scale_down_band=0.0))
    for i in range(n):
        ctl.add_node(f"b{i}", "big")
    return ctl


def _after_arrivals(*run_s: float) -> Controller:
    """4 big nodes after 200 s of 1 CPU asked per second, task ``k`` holding its CPU
    ``run_s[k % len(run_s)]`` seconds."""
    ctl = _big_nodes(4)
    for k in range(200):
        run = run_s[k % len(run_s)]
        d = ctl.decide(TaskRequest(f"t{k}", "g", cpus=1.0, duration_hint_s=run), now_s=float(k))
        ctl.task_finished(d.task_id, now_s=k + 0.5, duration_s=run)
    return ctl


def test_spare_capacity_follows_arrival_rate():
    # tasks longer than the horizon: the arrivals of 60 s hold about 60 CPUs at once
    assert len(_after_arrivals(100.0).plan_scaling(now_s=200.0).power_off) == 2
    # 0.5 s tasks: by Little's law they hold about 0.5 CPU at once, one node covers them
    assert len(_after_arrivals(0.5).plan_scaling(now_s=200.0).power_off) == 3
    quiet = Controller(TYPES, ControllerConfig(spare_horizon_s=60.0, idle_timeout_s=0.0))
    for i in range(4):
        quiet.add_node(f"b{i}", "big")
    assert len(quiet.plan_scaling(now_s=200.0).power_off) == 4


def test_spare_counts_each_task_for_at_most_the_horizon():
    # half the tasks run 1,000 s, half 0.5 s: a mean run time of 500 s would keep the whole
    # horizon (60 CPUs, two nodes on); they hold (60 + 0.5) / 2 = 30 s of the horizon on
    # average, about 30 CPUs: one node covers them
    assert len(_after_arrivals(1000.0, 0.5).plan_scaling(now_s=200.0).power_off) == 3


def test_before_any_task_finished_arrivals_hold_the_whole_horizon():
    # 100 tasks arrived and run, none finished: nothing says they free their CPUs early
    ctl = _big_nodes(8)
    for k in range(100):
        ctl.decide(TaskRequest(f"t{k}", "g", cpus=1.0), now_s=float(k))
    # 100 CPUs reserved + 60 CPUs of spare: 5 nodes of 32 stay on
    assert len(ctl.plan_scaling(now_s=100.0).power_off) == 3


def test_decide_defers_to_waking_node_and_plan_boots_it():
    ctl = Controller(TYPES, ControllerConfig())
    ctl.add_node("b0", "big", state=NodeState.OFF)
    d = ctl.decide(TaskRequest("t", "g", cpus=2.0, duration_hint_s=10.0), now_s=0.0)
    assert d.action == Action.DEFER and d.node_id == "b0" and d.defer_until_s == TYPES[0].boot_s
    plan = ctl.plan_scaling(now_s=0.0, pending=[TaskRequest("t", "g", cpus=2.0)])
    assert plan.power_on == ("b0",)
    d = ctl.decide(TaskRequest("t", "g", cpus=2.0, duration_hint_s=10.0), now_s=1.0)
    assert d.action == Action.DEFER and d.defer_until_s == TYPES[0].boot_s
    ctl.set_node_state("b0", NodeState.ON, now_s=60.0)
    assert ctl.decide(TaskRequest("t", "g", cpus=2.0, duration_hint_s=10.0), now_s=60.0).action == Action.PLACE


def test_idle_nodes_are_shed_when_power_is_over_budget():
    idle = 3 * TYPES[0].idle_w + 3 * TYPES[1].idle_w
    ctl = _cluster(power_budget_w=1.1 * idle / 0.98, min_on_s=1e9, idle_timeout_s=1e9)
    d = ctl.decide(TaskRequest("t", "g", cpus=1.0, duration_hint_s=1e4), now_s=0.0)
    assert d.action == Action.PLACE
    # the meter says the cluster draws 25 % more than modeled: over the budget
    ctl.observe_cluster_power(now_s=1.0, power_w=1.25 * ctl.modeled_power_w())
    assert ctl.predicted_power_w() >= ctl.loop.effective_budget_w
    plan = ctl.plan_scaling(now_s=2.0)
    assert plan.power_off and d.node_id not in plan.power_off
    assert all(ctl.reserved(n)[2] == 0 for n in plan.power_off)
    assert ctl.predicted_power_w() < ctl.loop.effective_budget_w
    # the biggest idle draw goes first
    assert plan.power_off[0].startswith("b")
