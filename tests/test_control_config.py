"""One controller configuration: validation of non-finite and extreme knobs, and the
infinite budget that once sent a GPU task to a node without GPUs."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from control_fixtures import TYPES
from tao_core.control import Action, Controller, ControllerConfig, NodeState, TaskRequest
from tao_core.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
INF = math.inf
NAN = math.nan


def _mixed(cfg: ControllerConfig) -> Controller:
    ctl = Controller(TYPES, cfg)
    ctl.add_node("b0", "big")
    ctl.add_node("s0", "small")
    ctl.add_node("g0", "gpu")
    return ctl


def test_infinite_budget_is_no_budget_and_gpu_tasks_go_to_gpu_nodes():
    assert ControllerConfig(power_budget_w=INF).power_budget_w is None
    inf_ctl = _mixed(ControllerConfig(power_budget_w=INF))
    none_ctl = _mixed(ControllerConfig(power_budget_w=None))
    for k in range(6):
        for ctl in (inf_ctl, none_ctl):
            ctl.observe_cluster_power(now_s=float(k), power_w=ctl.modeled_power_w())
        req = TaskRequest(f"t{k}", "train", cpus=4.0, gpus=1.0 if k % 2 == 0 else 0.0)
        a = inf_ctl.decide(req, now_s=float(k))
        b = none_ctl.decide(req, now_s=float(k))
        assert (a.action, a.node_id, a.cost) == (b.action, b.node_id, b.cost)
        assert a.cost is None or math.isfinite(a.cost)
        if a.action == Action.PLACE and req.gpus:
            assert a.node_id == "g0"
    assert math.isfinite(inf_ctl.loop.margin) and inf_ctl.loop.effective_budget_w is None


def test_simulate_with_infinite_budget_places_gpu_tasks_on_gpu_nodes():
    from tao_core.sim.loaders import load_cluster, load_workload
    from tao_core.sim.runner import build_policy, run_policy

    cl = load_cluster(ROOT / "examples" / "cluster_small.json")
    wl = load_workload(ROOT / "examples" / "workload_small.csv")
    assert any(t.gpus > 0 for t in wl.tasks)
    setup = build_policy("tao", cl, budget_w=INF)
    res = run_policy(setup, cl, wl, budget_w=INF)  # strict: an impossible PLACE raises
    gpu_nodes = {k for k, n in enumerate(cl.nodes) if cl.node_types[n.node_type].gpus > 0}
    for i, t in enumerate(wl.tasks):
        assert res.node_of_task[i] >= 0
        if t.gpus > 0:
            assert res.node_of_task[i] in gpu_nodes
    assert res.budget_violation_s == 0.0 and res.budget_w is None
    # the run's document says "no budget", in JSON without Infinity
    from tao_core.sim.runner import run_all
    import json

    doc = run_all(cl, wl, ["tao"], budget_w=INF)
    doc.pop("results")
    assert doc["power_budget_w"] is None and doc["policies"]["tao"]["budget_w"] is None
    json.dumps(doc, allow_nan=False)


@pytest.mark.parametrize("field,value", [
    ("lambda_j_per_s", INF), ("lambda_j_per_s", NAN), ("lambda_j_per_s", 1e300), ("mu", INF), ("mu", -1.0),
    ("t_ref_k", INF), ("t_ref_k", 0.0), ("power_budget_w", NAN), ("power_budget_w", -INF), ("power_budget_w", 0.0),
    ("pue", INF), ("pue", NAN), ("pi_kp", INF), ("pi_ki", NAN), ("target_headroom", NAN), ("margin_max", 1.0),
    ("default_duration_s", INF), ("prediction_alpha", NAN), ("spare_cpus", INF), ("spare_horizon_s", INF),
    ("scale_down_band", INF), ("ratio_halflife_s", 0.0), ("calibration_prior", INF), ("max_groups", 0),
    ("max_groups", 2.5), ("alternatives", True), ("carbon_slack", INF), ("gpu_max_slowdown", NAN),
    ("idle_timeout_s", NAN), ("boot_amortize_s", 0.0),
])
def test_non_finite_or_out_of_range_knobs_are_refused_naming_the_field(field, value):
    with pytest.raises(InputError, match=f"ControllerConfig.{field}"):
        ControllerConfig(**{field: value})


def test_knobs_whose_sum_leaves_no_budget_are_refused():
    with pytest.raises(InputError, match="target_headroom/margin_max"):
        ControllerConfig(target_headroom=0.5, margin_max=0.5)
    with pytest.raises(InputError, match="node_caps_w"):
        ControllerConfig(node_caps_w={"a": NAN})
    with pytest.raises(InputError, match="job_budgets_j"):
        ControllerConfig(job_budgets_j={"j": -1.0})


def test_infinity_where_it_means_never_is_accepted_and_behaves():
    cfg = ControllerConfig(idle_timeout_s=INF, min_on_s=INF, boot_amortize_s=INF, ratio_halflife_s=INF,
                           arrival_halflife_s=INF, node_caps_w={"b0": INF}, job_budgets_j={"j": INF},
                           job_budget_mode="deny")
    ctl = _mixed(cfg)
    d = ctl.decide(TaskRequest("t", "g", cpus=2.0, job="j", duration_hint_s=5.0), now_s=0.0)
    assert d.action == Action.PLACE and math.isfinite(d.cost)
    ctl.task_finished("t", now_s=5.0, energy_j=100.0)
    ctl.observe_cluster_power(now_s=6.0, power_w=ctl.modeled_power_w())
    assert ctl.plan_scaling(now_s=1e6).power_off == ()  # never idle long enough
    assert set(ctl.idle_timeouts_s().values()) == {INF}


@pytest.mark.parametrize("budget", [1e-300, 5e-324, 1.0])
def test_budget_below_idle_power_defers_with_a_reason_never_nan(budget):
    ctl = _mixed(ControllerConfig(power_budget_w=budget))
    for k in range(3):
        ctl.observe_cluster_power(now_s=float(k), power_w=ctl.modeled_power_w())
        d = ctl.decide(TaskRequest(f"t{k}", "g", cpus=1.0), now_s=float(k))
        assert d.action == Action.DEFER and d.reason == "power headroom short of the budget"
    assert all(math.isfinite(x) for x in (ctl.loop.margin, ctl.loop.static_scale, ctl.loop.dynamic_scale))
    plan = ctl.plan_scaling(now_s=10.0)  # sheds idle nodes: power is over the budget
    assert plan.power_off and not plan.power_on


def test_huge_weights_and_measurements_stay_finite():
    ctl = _mixed(ControllerConfig(lambda_j_per_s=1e12, mu=1e12, power_budget_w=5000.0))
    d = ctl.decide(TaskRequest("t", "g", cpus=1.0, duration_hint_s=1.0), now_s=0.0)
    assert d.action == Action.PLACE and math.isfinite(d.cost)
    for k, w in enumerate((1e300, 1.7e308, 0.0, 800.0)):
        ctl.observe_cluster_power(now_s=1.0 + k, power_w=w)
        assert all(math.isfinite(x) for x in (ctl.loop.margin, ctl.loop.static_scale, ctl.loop.dynamic_scale))
    ctl.observe_node("b0", now_s=9.0, power_w=INF, temperature_k=NAN, utilization=NAN)  # ignored
    assert np.isfinite(ctl.cluster.nodes.p_node).all()


def test_unusable_task_figures_are_refused_or_ignored():
    ctl = _mixed(ControllerConfig())
    with pytest.raises(InputError, match="cpus and gpus"):
        ctl.decide(TaskRequest("a", "g", cpus=INF), now_s=0.0)
    with pytest.raises(InputError, match="cpus and gpus"):
        ctl.decide(TaskRequest("a", "g", cpus=1.0, gpus=NAN), now_s=0.0)
    d = ctl.decide(TaskRequest("b", "g", cpus=1.0, duration_hint_s=INF), now_s=0.0)  # no usable hint
    speed = ctl.cluster.node_type(d.node_id).speed
    assert d.action == Action.PLACE and d.predicted_duration_s == pytest.approx(ctl.config.default_duration_s / speed)
    ctl.set_node_state("s0", NodeState.OFF, now_s=1.0)
    d = ctl.decide(TaskRequest("c", "g", cpus=1.0, deadline_s=NAN), now_s=1.0)
    assert d.action in (Action.PLACE, Action.DEFER) and (d.cost is None or math.isfinite(d.cost))
