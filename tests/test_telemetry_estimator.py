"""Model-based source against psutil on real busy processes."""
from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest

from tao_core.power.curve import PowerCurve
from tao_core.telemetry.base import SourceKind
from tao_core.telemetry.estimator import TDP_UNCERTAINTY, ModeledGpu, ModeledSource

CURVE = PowerCurve((50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150))
SPIN = "import time\nend = time.time() + 30\nwhile time.time() < end: pass\n"


def _cpu_s(pid: int) -> float:
    p = psutil.Process(pid)
    total = sum(c.cpu_times().user + c.cpu_times().system for c in p.children(recursive=True))
    t = p.cpu_times()
    return total + t.user + t.system


@pytest.fixture
def spinner_in_child():
    """A parent process that does nothing but wait for a spinning child."""
    parent = subprocess.Popen(
        [sys.executable, "-c", f"import subprocess, sys; subprocess.run([sys.executable, '-c', {SPIN!r}])"]
    )
    deadline = time.time() + 10
    while not psutil.Process(parent.pid).children() and time.time() < deadline:
        time.sleep(0.05)
    yield parent.pid
    for c in psutil.Process(parent.pid).children(recursive=True):
        c.kill()
    parent.kill()
    parent.wait()


def test_process_set_follows_psutil_cpu_time_of_children(spinner_in_child):
    pid = spinner_in_child
    src = ModeledSource(CURVE, cpus=1, processes=lambda: [pid], name="vnode")
    c0, t0 = _cpu_s(pid), time.monotonic()
    r0 = src.read()
    time.sleep(1.0)
    r1 = src.read()
    c1, t1 = _cpu_s(pid), time.monotonic()
    expected_util = (c1 - c0) / (t1 - t0)
    util = src.last_utilization
    assert util == pytest.approx(expected_util, abs=0.1)
    assert util > 0.05  # the spinning child is counted through its idle parent
    dt = r1.t_s - r0.t_s
    e = r1.domains["vnode"].energy_j - r0.domains["vnode"].energy_j
    assert e == pytest.approx(CURVE.power_w(util) * dt, rel=1e-9)
    d = r1.domains["vnode"]
    assert d.source is SourceKind.MODELED and "process set" in d.method


def test_idle_process_set_draws_curve_idle():
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.3)  # let the interpreter finish starting
        src = ModeledSource(CURVE, cpus=2, processes=[sleeper.pid])
        r0 = src.read()
        time.sleep(0.3)
        r1 = src.read()
        assert src.last_utilization < 0.05
        p = (r1.domains["node"].energy_j - r0.domains["node"].energy_j) / (r1.t_s - r0.t_s)
        assert 50 <= p < 51
    finally:
        sleeper.kill()
        sleeper.wait()


def test_machine_wide_matches_psutil_cpu_times():
    src = ModeledSource(CURVE)
    ct0 = psutil.cpu_times()
    r0 = src.read()
    time.sleep(0.5)
    r1 = src.read()
    ct1 = psutil.cpu_times()
    busy = lambda c: sum(c) - c.idle - getattr(c, "iowait", 0.0)  # noqa: E731
    expected = (busy(ct1) - busy(ct0)) / ((r1.t_s - r0.t_s) * psutil.cpu_count())
    assert src.last_utilization == pytest.approx(min(max(expected, 0), 1), abs=0.1)
    assert "machine-wide" in r1.domains["node"].method


def test_tdp_constructor_and_modeled_gpu():
    util = iter([0.0, 1.0, 1.0])
    gpu = ModeledGpu("gpu-0", 50.0, 250.0, lambda: next(util))
    t = [0.0]
    src = ModeledSource.from_tdp(200.0, cpus=4, gpu=gpu, clock=lambda: t[0])
    assert src.uncertainty == TDP_UNCERTAINTY and "TDP 200 W" in src.method
    assert src.power_curve.peak_w == pytest.approx(200.0)
    src.read()  # gpu at 0 % -> 50 W
    t[0] = 2.0
    r = src.read()  # gpu at 100 % -> 250 W, trapezoid over 2 s
    assert r.domains["gpu-0"].energy_j == pytest.approx(300.0)
    assert r.domains["gpu-0"].source is SourceKind.MODELED


def test_bad_arguments():
    with pytest.raises(ValueError, match="cpus"):
        ModeledSource(CURVE, cpus=0)
    with pytest.raises(ValueError, match="idle_w"):
        ModeledGpu("g", 100, 50, lambda: 0.0)


def test_descendants_are_the_process_tree_psutil_finds():
    """The /proc walk that spares a full process scan on every sample finds the same tree."""
    from tao_core.telemetry.estimator import descendants

    kids = [subprocess.Popen(["sh", "-c", "sleep 30 & sleep 30 & wait"]) for _ in range(2)]
    try:
        me = psutil.Process()
        deadline = time.time() + 10
        while len(me.children(recursive=True)) < 6 and time.time() < deadline:
            time.sleep(0.05)
        want = sorted(p.pid for p in me.children(recursive=True))
        assert len(want) >= 6
        assert sorted(p.pid for p in descendants(me)) == want
    finally:
        for k in kids:
            for c in psutil.Process(k.pid).children(recursive=True):
                c.kill()
            k.kill()
            k.wait()
