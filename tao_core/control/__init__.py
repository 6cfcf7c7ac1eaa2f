"""Energy-aware placement, deferral, budgets and scaling (no engine imports).

``Controller`` and ``ControllerConfig``, the controller's public ``ClusterView``, the
``AdmissionQueue`` the simulator and the adapters hold waiting tasks in, and the shared
records of :mod:`tao_core.control.types`.
"""
from tao_core.control.admission import AdmissionQueue
from tao_core.control.cluster import ClusterView
from tao_core.control.config import ControllerConfig
from tao_core.control.controller import Controller
from tao_core.control.types import (
    Action,
    Alternative,
    Decision,
    DecisionEvent,
    NodeState,
    NodeType,
    ScalePlan,
    TaskRequest,
)

__all__ = [
    "AdmissionQueue",
    "ClusterView",
    "Controller",
    "ControllerConfig",
    "Action",
    "Alternative",
    "Decision",
    "DecisionEvent",
    "NodeState",
    "NodeType",
    "ScalePlan",
    "TaskRequest",
]
