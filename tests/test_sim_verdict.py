"""The verdict per baseline: energy at equal or better service, else Pareto dominance by
a point of TAO's lambda sweep; and the scenario goals."""
from __future__ import annotations

import pytest

from tao_core.sim.verdict import BEATEN, DOMINATED, INCOMPLETE, NOT_BEATEN, goals, judge, undecided, verdicts


def run(energy: float, p95: float, done: int = 10, total: int = 10, **kw) -> dict:
    return {"energy_j": energy, "wait_p95_s": p95, "tasks_completed": done, "tasks_total": total, **kw}


def test_less_energy_at_a_wait_no_worse_plus_one_second_beats():
    assert judge("b", run(100.0, 10.0), run(90.0, 11.0)).outcome == BEATEN
    v = judge("b", run(100.0, 10.0), run(90.0, 11.5))
    assert v.outcome == NOT_BEATEN and v.energy_ratio == pytest.approx(0.9)


def test_a_baseline_that_trades_waits_for_energy_needs_a_dominating_sweep_point():
    dask = run(100.0, 900.0)
    tao = run(105.0, 80.0)  # less wait, more energy: neither wins outright
    assert judge("dask", dask, tao).outcome == NOT_BEATEN
    sweep = {"2000": run(99.0, 60.0), "0": run(95.0, 950.0), "200": run(98.0, 100.0)}
    v = judge("dask", dask, tao, sweep)
    # lambda 0 has less energy but more wait; of the two that dominate, the least energy
    assert v.outcome == DOMINATED and v.by == "tao lambda=200" and v.energy_ratio == pytest.approx(0.98)


def test_incomplete_baselines_and_runs():
    assert judge("b", run(10.0, 0.0, done=9), run(100.0, 50.0)).outcome == INCOMPLETE
    # a TAO run that left tasks undone beats nothing
    assert judge("b", run(100.0, 10.0), run(50.0, 0.0, done=9)).outcome == NOT_BEATEN


def test_deadline_tasks_are_judged_by_their_deadlines_not_their_waits():
    base = run(100.0, 30.0, service_wait_p95_s=30.0, deadlines_missed=0)
    tao = run(90.0, 600.0, service_wait_p95_s=25.0, deadlines_missed=0)  # deadline tasks waited
    assert judge("b", base, tao).outcome == BEATEN
    late = run(90.0, 600.0, service_wait_p95_s=25.0, deadlines_missed=3)
    assert judge("b", base, late).outcome == NOT_BEATEN


def test_goals_and_undecided():
    pol = {"ray-default": run(300.0, 0.0), "ray-default-autoscale": run(120.0, 20.0), "dask-adaptive": run(100.0, 900.0),
           "tao": run(96.0, 21.0)}
    assert undecided(pol, {}) == ["ray-default"]
    g = goals(pol, {})
    assert g["best_baseline"] == "dask-adaptive" and g["lowest"] and not g["margin_met"]
    assert g["wait_met"] and not g["pareto_met"]
    g = goals(pol, {"200": run(290.0, 0.5)})
    assert g["pareto_met"]
    assert [v.outcome for v in verdicts(pol, {"200": run(290.0, 0.5)})] == [DOMINATED, BEATEN, BEATEN]
