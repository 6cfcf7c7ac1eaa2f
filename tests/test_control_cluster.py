"""The controller's public cluster view: what scaling reads, checked against the declared
node types; one interpolation kernel; no private reads and no import cycle in the core."""
from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from control_fixtures import BY_NAME, TYPES
from tao_core.control import Controller, ControllerConfig, NodeState, NodeType, TaskRequest
from tao_core.power.curve import BREAKPOINTS, CurveTable, PowerCurve

CONTROL = Path(__file__).resolve().parents[1] / "tao_core" / "control"


def _ctl(**kw) -> Controller:
    ctl = Controller(TYPES, ControllerConfig(**kw))
    for i, (t, s) in enumerate([("big", NodeState.ON), ("small", NodeState.OFF), ("gpu", NodeState.ON),
                                ("big", NodeState.BOOTING), ("small", NodeState.ON)]):
        ctl.add_node(f"n{i}", t, state=s, now_s=0.0)
    return ctl


def test_public_reads_match_the_declared_types():
    ctl = _ctl()
    cv = ctl.cluster
    ids = cv.node_ids
    assert ids == ("n0", "n1", "n2", "n3", "n4") and len(cv) == 5
    types = [cv.node_type(n) for n in ids]
    assert [t.name for t in types] == ["big", "small", "gpu", "big", "small"]
    assert np.allclose(cv.boot_energy_j(), [t.boot_s * t.boot_power_w for t in types])
    assert np.allclose(cv.off_w(), [t.off_w for t in types])
    assert np.allclose(cv.idle_w(), [t.idle_w for t in types])
    assert np.allclose(cv.peak_w(), [t.peak_w for t in types])
    assert np.allclose(cv.speed(), [t.speed for t in types])
    assert np.allclose(cv.efficiency(), [t.peak_w / (t.cpus * t.speed) for t in types])
    g = cv.gpu_efficiency()
    assert g[2] == pytest.approx(BY_NAME["gpu"].peak_w / BY_NAME["gpu"].gpus) and np.isinf(np.delete(g, 2)).all()
    assert cv.max_boot_s() == max(t.boot_s for t in TYPES)
    lam = ctl.config.lambda_j_per_s
    for k, t in enumerate(TYPES):
        be = t.boot_energy_j / (t.idle_w - t.off_w)
        assert cv.idle_timeouts_s(None, ctl.config.min_idle_timeout_s)[k] == pytest.approx(
            max(be, ctl.config.min_idle_timeout_s))
        # the controller's timeout adds the waits a later boot costs at lambda: before any
        # arrival a task asks one CPU (and no GPU), so a node holds cpus tasks at once
        waits = lam * t.boot_s * t.cpus / (t.idle_w - t.off_w)
        assert ctl.idle_timeouts_s()[t.name] == pytest.approx(max(be + waits, ctl.config.min_idle_timeout_s))
    assert [cv.state_of(n) for n in ids] == [NodeState.ON, NodeState.OFF, NodeState.ON, NodeState.BOOTING,
                                             NodeState.ON]
    # supply: nodes on or booting; a hot node is less efficient by T/T_ref
    c, g_, uc, ug = cv.supply()
    assert (c, g_, uc, ug) == (32 + 16 + 32 + 8, 2, 0, 0)
    ctl.observe_node("n0", now_s=1.0, temperature_k=2 * ctl.config.t_ref_k)
    assert cv.efficiency()[0] == pytest.approx(2 * BY_NAME["big"].peak_w / 32)
    assert cv.has_node("n3") and not cv.has_node("n9") and cv.has_type("gpu") and not cv.has_type("tpu")
    # the compatible names the adapters use read the same view
    assert ctl.nodes is cv.nodes and ctl.type_index == cv.type_index and ctl.types is cv.types


def test_room_and_wake_requests_follow_decisions_and_plans():
    ctl = _ctl(lambda_j_per_s=0.0)
    cv = ctl.cluster
    assert ctl.has_room(8.0) and not ctl.has_room(33.0) and ctl.has_room(1.0, 2.0) and not ctl.has_room(1.0, 3.0)
    for k in range(2):
        assert ctl.decide(TaskRequest(f"g{k}", "g", cpus=1.0, gpus=1.0, duration_hint_s=1e4), now_s=0.0).node_id == "n2"
    assert not ctl.has_room(1.0, 1.0) and cv.reserved("n2") == (2.0, 2.0, 2)
    # a long 1-CPU task: with lambda 0 the small node that is off, even waking, costs less
    # than a big one that is on (the small one that is on takes no new work: draining)
    ctl.set_node_state("n4", NodeState.DRAINING, now_s=1.0)
    d = ctl.decide(TaskRequest("w", "g", cpus=1.0, duration_hint_s=1e5), now_s=1.0)
    assert d.node_id == "n1" and cv.wake_requests() == ("n1",)
    plan = ctl.plan_scaling(now_s=1.0)
    assert "n1" in plan.power_on and cv.wake_requests() == () and cv.state_of("n1") == NodeState.BOOTING


def test_scaling_reads_only_public_names_and_the_core_has_no_import_cycle():
    tree = ast.parse((CONTROL / "scaling.py").read_text())
    private = sorted({f"{ast.unparse(n.value)}.{n.attr}" for n in ast.walk(tree)
                      if isinstance(n, ast.Attribute) and n.attr.startswith("_")
                      and not (isinstance(n.value, ast.Name) and n.value.id == "self")})
    assert private == []
    graph: dict[str, set[str]] = {}
    for f in CONTROL.glob("*.py"):
        mods = set()
        for n in ast.walk(ast.parse(f.read_text())):
            if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("tao_core.control."):
                mods.add(n.module.split(".")[2])
            elif isinstance(n, ast.ImportFrom) and n.module == "tao_core.control":
                mods.update(a.name for a in n.names if (CONTROL / f"{a.name}.py").exists())
        graph[f.stem] = mods

    def reach(a: str, seen: set[str]) -> set[str]:
        for b in graph.get(a, ()):
            if b not in seen:
                seen.add(b)
                reach(b, seen)
        return seen

    cycles = sorted(m for m in graph if m != "__init__" and m in reach(m, set()))
    assert cycles == []
    assert "controller" not in graph["scaling"] and "scaling" in graph["controller"]


@settings(max_examples=30, deadline=None)
@given(pts=st.lists(st.floats(0.0, 500.0), min_size=11, max_size=11),
       u=st.one_of(st.floats(-1.0, 2.0), st.sampled_from([0.0, 0.1, 0.55, 1.0])))
def test_one_interpolation_kernel_equals_linear_interpolation(pts, u):
    curve = PowerCurve(tuple(sorted(pts)))
    want = float(np.interp(min(max(u, 0.0), 1.0), BREAKPOINTS, curve.points_w))
    assert curve.power_w(u) == pytest.approx(want, rel=1e-12, abs=1e-9)
    assert curve.power_w(np.array([u, u]))[1] == pytest.approx(want, rel=1e-12, abs=1e-9)
    table = CurveTable([PowerCurve.from_tdp(10.0).points_w, curve.points_w])
    assert table.watts(1, u * 10.0) == pytest.approx(want, rel=1e-12, abs=1e-9)
    assert table.watts_rows(np.array([1, 0]), np.array([u * 10.0, 0.0]))[0] == pytest.approx(want, rel=1e-12, abs=1e-9)


def test_fitted_curve_is_public_and_declares_a_node_type_again():
    big = BY_NAME["big"]
    ctl = Controller([big], ControllerConfig(calibration_every=5, calibration_min_interval_s=0.0))
    ctl.add_node("b", "big")
    for k in range(11):
        ctl.observe_node("b", now_s=float(k), power_w=0.8 * big.power_curve.power_w(k / 10), utilization=k / 10)
    snap = ctl.fitted_models()["big"]
    curve = snap.fitted_curve
    assert isinstance(curve, PowerCurve) and curve.points_w == snap.fitted_w
    assert curve.points_w != big.power_curve.points_w and curve.idle_w == pytest.approx(0.8 * big.idle_w, rel=0.05)
    again = NodeType("big-fitted", cpus=big.cpus, power_curve=curve)
    assert again.power_w(0.5) == pytest.approx(curve.power_w(0.5))
    assert math.isclose(ctl.cluster.idle_w()[0], curve.idle_w)
