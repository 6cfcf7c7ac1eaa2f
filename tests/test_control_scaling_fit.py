"""plan_scaling: per-node fit of pending tasks (fragmentation) and wake requests from decide."""
from control_fixtures import TYPES

from tao_core.control import Controller, ControllerConfig, NodeState, TaskRequest


def test_pending_task_that_fits_no_on_node_boots_a_node_that_fits():
    ctl = Controller(TYPES, ControllerConfig(spare_horizon_s=0.0))
    # two GPU nodes on, 1.5 GPUs used on each: 1 GPU free in total, but none has 1 free
    for i in range(2):
        ctl.add_node(f"g{i}", "gpu")
    for i in range(2):
        d = ctl.decide(TaskRequest(f"r{i}", "g", cpus=1.0, gpus=1.5, duration_hint_s=1e6), now_s=0.0)
        assert d.node_id is not None
    ctl.add_node("g2", "gpu", state=NodeState.OFF)
    ctl.add_node("b0", "big", state=NodeState.OFF)
    assert sorted(ctl.reserved(f"g{i}")[1] for i in range(2)) == [1.5, 1.5]
    pod = TaskRequest("pod", "g", cpus=2.0, gpus=1.0)
    plan = ctl.plan_scaling(now_s=1.0, pending=[pod])
    assert plan.power_on == ("g2",)  # aggregate supply covers demand; only a GPU node fits; the CPU node does not help
    # once it is booting, the same pending task boots nothing more
    assert ctl.plan_scaling(now_s=2.0, pending=[pod]).power_on == ()


def test_wake_request_from_decide_is_booted_even_when_supply_covers_demand():
    ctl = Controller(TYPES, ControllerConfig(wake_in_decide=True, spare_horizon_s=0.0, lambda_j_per_s=0.0))
    ctl.add_node("b0", "big")  # on and free, but keeping it on an hour costs more than waking s0
    ctl.add_node("s0", "small", state=NodeState.OFF)
    task = TaskRequest("t", "g", cpus=4.0, duration_hint_s=3600.0)
    d = ctl.decide(task, now_s=0.0)
    assert d.action.name == "DEFER" and d.node_id == "s0", d
    plan = ctl.plan_scaling(now_s=0.0, pending=[task])
    assert plan.power_on == ("s0",)
    ctl.set_node_state("s0", NodeState.ON, now_s=30.0)
    d2 = ctl.decide(task, now_s=30.0)
    assert d2.node_id == "s0" and d2.action.name == "PLACE"


def test_task_that_waited_out_a_boot_falls_back_to_a_node_that_is_on():
    ctl = Controller(TYPES, ControllerConfig(wake_in_decide=True, spare_horizon_s=0.0, lambda_j_per_s=0.0))
    ctl.add_node("b0", "big")
    ctl.add_node("s0", "small", state=NodeState.OFF)
    task = TaskRequest("t", "g", cpus=4.0, duration_hint_s=3600.0)
    d = ctl.decide(task, now_s=0.0)
    assert d.action.name == "DEFER" and d.node_id == "s0"
    assert ctl.plan_scaling(now_s=0.0, pending=[task]).power_on == ("s0",)
    # before the wait runs out it still waits for s0 (booting)
    assert ctl.decide(task, now_s=1.0).action.name == "DEFER"
    # s0 is late: the caller has not marked it ON when the wait ran out; b0 has room
    d3 = ctl.decide(task, now_s=d.defer_until_s)
    assert d3.action.name == "PLACE" and d3.node_id == "b0"
