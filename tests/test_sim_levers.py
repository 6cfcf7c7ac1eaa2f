"""The levers in the simulator: GPU power limits from the measured profiles, the engines'
autoscalers at their short settings, the controller's own timer, and the service wait of
deadline tasks."""
from __future__ import annotations

import pytest

from tao_core.control.types import NodeType
from tao_core.power.curve import PowerCurve
from tao_core.sim.gpu_limits import GpuLimitModel, gpu_of
from tao_core.sim.metrics import lower_bound_j, summarize
from tao_core.sim.model import ClusterSpec, SimTask, Workload, make_nodes
from tao_core.sim.runner import build_policy, run_all, run_policy

CURVE = PowerCurve(tuple(100.0 + 10.0 * i for i in range(11)))


def gpu_cluster() -> ClusterSpec:
    v100 = NodeType(name="gpu-v100", cpus=8, gpus=2, gpu_idle_w=56.58, gpu_max_w=300.0, power_curve=CURVE)
    return ClusterSpec(node_types={"gpu-v100": v100}, nodes=make_nodes([("gpu-v100", 1)]))


def gpu_work(n: int = 40) -> Workload:
    return Workload([SimTask(f"t{i}", 100.0 * i, 90.0, 2.0, 1.0, "resnet") for i in range(n)])


def test_measured_profiles_are_matched_by_gpu_model_or_name():
    assert gpu_of(NodeType("gpu-v100", cpus=8, gpus=2, gpu_max_w=300.0, power_curve=CURVE)) == "v100"
    assert gpu_of(NodeType("G2-96c-8g", cpus=8, gpus=8, gpu_max_w=300.0, power_curve=CURVE, gpu_model="V100")) == "v100"
    assert gpu_of(NodeType("T4-96c-4g", cpus=8, gpus=4, gpu_max_w=70.0, power_curve=CURVE, gpu_model="T4")) is None
    assert gpu_of(NodeType("cpu", cpus=8, power_curve=CURVE)) is None
    model = GpuLimitModel(gpu_cluster().node_types)
    lims = model.limits_w("gpu-v100")
    # the V100's measured 100-250 W in 25 W steps, scaled to this node type's 300 W
    assert lims == pytest.approx(tuple(x * 300.0 / 250.0 for x in (250, 225, 200, 175, 150, 125, 100)))
    p = model.profile("gpu-v100", "resnet")
    assert p is model.profile("gpu-v100", "resnet") and p.time_factor[0] == 1.0 and p.power_factor[0] == 1.0
    assert min(t * w for t, w in zip(p.time_factor, p.power_factor)) == pytest.approx(p.min_energy_factor())


def test_controller_learns_a_gpu_power_limit_in_the_simulator():
    cl, wl = gpu_cluster(), gpu_work()
    on = run_policy(build_policy("tao", cl), cl, wl)
    off = run_policy(build_policy("tao", cl, controller_options={"gpu_power_limits": False}), cl, wl)
    assert on.gpu_limited_tasks == len(wl) and off.gpu_limited_tasks == 0
    e_on = sum(n.dynamic_j for n in on.nodes)
    e_off = sum(n.dynamic_j for n in off.nodes)
    assert e_on < e_off
    # the learner keeps the slowdown of a unit of work within its bound after exploring
    slow = [(on.end_s_task[i] - on.start_s[i]) / 90.0 for i in range(len(wl))]
    assert max(slow[-10:]) <= 1.0 + 0.10 + 1e-9
    bound = lower_bound_j(cl, wl)
    assert summarize(on, cl, wl, bound)["energy_j"] >= bound
    # a baseline runs at the highest limit: as the model without limits
    base = run_policy(build_policy("pack", cl), cl, wl)
    assert base.gpu_limited_tasks == 0
    assert all(base.end_s_task[i] - base.start_s[i] == pytest.approx(90.0) for i in range(len(wl)))


def nt(boot_s: float = 60.0) -> NodeType:
    return NodeType(name="a", cpus=2, power_curve=CURVE, boot_s=boot_s, off_w=10.0)


def test_ray_autoscaler_short_idle_timeout_powers_off_after_a_minute():
    cl = ClusterSpec(node_types={"a": nt()}, nodes=make_nodes([("a", 2)]))
    wl = Workload([SimTask("A", 0, 10, 2), SimTask("B", 1000, 10, 2)])
    res = run_policy(build_policy("ray-autoscale-1min", cl), cl, wl)
    # a-1 idle from 0: off at the first 5 s tick at or after 60 s
    assert res.nodes[1].off_j == pytest.approx(10.0 * (1010 - 60))


def test_tuned_adaptive_keeps_a_worker_and_waits_a_boot_before_closing():
    cl = ClusterSpec(node_types={"a": nt(boot_s=30.0)}, nodes=make_nodes([("a", 3)]))
    wl = Workload([SimTask("A", 0, 10, 1), SimTask("B", 200, 10, 1)])
    setup = build_policy("dask-adaptive-tuned", cl)
    assert setup.policy.wait_count == 30 and setup.policy.minimum == 1
    res = run_policy(setup, cl, wl)
    # one worker stays (minimum 1): B starts at once; the others close after 30 intervals
    assert res.start_s[1] == pytest.approx(200.0)
    assert sum(n.boots for n in res.nodes) == 0
    kept = [n for n in res.nodes if n.off_j == 0.0]
    assert len(kept) == 1
    closed = [n for n in res.nodes if n.off_j > 0.0]
    assert all(n.idle_j >= 100.0 * 29 for n in closed)


def test_idle_nodes_go_off_at_the_controllers_timer_without_other_events():
    cl = ClusterSpec(node_types={"a": nt()}, nodes=make_nodes([("a", 3)]))
    wl = Workload([SimTask("A", 0, 10, 2), SimTask("B", 5000, 10, 2)])
    setup = build_policy("tao", cl, controller_options={"idle_timeout_s": 100.0, "predictive_scaling": False})
    res = run_policy(setup, cl, wl)
    # the two nodes idle from 0 go off at their 100 s timeout, a tick the controller asked
    # for (next_plan_s): no task or node event happens between 10 s and 5000 s
    offs = sorted(n.off_j for n in res.nodes)
    assert offs[1:] == pytest.approx([10.0 * (res.end_s - 100.0)] * 2)


def test_service_wait_leaves_out_tasks_with_deadlines():
    cl = ClusterSpec(node_types={"a": nt()}, nodes=make_nodes([("a", 1)]))
    wl = Workload([SimTask("A", 0, 100, 2), SimTask("B", 1, 10, 2, deadline_s=1000.0), SimTask("C", 200, 10, 2)])
    res = run_policy(build_policy("pack", cl), cl, wl)
    m = summarize(res, cl, wl)
    assert m["wait_p95_s"] > 50.0  # B waited for A
    assert m["service_wait_p95_s"] == 0.0 and m["deadlines_missed"] == 0


def test_run_all_judges_tao_against_each_baseline():
    cl = ClusterSpec(node_types={"a": nt(boot_s=10.0)}, nodes=make_nodes([("a", 3)]))
    wl = Workload([SimTask(f"t{i}", 60.0 * i, 20.0, 1.0, 0.0, "g") for i in range(30)])
    doc = run_all(cl, wl, ["ray-default", "pack", "tao"])
    assert {v["baseline"] for v in doc["verdicts"]} == {"ray-default", "pack"}
    assert all(v["outcome"] in ("beaten", "dominated", "not beaten") for v in doc["verdicts"])
    assert set(doc["tao_sweep"]) <= {"200", "2000", "2", "0", "20000"}
