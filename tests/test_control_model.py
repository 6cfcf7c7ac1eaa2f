"""Node model calibration and task predictions."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from control_fixtures import TYPES
from tao_core.control import Controller, ControllerConfig, TaskRequest
from tao_core.control.model import NodeModel, isotonic_increasing
from tao_core.control.predict import TaskPredictor


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-100, 100), min_size=1, max_size=15))
def test_isotonic_is_monotone_and_keeps_the_mean(ys):
    y = np.array(ys)
    out = isotonic_increasing(y, np.ones_like(y))
    assert np.all(np.diff(out) >= -1e-9)
    assert out.mean() == pytest.approx(y.mean(), abs=1e-6)


def test_fit_recovers_a_curve_30_percent_above_declared():
    big = TYPES[0]
    m = NodeModel(big)
    rng = np.random.default_rng(0)
    true = np.array(big.power_curve.points_w) * 1.3
    for u in rng.uniform(0, 1, 400):
        m.add_sample(u, float(np.interp(u, np.linspace(0, 1, 11), true)) + rng.normal(0, 2.0))
    fitted = m.fit()
    assert np.all(np.diff(fitted) >= 0)
    assert np.allclose(fitted, true, rtol=0.03)
    snap = m.snapshot()
    assert snap.declared_w == big.power_curve.points_w and snap.samples == 400
    assert snap.rms_error_w < 3.0


def test_fit_without_samples_at_high_load_scales_the_declared_curve():
    big = TYPES[0]
    m = NodeModel(big)
    for u in np.linspace(0, 0.3, 50):
        m.add_sample(u, 0.8 * big.power_curve.power_w(u))
    fitted = m.fit()
    assert fitted[-1] == pytest.approx(0.8 * big.power_curve.peak_w, rel=0.1)


def test_controller_calibrates_from_node_telemetry():
    ctl = Controller(TYPES, ControllerConfig(calibration_every=10))
    ctl.add_node("a", "big")
    big = TYPES[0]
    for k in range(200):
        u = (k % 11) / 10
        ctl.observe_node("a", now_s=float(k), power_w=1.3 * big.power_curve.power_w(u), utilization=u)
    snap = ctl.fitted_models()["big"]
    assert np.allclose(snap.fitted_w, np.array(big.power_curve.points_w) * 1.3, rtol=0.02)
    assert ctl.modeled_power_w() == pytest.approx(1.3 * big.idle_w, rel=0.02)


def test_predictor_cold_start_and_learning():
    p = TaskPredictor([1.0, 2.0], default_duration_s=10.0, alpha=0.5, evidence=10.0)
    dur, edur = p.predict("g")
    assert list(dur) == [10.0, 5.0] and list(edur) == [10.0, 5.0]
    assert list(p.predict("g", 4.0)[0]) == [4.0, 2.0]
    p.observe("g", 0, duration_s=20.0, energy_ratio=2.0)
    dur, edur = p.predict("g")
    # one reference time for every type, divided by the speed
    assert dur == pytest.approx([20.0, 10.0])
    assert list(edur / dur) == [2.0, 2.0]
    # a run of 6 s on the speed-2 type: the reference becomes the geometric mean of 20 and
    # 12 s; the type's own factor 6 / 10 counts 1 / (1 + 10) with one run of evidence
    p.observe("g", 1, duration_s=6.0)
    dur, _ = p.predict("g")
    ref = math.sqrt(20.0 * 12.0)
    assert dur[0] == pytest.approx(ref)
    assert dur[1] == pytest.approx(ref / 2 * 0.6 ** (1 / 11))
    # a running mean (of logs) of the first 1/alpha runs, then exponentially weighted
    p.observe("g", 0, duration_s=10.0)
    assert p.mean_s("g") == pytest.approx(math.exp(0.5 * math.log(ref) + 0.5 * math.log(10.0)))


def test_predictor_types_of_equal_speed_agree_until_one_proves_different():
    import random

    rng = random.Random(4)
    p = TaskPredictor([1.0, 1.0], alpha=0.3)
    for _ in range(8):  # a lognormal spread of 50 % around 60 s, on either type
        p.observe("g", rng.randrange(2), duration_s=rng.lognormvariate(math.log(60.0), 0.5))
    dur, _ = p.predict("g")
    assert abs(dur[0] / dur[1] - 1) < 0.15
    for _ in range(200):  # type 1 is really twice as slow
        p.observe("g", 1, duration_s=120.0)
        p.observe("g", 0, duration_s=60.0)
    dur, _ = p.predict("g")
    assert dur[1] / dur[0] == pytest.approx(2.0, rel=0.1)


def test_predictor_is_not_set_by_the_longest_runs_of_a_heavy_tailed_group():
    p = TaskPredictor([1.0])
    for k in range(40):  # most runs take a minute, one in ten takes a day
        p.observe("pods", 0, duration_s=86400.0 if k % 10 == 0 else 60.0)
    # an arithmetic mean would say hours; the geometric one stays near the typical run
    assert p.predict("pods")[0][0] < 600.0


def test_predictor_memory_is_bounded():
    p = TaskPredictor([1.0], max_groups=50)
    for k in range(500):
        p.observe(f"g{k}", 0, duration_s=1.0)
    assert len(p) == 50
    assert p.predict("g499")[0][0] == 1.0
    assert p.predict("g0")[0][0] == p.default_duration_s  # forgotten


def test_controller_learns_run_time_and_energy():
    ctl = Controller(TYPES, ControllerConfig())
    ctl.add_node("a", "big")
    for k in range(30):
        d = ctl.decide(TaskRequest(f"t{k}", "fft", cpus=4.0), now_s=100.0 * k)
        ctl.task_started(d.task_id, now_s=100.0 * k)
        ctl.task_finished(d.task_id, now_s=100.0 * k + 3.0, energy_j=1000.0)
    d = ctl.decide(TaskRequest("x", "fft", cpus=4.0), now_s=5000.0)
    assert d.predicted_duration_s == pytest.approx(3.0)
    ratio = ctl.predictor.correction("fft")[0]
    # the learned correction maps the model's attributed-energy prediction onto 1000 J
    big = TYPES[0]
    model_attr = (big.power_w(4 / 32) - big.idle_w + big.idle_w * 4 / 32) * 3.0
    assert ratio * model_attr == pytest.approx(1000.0, rel=0.01)


def test_refit_updates_every_node_like_the_scalar_path():
    ctl = Controller(TYPES, ControllerConfig(calibration_every=5, calibration_min_interval_s=0.0))
    for i in range(4):
        ctl.add_node(f"b{i}", "big")
    ctl.add_node("g", "gpu")
    for k in range(12):
        ctl.decide(TaskRequest(f"t{k}", "g", cpus=3.0, gpus=1.0 if k == 0 else 0.0), now_s=0.0)
    big = TYPES[0]
    for k in range(10):
        ctl.observe_node("b0", now_s=float(k), power_w=0.9 * big.power_curve.power_w(k / 10), utilization=k / 10)
    nt = ctl.cluster.nodes
    vec = (nt.p_node.copy(), nt.p_static.copy(), nt.p_on.copy(), ctl.modeled_power_w())
    for i in range(nt.n):
        ctl.cluster.refresh_node(i)
    assert np.allclose(vec[0], nt.p_node) and np.allclose(vec[1], nt.p_static) and np.allclose(vec[2], nt.p_on)
    assert vec[3] == pytest.approx(float(nt.p_node.sum()))
    assert ctl.fitted_models()["big"].fitted_w[0] == pytest.approx(0.9 * big.power_curve.idle_w, rel=0.05)
