"""The penalty: barrier, lowest-energy choice, temperature tie-break."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control_fixtures import BIG, BY_NAME, TYPES, cluster_power_w, node_power_w
from tao_core.control import Action, Controller, ControllerConfig, TaskRequest
from tao_core.control.penalty import barrier

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_barrier_values():
    assert barrier(0.0, 100.0) == 0.0
    assert barrier(50.0, 100.0) == pytest.approx(math.log(2.0))
    assert barrier(100.0, 100.0) == math.inf
    assert barrier(150.0, 100.0) == math.inf
    assert barrier(99.0, None) == 0.0
    arr = barrier(np.array([0.0, 90.0, 100.0, 120.0]), 100.0)
    assert arr[0] == 0.0 and np.isfinite(arr[1]) and arr[1] > 2.0 and np.isinf(arr[2:]).all()


cluster_st = st.lists(st.sampled_from([t.name for t in TYPES]), min_size=1, max_size=12)
tasks_st = st.lists(
    st.tuples(st.sampled_from([0.5, 1.0, 2.0, 4.0, 8.0]), st.sampled_from([0.0, 0.0, 0.0, 1.0]),
              st.floats(0.5, 100.0)),
    min_size=1, max_size=60)


@FAST
@given(types=cluster_st, tasks=tasks_st, budget_frac=st.floats(0.2, 1.2), mu=st.sampled_from([0.0, 1.0, 100.0]))
def test_barrier_never_admits_over_budget(types, tasks, budget_frac, mu):
    idle = sum(BY_NAME[t].idle_w for t in types)
    peak = sum(BY_NAME[t].peak_w for t in types)
    budget = idle + budget_frac * (peak - idle)
    ctl = Controller(TYPES, ControllerConfig(power_budget_w=budget, mu=mu, lambda_j_per_s=1.0))
    for i, t in enumerate(types):
        ctl.add_node(f"n{i}", t)
    for j, (c, g, d) in enumerate(tasks):
        dec = ctl.decide(TaskRequest(f"t{j}", "g", cpus=c, gpus=g, duration_hint_s=d), now_s=float(j))
        after = cluster_power_w(ctl)
        if dec.action == Action.PLACE:
            assert after < budget, (after, budget)
        else:
            assert dec.action == Action.DEFER
            assert after < budget or after == pytest.approx(idle)


def _marginal_energy(ctl: Controller, node_id: str, task: TaskRequest, now_s: float, keep_on: bool,
                     ends: dict[str, list[float]], node_type: dict[str, str]) -> float:
    """Independent computation of E for a node that is on: model watts after minus before,
    times run time, plus idle watts over the extra time the node is kept on beyond the
    expected end of the work placed there: the latest of its predicted ends (``ends``, by
    node) and, the node having been busy since 0 s, as long again from now (2 x now)."""
    t = BY_NAME[node_type[node_id]]
    c, g, n = ctl.reserved(node_id)
    if c + task.cpus > t.cpus + 1e-9 or g + task.gpus > t.gpus + 1e-9:
        return math.inf
    dur = (task.duration_hint_s or ctl.config.default_duration_s) / t.speed
    before = t.power_w(c / t.cpus, g / t.gpus if t.gpus else 0.0)
    after = t.power_w((c + task.cpus) / t.cpus, (g + task.gpus) / t.gpus if t.gpus else 0.0)
    e = (after - before) * dur
    if keep_on:
        busy_until = max(ends.get(node_id, ()), default=-math.inf)
        if n:
            busy_until = max(busy_until, 2.0 * now_s - 0.0)
        e += t.idle_w * max(0.0, now_s + dur - max(busy_until, now_s))
    return e


@FAST
@given(types=cluster_st, prefill=tasks_st, task=tasks_st, keep_on=st.booleans())
def test_lambda_zero_no_budget_picks_lowest_energy(types, prefill, task, keep_on):
    ctl = Controller(TYPES, ControllerConfig(lambda_j_per_s=0.0, scale_down=keep_on, alternatives=0))
    node_type = {}
    for i, t in enumerate(types):
        ctl.add_node(f"n{i}", t)
        node_type[f"n{i}"] = t
    ends: dict[str, list[float]] = {}
    for j, (c, g, d) in enumerate(prefill):
        dec = ctl.decide(TaskRequest(f"p{j}", f"grp{j % 3}", cpus=c, gpus=g, duration_hint_s=d), now_s=0.0)
        if dec.action == Action.PLACE:  # placed at 0 s, never started: predicted to end at d / speed
            ends.setdefault(dec.node_id, []).append(d / BY_NAME[node_type[dec.node_id]].speed)
    c, g, d = task[0]
    now = 1.0
    req = TaskRequest("x", "new-group", cpus=c, gpus=g, duration_hint_s=d)
    energies = {nid: _marginal_energy(ctl, nid, req, now, keep_on, ends, node_type) for nid in node_type}
    best = min(energies.values())
    dec = ctl.decide(req, now_s=now)
    if best == math.inf:
        assert dec.action == Action.DEFER
    else:
        assert dec.action == Action.PLACE
        assert energies[dec.node_id] == pytest.approx(best, rel=1e-9, abs=1e-6)
        assert dec.predicted_energy_j == pytest.approx(best, rel=1e-9, abs=1e-6)


@FAST
@given(t_cool=st.floats(250.0, 340.0), dt=st.floats(0.5, 60.0), lam=st.sampled_from([0.0, 20.0]),
       budget=st.sampled_from([None, 5000.0]), which=st.sampled_from(["big", "small", "gpu"]))
def test_hotter_node_loses_a_tie(t_cool, dt, lam, budget, which):
    ctl = Controller(TYPES, ControllerConfig(lambda_j_per_s=lam, power_budget_w=budget))
    ctl.add_node("hot", which)
    ctl.add_node("cool", which)
    ctl.observe_node("hot", now_s=0.0, temperature_k=t_cool + dt)
    ctl.observe_node("cool", now_s=0.0, temperature_k=t_cool)
    dec = ctl.decide(TaskRequest("t", "g", cpus=1.0, duration_hint_s=5.0), now_s=0.0)
    assert dec.action == Action.PLACE and dec.node_id == "cool"


def test_missing_temperature_counts_as_reference():
    ctl = Controller(TYPES, ControllerConfig(lambda_j_per_s=0.0))
    ctl.add_node("a", "big")
    ctl.add_node("b", "big")
    ctl.observe_node("a", now_s=0.0, temperature_k=ctl.config.t_ref_k + 1.0)
    # b has no reading: it counts as T_ref, cooler than a
    assert ctl.decide(TaskRequest("t", "g", cpus=1.0), now_s=0.0).node_id == "b"


def test_packs_onto_busy_efficient_node():
    ctl = Controller(TYPES, ControllerConfig(lambda_j_per_s=0.0))
    for i in range(3):
        ctl.add_node(f"b{i}", "big")
    first = ctl.decide(TaskRequest("t0", "g", cpus=2.0, duration_hint_s=100.0), now_s=0.0)
    # a shorter task inside the first one's window costs no extra idle energy on its node
    second = ctl.decide(TaskRequest("t1", "g", cpus=2.0, duration_hint_s=10.0), now_s=1.0)
    assert second.node_id == first.node_id


def test_node_cap_is_respected():
    cap = BIG.idle_w + 60.0  # about two 1-CPU tasks (21.5 W each on this curve)
    ctl = Controller(TYPES, ControllerConfig(node_caps_w={"a": cap}, lambda_j_per_s=0.0))
    ctl.add_node("a", "big")
    placed = 0
    for j in range(40):
        d = ctl.decide(TaskRequest(f"t{j}", "g", cpus=1.0), now_s=0.0)
        if d.action == Action.PLACE:
            placed += 1
            assert node_power_w(ctl, "a") <= cap
    assert 0 < placed < 32


def test_measured_power_at_cap_blocks_the_node():
    ctl = Controller(TYPES, ControllerConfig(node_caps_w={"a": 300.0}, lambda_j_per_s=0.0, scale_down=False,
                                             calibrate=False))
    ctl.add_node("a", "big")
    ctl.add_node("b", "big")
    ctl.observe_node("b", now_s=0.0, temperature_k=330.0)  # b is hotter: a wins while allowed
    assert ctl.decide(TaskRequest("t0", "g", cpus=1.0), now_s=0.0).node_id == "a"
    ctl.observe_node("a", now_s=1.0, power_w=305.0)  # the model says ~130 W; the meter says over
    assert ctl.decide(TaskRequest("t1", "g", cpus=1.0), now_s=1.0).node_id == "b"
    ctl.observe_node("a", now_s=2.0, power_w=200.0)
    assert ctl.decide(TaskRequest("t2", "g", cpus=1.0), now_s=2.0).node_id == "a"


@FAST
@given(lam=st.floats(0.0, 100.0), mu=st.floats(0.0, 1000.0), temp=st.floats(260.0, 360.0),
       frac=st.floats(0.3, 1.0), cpus=st.sampled_from([1.0, 2.0, 8.0]), d=st.floats(1.0, 100.0))
def test_reported_cost_is_the_formula(lam, mu, temp, frac, cpus, d):
    budget = BIG.idle_w + frac * (BIG.peak_w - BIG.idle_w) + 50.0
    ctl = Controller(TYPES, ControllerConfig(lambda_j_per_s=lam, mu=mu, power_budget_w=budget))
    ctl.add_node("a", "big")
    ctl.observe_node("a", now_s=0.0, temperature_k=temp)
    dec = ctl.decide(TaskRequest("t", "g", cpus=cpus, duration_hint_s=d), now_s=0.0)
    before = BIG.idle_w
    after = BIG.power_w(cpus / BIG.cpus)
    energy = (after - before) * d + BIG.idle_w * d  # dynamic + keep-on (the node was empty)
    b_eff = budget * (1.0 - ctl.config.target_headroom)
    if after >= b_eff:
        assert dec.action == Action.DEFER
        return
    expected = energy * temp / ctl.config.t_ref_k + mu * barrier(after, b_eff) + lam * d
    assert dec.action == Action.PLACE
    assert dec.cost == pytest.approx(expected, rel=1e-9, abs=1e-6)
    assert dec.predicted_energy_j == pytest.approx(energy, rel=1e-9)
