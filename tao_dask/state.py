"""Plain records the scheduler plugin keeps: workers seen, telemetry timelines, task spans.

Units: seconds (wall clock, ``time.time()``), joules, watts.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from tao_core.control.types import NodeType


@dataclass
class WorkerNode:
    """One Dask worker, modeled as one node of ``node_type``."""

    address: str
    name: str
    nthreads: int
    type_name: Optional[str] = None
    node_type: Optional[NodeType] = None
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
        if self.t_s and t_s <= self.t_s[-1]:
            return
        self.t_s.append(t_s)
        self.energy_j.append(energy_j)
        self.power_w.append(power_w)
