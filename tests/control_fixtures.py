"""Node types and an independent power model for the controller tests."""
from __future__ import annotations

from tao_core.control import Controller, NodeState, NodeType
from tao_core.power.curve import PowerCurve

BIG = NodeType("big", cpus=32, power_curve=PowerCurve.from_tdp(400.0), boot_s=60.0, off_w=5.0)
SMALL = NodeType("small", cpus=8, power_curve=PowerCurve.from_tdp(90.0), speed=0.8, boot_s=30.0, off_w=2.0)
GPU = NodeType("gpu", cpus=16, gpus=2, power_curve=PowerCurve.from_tdp(250.0), gpu_idle_w=50.0, gpu_max_w=300.0,
               boot_s=90.0, off_w=6.0)
TYPES = (BIG, SMALL, GPU)
BY_NAME = {t.name: t for t in TYPES}


def node_power_w(ctl: Controller, node_id: str) -> float:
    """Watts of one node from its declared NodeType and reserved load, computed without
    the controller's arrays (an independent check)."""
    t = BY_NAME[_type_name(ctl, node_id)]
    state = ctl.node_state(node_id)
    if state == NodeState.OFF:
        return t.off_w
    if state == NodeState.BOOTING:
        return t.boot_power_w
    c, g, _ = ctl.reserved(node_id)
    return t.power_w(c / t.cpus, g / t.gpus if t.gpus else 0.0)


def cluster_power_w(ctl: Controller) -> float:
    return sum(node_power_w(ctl, nid) for nid in ctl.cluster.node_ids)


def _type_name(ctl: Controller, node_id: str) -> str:
    return ctl.cluster.node_type(node_id).name
