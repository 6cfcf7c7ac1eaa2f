"""Energy-aware placement, deferral, budgets and scaling (no engine imports).

``Controller`` and ``ControllerConfig`` plus the shared records of
:mod:`tao_core.control.types`.
"""
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
