"""Plain records the scheduler plugin keeps (workers seen, tasks TAO pinned) and the names
of the scheduler stream operations TAO's two plugins speak.

Units: seconds (wall clock, ``time.time()``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from tao_core.control.types import NodeType

#: the scheduler stream operation TAO's worker plugin sends its samples with
#: (checked by :mod:`tao_core.live.worker_telemetry`)
OP = "tao-telemetry"
#: the event topic of earlier versions; events on it are counted as refused
TOPIC = "tao-telemetry"
#: the scheduler stream operation that carries what a task counted (``tao.count``)
UNITS_OP = "tao-units"


@dataclass
class WorkerNode:
    """One Dask worker, modeled as one node of ``node_type``: a server of the worker's own
    thread count (CPUs) and ``GPU`` resource (GPUs), whatever its type's name says."""

    address: str
    name: str
    nthreads: int
    gpus: int = 0
    type_name: Optional[str] = None  #: the type as the user named it (the report's node type)
    node_type: Optional[NodeType] = None  #: that type sized to this worker (the controller's)
    joined_s: float = 0.0
    left_s: Optional[float] = None
    managed: bool = False  #: known to the controller (TAO may place tasks on it)
    pid: Optional[int] = None
    described: bool = False  #: its type is the one it described itself as (not declared)
    curve: Optional[dict] = None  #: where a described type's curve came from (``CurveProvenance.to_dict()``)


@dataclass(slots=True)
class Pin:
    """A task the controller admitted: the node it reserved, the restriction TAO set to
    send it there (taken off when the task leaves processing, unless someone else replaced
    it; None when Dask picks the worker) and the controller's task id."""

    address: str
    restriction: Optional[set[str]]
    task_id: str
    sent: bool = False  #: Dask has sent it to a worker
    seceded: bool = False  #: the task left its thread (``secede``); its slot is given back


def key_str(key: Any) -> str:
    """A Dask key as text (tuple keys as their repr)."""
    return key if isinstance(key, str) else str(key)
