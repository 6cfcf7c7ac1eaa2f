"""The controller's levers, each on its own: the wake charge, boots sized by the
energy-delay trade, packing by the curves, predictive scaling from the arrival forecast,
and deferrable work waiting for nodes that are on anyway."""
from __future__ import annotations

import math
import random

import numpy as np
import pytest

from control_fixtures import BIG, SMALL, TYPES
from tao_core.control import Action, Controller, ControllerConfig, NodeState, TaskRequest
from tao_core.control.forecast import ArrivalForecast


def _req(tid: str, cpus: float = 1.0, dur: float = 10.0, **kw) -> TaskRequest:
    return TaskRequest(tid, kw.pop("group", "g"), cpus=cpus, duration_hint_s=dur, **kw)


# ---------------------------------------------------------------- waking
def test_waking_a_node_costs_its_boot_and_its_idle_tail_whatever_share_the_task_uses():
    ctl = Controller(TYPES, ControllerConfig(alternatives=3))
    ctl.add_node("b0", "big", state=NodeState.OFF)
    ctl.add_node("s0", "small")
    d = ctl.decide(_req("t", cpus=1.0, dur=10.0), now_s=0.0)
    # a 1-CPU task of 10 s: the small node that is on, not a wake of the big one for 1/32 of it
    assert d.action == Action.PLACE and d.node_id == "s0"
    woken = next(a for a in d.alternatives if a.node_id == "b0")
    tail = min(BIG.boot_energy_j / (BIG.idle_w - BIG.off_w), ctl.config.boot_amortize_s)
    wake = BIG.boot_energy_j + (BIG.idle_w - BIG.off_w) * tail
    dyn = (BIG.power_w(1 / 32) - BIG.idle_w) * 10.0
    assert woken.energy_j == pytest.approx(wake + dyn + BIG.idle_w * 10.0)


# ---------------------------------------------------------------- boots sized by lambda
def _queue(lam: float, size_boots: bool = True) -> int:
    ctl = Controller([SMALL], ControllerConfig(lambda_j_per_s=lam, size_boots=size_boots))
    ctl.add_node("on", "small")
    for i in range(12):
        ctl.add_node(f"s{i}", "small", state=NodeState.OFF)
    for k in range(8):  # the node that is on is full
        ctl.decide(_req(f"r{k}", dur=60.0), now_s=0.0)
    pending = [_req(f"p{j}", dur=60.0) for j in range(48)]
    return len(ctl.plan_scaling(now_s=1.0, pending=pending).power_on)


def test_boots_for_a_queue_follow_the_energy_delay_trade():
    few, some, all_ = _queue(0.01), _queue(20.0), _queue(1e6)
    assert few < some < all_
    assert all_ == _queue(20.0, size_boots=False) == 6  # 48 one-CPU tasks on 8-CPU nodes
    assert few >= 0


def test_a_queue_boots_a_more_efficient_node_even_when_its_waits_are_cheap():
    from tao_core.control import NodeType
    from tao_core.power.curve import PowerCurve
    old = NodeType("old", cpus=8, power_curve=PowerCurve.from_tdp(300.0), boot_s=30.0, off_w=2.0)
    new = NodeType("new", cpus=32, power_curve=PowerCurve.from_tdp(400.0), boot_s=60.0, off_w=5.0)

    def boots(off_type: NodeType) -> tuple[str, ...]:
        ctl = Controller([old, new], ControllerConfig(lambda_j_per_s=0.01))
        ctl.add_node("on", "old")
        ctl.add_node("off", off_type.name, state=NodeState.OFF)
        for k in range(8):  # the node that is on is full
            ctl.decide(_req(f"r{k}", dur=60.0), now_s=0.0)
        return ctl.plan_scaling(now_s=1.0, pending=[_req(f"p{j}", dur=60.0) for j in range(4)]).power_on

    # the waits are worth almost nothing at 0.01 J/s: a node like the one on is not woken for them,
    # a node that runs the same work on a third of the watts per CPU is
    assert boots(old) == ()
    assert boots(new) == ("off",)


def test_a_task_no_node_that_is_on_can_hold_gets_a_boot_whatever_lambda():
    ctl = Controller(TYPES, ControllerConfig(lambda_j_per_s=0.0))
    ctl.add_node("s0", "small")
    ctl.add_node("b0", "big", state=NodeState.OFF)
    plan = ctl.plan_scaling(now_s=0.0, pending=[_req("wide", cpus=16.0)])
    assert plan.power_on == ("b0",)


# ---------------------------------------------------------------- packing by the curves
def _idle_pair(spare: float, pack: bool) -> tuple[str, ...]:
    ctl = Controller(TYPES, ControllerConfig(idle_timeout_s=0.0, spare_cpus=spare, scale_down_band=0.0,
                                             pack_efficient=pack, predictive_scaling=False))
    ctl.add_node("b0", "big")
    ctl.add_node("s0", "small")
    return ctl.plan_scaling(now_s=1.0).power_off


def test_packing_keeps_the_node_that_carries_the_demand_on_the_fewest_watts():
    # 4 CPUs of demand: the small node at half load draws 57 W, the big one at 1/8 180 W
    assert _idle_pair(4.0, pack=True) == ("b0",)
    # without packing the least efficient at full load goes first and the big node stays
    assert _idle_pair(4.0, pack=False) == ("s0",)
    # 30 CPUs: only the big node holds them
    assert _idle_pair(30.0, pack=True) == ("s0",)


def _two_busy(dur_s: float, pack: bool = True) -> tuple[str, ...]:
    """Two big nodes that are on: ``a`` with 16 CPUs of work, ``b`` with 2 CPUs (each
    ``dur_s`` long); the plan's drains."""
    ctl = Controller([BIG], ControllerConfig(predictive_scaling=False, idle_timeout_s=1e9, pack_efficient=pack,
                                             spare_horizon_s=0.0))
    ctl.add_node("a", "big")
    ctl.add_node("b", "big", state=NodeState.OFF)
    assert ctl.decide(_req("wide", cpus=16.0, dur=dur_s), now_s=0.0).node_id == "a"
    ctl.set_node_state("a", NodeState.DRAINING, now_s=0.0)  # steer the next task to b
    ctl.set_node_state("b", NodeState.ON, now_s=0.0)
    assert ctl.decide(_req("thin", cpus=2.0, dur=dur_s), now_s=0.0).node_id == "b"
    ctl.set_node_state("a", NodeState.ON, now_s=0.0)
    return ctl.plan_scaling(now_s=1.0).drain


def test_curve_drain_empties_a_node_whose_load_the_others_carry_on_fewer_watts():
    # 2 CPUs on a big node draw its idle 106 W plus the curve's steep first tenth; on the
    # node at half load they add about 16 W: drain it (it is 2 of 32 CPUs, far from the
    # old rule's "under 50 %" being the reason)
    assert len(_two_busy(20.0)) == 1
    # work that runs past the break-even time keeps the node on anyway: no drain
    assert _two_busy(1e4) == ()


# ---------------------------------------------------------------- the arrival forecast
def _hourly(hours: int, rng: random.Random, burst_at: float = 1800.0) -> list[tuple[float, float]]:
    ev = []
    for h in range(hours):
        start = h * 3600.0 + burst_at + rng.uniform(-30.0, 30.0)
        ev += [(start + rng.uniform(0.0, 60.0), 1.0) for _ in range(100)]
    t = 0.0
    while t < hours * 3600.0:
        t += rng.expovariate(1 / 60.0)
        ev.append((t, 1.0))
    return sorted(ev)


def test_forecast_learns_the_hour_of_a_cron_job_and_not_of_memoryless_bursts():
    rng = random.Random(3)
    f = ArrivalForecast(eval_window_s=60.0)
    for t, c in _hourly(10, rng):
        f.note(t, c)
    assert f.method() == "hourly"
    assert f.quantile(10 * 3600.0 + 900.0, 240.0, 0.8)[0] < 15.0  # a quarter past: quiet
    assert f.quantile(10 * 3600.0 + 1800.0 - 150.0, 240.0, 0.8)[0] > 50.0  # the burst is due
    g = ArrivalForecast(eval_window_s=60.0)
    t = 0.0
    while t < 10 * 3600.0:  # bursts at exponential gaps: no phase to learn
        t += rng.expovariate(1 / 1200.0)
        for _ in range(100):
            g.note(t + rng.uniform(0.0, 60.0), 1.0)
    assert g.method() in ("recent", "all")


def test_predictive_scaling_boots_ahead_of_a_forecast_burst_and_powers_off_in_the_quiet():
    rng = random.Random(5)
    # on its own: without size_boots, which would boot only part of a burst ahead
    ctl = Controller([SMALL], ControllerConfig(lambda_j_per_s=20.0, size_boots=False))
    for i in range(20):
        ctl.add_node(f"s{i}", "small", state=NodeState.ON if i == 0 else NodeState.OFF)
    for t, c in _hourly(8, rng):  # history: arrivals as they were asked for
        ctl.forecast.note(t, c)
    assert ctl.forecast.method() == "hourly"
    # a boot (30 s) before the burst is due: just in time
    ahead = ctl.plan_scaling(now_s=8 * 3600.0 + 1800.0 - 20.0)
    assert len(ahead.power_on) >= 3 and "forecast" in ahead.reason
    quiet = Controller([SMALL], ControllerConfig(lambda_j_per_s=20.0))
    for i in range(4):
        quiet.add_node(f"s{i}", "small")
    for t, c in _hourly(8, rng):
        quiet.forecast.note(t, c)
    # a quarter past the hour, nothing due for the break-even time: idle nodes go at once
    # (the legacy rule would keep them until their idle timeout)
    now = 8 * 3600.0 + 900.0
    for i in range(4):
        quiet.set_node_state(f"s{i}", NodeState.ON, now_s=now - 1.0)
    plan = quiet.plan_scaling(now_s=now)
    assert len(plan.power_off) >= 3


def test_early_power_offs_stop_for_a_type_once_boots_keep_undoing_them():
    from tao_core.control.scaling import EarlyOffRecord
    rec = EarlyOffRecord(2, halflife=20.0, prior=3.0)
    horizon = np.array([100.0, 100.0])
    threshold = np.array([0.3, 0.3])
    assert rec.ok(0.0, horizon, threshold).all()  # no record yet: trusted
    t = 0.0
    for _ in range(10):  # type 0: every early power-off is followed by a boot within break-even
        rec.powered_off(0, t)
        rec.booted(0, t + 50.0, 100.0)
        rec.powered_off(1, t)  # type 1: no boot follows within its break-even time
        t += 500.0
    ok = rec.ok(t, horizon, threshold)
    assert not ok[0] and ok[1]
    assert rec.total[1] == pytest.approx(rec.total[0], rel=0.2)  # type 1's were settled as right
    # a boot with no early power-off before it is no evidence against early power-offs
    before = rec.wrong[1]
    rec.booted(1, t + 10.0, 100.0)
    assert rec.wrong[1] == before


def test_without_history_the_forecast_is_not_used():
    ctl = Controller([SMALL], ControllerConfig())
    for i in range(3):
        ctl.add_node(f"s{i}", "small")
    # idle since 0: not past the idle timeout at 1 s, and no forecast yet
    assert ctl.plan_scaling(now_s=1.0).power_off == ()


# ---------------------------------------------------------------- deferrable work
def test_deferrable_task_waits_for_a_node_that_is_on_anyway_then_runs_in_its_window():
    ctl = Controller([BIG], ControllerConfig())
    ctl.add_node("b0", "big")
    job = TaskRequest("late-ok", "batch", cpus=2.0, duration_hint_s=60.0, deadline_s=4000.0)
    d = ctl.decide(job, now_s=0.0)
    latest = 4000.0 - 60.0 * (1 + ctl.config.carbon_slack) - BIG.boot_s
    assert d.action == Action.DEFER and d.defer_until_s == pytest.approx(latest)
    assert ctl.window_waiting("late-ok", 0.0)
    # not demand to boot for while it waits
    ctl.add_node("b1", "big", state=NodeState.OFF)
    assert ctl.plan_scaling(now_s=1.0, pending=[job]).power_on == ()
    # other work keeps the node on for longer than the job: it runs in that window
    busy = ctl.decide(_req("busy", cpus=8.0, dur=600.0), now_s=10.0)
    assert busy.action == Action.PLACE and busy.node_id == "b0"
    d = ctl.decide(job, now_s=20.0)
    assert d.action == Action.PLACE and d.node_id == "b0"


def test_deferrable_task_runs_at_its_latest_start_and_the_switch_turns_it_off():
    ctl = Controller([BIG], ControllerConfig())
    ctl.add_node("b0", "big")
    job = TaskRequest("j", "batch", cpus=2.0, duration_hint_s=60.0, deadline_s=1000.0)
    latest = ctl.decide(job, now_s=0.0).defer_until_s
    assert ctl.decide(job, now_s=latest).action == Action.PLACE
    off = Controller([BIG], ControllerConfig(defer_to_on_windows=False))
    off.add_node("b0", "big")
    assert off.decide(job, now_s=0.0).action == Action.PLACE
    # without a known run time no deadline can be promised: it runs now
    unknown = TaskRequest("u", "new", cpus=1.0, deadline_s=1e6)
    assert ctl.decide(unknown, now_s=1.0).action == Action.PLACE


def test_next_plan_time_is_the_earliest_idle_timeout():
    ctl = Controller([BIG], ControllerConfig(idle_timeout_s=50.0))
    ctl.add_node("b0", "big", now_s=10.0)
    ctl.add_node("b1", "big", now_s=0.0)
    d = ctl.decide(_req("x", cpus=1.0, dur=100.0), now_s=0.0)
    other = "b1" if d.node_id == "b0" else "b0"
    assert ctl.next_plan_s(now_s=1.0) == pytest.approx(60.0 if other == "b0" else 50.0)
    assert math.isfinite(ctl.next_plan_s(now_s=1.0))
