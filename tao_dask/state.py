"""Plain records the scheduler plugin keeps: workers seen, telemetry timelines, task
spans, and the tasks TAO pinned or parked.

Units: seconds (wall clock, ``time.time()``), joules, watts.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Optional

from tao_core.control.types import NodeType


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


@dataclass
class Timeline:
    """Cumulative modeled energy of one worker: parallel lists of wall time (s),
    cumulative joules and mean watts over the interval ending there."""

    t_s: list[float] = field(default_factory=list)
    energy_j: list[float] = field(default_factory=list)
    power_w: list[float] = field(default_factory=list)
    source: str = "modeled"
    method: str = ""
    uncertainty: float = 0.0  #: relative standard uncertainty of the joules

    def add(self, t_s: float, energy_j: float, power_w: float) -> None:
        self.t_s.append(t_s)
        self.energy_j.append(energy_j)
        self.power_w.append(power_w)


class Span(NamedTuple):
    """One run of one task on one worker (Dask's ``startstops`` compute interval).

    A key Dask computes twice (two ``.compute()`` of one collection, a retry) is two
    runs: ``task_id`` is ``"<key>#<run>"``, unique in the log."""

    task_id: str
    key: str
    run: int
    group: str
    worker: str
    start_s: float
    end_s: float
    status: str  #: "memory" or "erred"


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


@dataclass(slots=True)
class Hold:
    """A task TAO parked (the controller deferred it for an energy reason)."""

    task_id: str
    since_s: float
    reason: str
    until_s: Optional[float] = None  #: the controller asked to be asked again then
    reject: Optional[str] = None  #: rejected: fail it with this reason


def key_str(key: Any) -> str:
    """A Dask key as text (tuple keys as their repr)."""
    return key if isinstance(key, str) else str(key)


class DecisionLog:
    """The controller's decision events, the newest ``maxlen`` kept."""

    def __init__(self, maxlen: int = 200_000) -> None:
        self.buffer: deque[Any] = deque(maxlen=maxlen)
        self.total = 0  #: events kept or dropped for room so far

    def __len__(self) -> int:
        return len(self.buffer)

    def append(self, ev: Any) -> None:
        self.buffer.append(ev)
        self.total += 1

    @property
    def dropped(self) -> int:
        """Events that left the buffer to make room."""
        return self.total - len(self.buffer)

    def drop_since(self, total: int) -> None:
        """Take out the events appended since the log held ``total`` (a decision that was
        not carried out)."""
        for _ in range(min(self.total - total, len(self.buffer))):
            self.buffer.pop()
        self.total = total
