"""The controller's carbon-aware time shifting and its GPU power-limit choice."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from control_fixtures import GPU, SMALL
from tao_core.carbon import ConstantCarbon, SeriesCarbon
from tao_core.control import Action, Controller, ControllerConfig, TaskRequest

# dirty until t=1000 s, clean from 1000 to 2000 s, dirty again after
SIGNAL = SeriesCarbon([0, 1000, 2000], [500, 100, 450])


def ctl_with(signal, **cfg) -> Controller:
    # carbon shifting on its own: a deadline with room would also let a task wait for a node
    # that is on anyway (tested in test_control_levers.py)
    cfg.setdefault("defer_to_on_windows", False)
    ctl = Controller([SMALL], ControllerConfig(**cfg))
    ctl.add_node("s0", "small")
    ctl.set_carbon_signal(signal)
    return ctl


def test_deferrable_task_waits_for_clean_power() -> None:
    ctl = ctl_with(SIGNAL)
    task = TaskRequest("t", "g", cpus=1, duration_hint_s=80, deadline_s=3000)
    d = ctl.decide(task, now_s=0)
    assert d.action == Action.DEFER and d.defer_until_s == 1000 and d.reason.startswith("carbon")
    again = ctl.decide(task, now_s=1000)
    assert again.action == Action.PLACE


def test_no_shift_without_deadline_room_or_gain() -> None:
    ctl = ctl_with(SIGNAL)
    # the deadline leaves no room to wait for t=1000 (run 100 s at speed 0.8, slack, no boot)
    tight = TaskRequest("a", "g", cpus=1, duration_hint_s=80, deadline_s=1050)
    assert ctl.decide(tight, now_s=0).action == Action.PLACE
    assert ctl.decide(TaskRequest("b", "g", cpus=1, duration_hint_s=80), now_s=0).action == Action.PLACE
    assert ctl.decide(TaskRequest("c", "g", cpus=1, duration_hint_s=80, deadline_s=3000, deferrable=False),
                      now_s=0).action == Action.PLACE
    flat = ctl_with(ConstantCarbon(300))
    assert flat.decide(TaskRequest("d", "g", cpus=1, duration_hint_s=80, deadline_s=9000), now_s=0).action == Action.PLACE


@settings(max_examples=60, deadline=None)
@given(st.floats(0, 2500), st.floats(10, 400), st.floats(0, 4000))
def test_shift_never_predicts_a_missed_deadline(now: float, run: float, room: float) -> None:
    ctl = ctl_with(SIGNAL)
    task = TaskRequest("t", "g", cpus=1, duration_hint_s=run * SMALL.speed, deadline_s=now + run + room)
    d = ctl.decide(task, now_s=now)
    if d.action == Action.DEFER:
        assert d.defer_until_s + run <= task.deadline_s


def test_gpu_power_limit_learned_per_group_and_recorded() -> None:
    events = []
    ctl = Controller([GPU], ControllerConfig(), event_sink=events.append)
    ctl.add_node("g0", "gpu")
    assert ctl.gpu_power_limit("train", "g0", now_s=0) is None  # not enabled
    curve = {300: (10.0, 290.0), 250: (10.4, 240.0), 200: (12.0, 195.0)}
    ctl.enable_gpu_power_limits("gpu", curve)
    chosen = []
    for k in range(20):
        lim = ctl.gpu_power_limit("train", "g0", now_s=k)
        t, p = curve[int(lim)]
        ctl.observe_gpu_work("train", "g0", limit_w=lim, time_s=t, energy_j=t * p)
        chosen.append(lim)
    assert chosen[:3] == [300, 250, 200] and chosen[-1] == 250  # 200 W is 20 % slower
    assert any(e.kind == "gpu-limit" and e.detail["limit_w"] == 250 for e in events)
    with pytest.raises(Exception, match="unknown type"):
        ctl.enable_gpu_power_limits("nope", [100])


def test_gpu_power_limit_fits_budget_headroom() -> None:
    # budget leaves little room: the learner must not pick a limit whose measured draw exceeds the cap
    ctl = Controller([GPU], ControllerConfig(power_budget_w=GPU.idle_w + 160))
    ctl.add_node("g0", "gpu")
    curve = {300: (10.0, 290.0), 250: (10.4, 240.0), 150: (10.9, 140.0)}
    ctl.enable_gpu_power_limits("gpu", curve)
    chosen = []
    for k in range(12):
        lim = ctl.gpu_power_limit("train", "g0", now_s=k)
        t, p = curve[int(lim)]
        ctl.observe_gpu_work("train", "g0", limit_w=lim, time_s=t, energy_j=t * p)
        chosen.append(lim)
    assert set(chosen) == {150}  # 300 W and 250 W draw more than idle + 160 W of headroom
