"""The online GPU power-limit learner."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tao_core.control.power_limits import PowerLimitLearner

# time per unit (s) and average power (W) at each limit, like one of the Zeus NSDI'23 V100 rows
CURVE = {100: (11.28, 86.9), 125: (9.22, 109.3), 150: (8.49, 131.0), 175: (8.21, 137.9),
         200: (7.84, 159.2), 225: (7.67, 178.4), 250: (7.61, 187.7)}


def run(learner: PowerLimitLearner, units: int, cap: float | None = None) -> list[float]:
    chosen = []
    for _ in range(units):
        lim = learner.next_limit("g", power_cap_w=cap)
        t, p = CURVE[int(lim)]
        learner.observe("g", lim, t, t * p)
        chosen.append(lim)
    return chosen


def test_explores_from_the_top_and_settles_on_least_energy_within_slowdown() -> None:
    learner = PowerLimitLearner(CURVE, max_slowdown=0.10)
    chosen = run(learner, 40)
    assert chosen[:3] == [250, 225, 200]
    # 175 W: 8.21/7.61 = 7.9 % slower, least energy of those within 10 %; 150 W is 11.6 % slower
    assert learner.best("g") == 175
    assert chosen[-1] == 175
    # exploration stopped at the first limit beyond the bound: 125 W and 100 W were never run
    assert 125 not in chosen and 100 not in chosen


def test_no_slowdown_allowed_keeps_the_default() -> None:
    learner = PowerLimitLearner(CURVE, max_slowdown=0.0)
    run(learner, 20)
    assert learner.best("g") == 250


def test_lambda_trades_energy_for_time() -> None:
    learner = PowerLimitLearner(CURVE, max_slowdown=1.0, lambda_j_per_s=1e4)
    run(learner, 30)
    assert learner.best("g") == 250  # time dominates the cost


def test_power_cap_is_respected() -> None:
    learner = PowerLimitLearner(CURVE, max_slowdown=0.5)
    chosen = run(learner, 30, cap=140.0)
    assert all(CURVE[int(c)][1] <= 140.0 for c in chosen[-10:])
    assert max(chosen) <= 175


def test_bad_input_named() -> None:
    with pytest.raises(ValueError, match="limits_w"):
        PowerLimitLearner([])
    learner = PowerLimitLearner([100, 200])
    with pytest.raises(ValueError, match="not one of"):
        learner.observe("g", 150, 1.0, 1.0)
    with pytest.raises(ValueError, match="time_s must be > 0"):
        learner.observe("g", 100, 0.0, 1.0)


def test_memory_bounded() -> None:
    learner = PowerLimitLearner([100, 200], max_groups=8)
    for i in range(100):
        learner.observe(f"g{i}", 200, 1.0, 200.0)
    assert len(learner._groups) == 8


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(1.0, 20.0), st.floats(50.0, 300.0)), min_size=2, max_size=8))
def test_choice_never_slower_than_bound_without_noise(points: list[tuple[float, float]]) -> None:
    limits = list(range(100, 100 + 25 * len(points), 25))
    # physical shape: lower limits are never faster
    times = sorted((t for t, _ in points), reverse=True)
    curve = dict(zip(limits, zip(times, (p for _, p in points))))
    learner = PowerLimitLearner(limits, max_slowdown=0.10)
    for _ in range(4 * len(limits)):
        lim = learner.next_limit("g")
        t, p = curve[int(lim)]
        learner.observe("g", lim, t, t * p)
    best = learner.best("g")
    assert curve[int(best)][0] <= 1.10 * curve[max(limits)][0] + 1e-9
