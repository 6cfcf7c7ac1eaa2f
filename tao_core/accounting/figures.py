"""The energy figures of a run, each defined once. Joules unless stated.

- **task work** (``tasks_j``, the report's ``task_energy_j``): the energy attributed to
  tasks, as :mod:`tao_core.attribution` splits it: the node's dynamic energy by CPU share
  plus the node's static (idle-draw) energy by the share of its capacity the tasks held.
- **idle** (``idle_j``): the energy of powered-on nodes that no task was charged with
  (static draw of capacity no task held, and dynamic energy with no task to charge).
- **boot** (``boot_j``): the energy of nodes while they boot; **off** (``off_j``): the
  standby draw of nodes that are off.
- **IT energy** = task work + idle + boot + off: every node's parts add up to the energy
  read or modeled for it (conservation).
- **facility energy** = IT energy x PUE; **facility overhead** = facility - IT energy.
- **overhead share** (the Optimization-Inversion index) = 1 - task work / facility
  energy: the share of facility energy not spent on task work (idle, boot, off and the
  facility's own overhead).
- **inverted**: overhead share above :data:`INVERSION_THRESHOLD` (0.5), i.e. more of the
  facility energy went to keeping the cluster up than to the work itself.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Optional

#: a run whose overhead share is above this is called inverted
INVERSION_THRESHOLD = 0.5
#: the parts of a node's (and a run's) IT energy
PART_NAMES = ("tasks", "idle", "boot", "off")

OVERHEAD_SHARE_DEFINITION = (
    "1 - task work / facility energy: the share of facility energy not spent on task work "
    "(idle, boot, off and facility overhead); inverted when above 0.5"
)
TASK_WORK_DEFINITION = (
    "energy attributed to tasks: dynamic energy by CPU share plus the static (idle-draw) energy "
    "of the capacity the tasks held"
)


def close_enough(a: float, b: float, rel: float = 1e-9, abs_j: float = 1e-6) -> bool:
    """True when two energies agree to float rounding (the tolerance of every "adds up")."""
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_j)


@dataclass(frozen=True)
class EnergyParts:
    """IT energy split into task work, idle, boot and off (J, each >= 0)."""

    tasks_j: float
    idle_j: float = 0.0
    boot_j: float = 0.0
    off_j: float = 0.0

    def __post_init__(self) -> None:
        for name in PART_NAMES:
            v = getattr(self, f"{name}_j")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{name}_j={v!r}: must be a finite number of joules >= 0")

    @property
    def total_j(self) -> float:
        return self.tasks_j + self.idle_j + self.boot_j + self.off_j

    def __add__(self, other: "EnergyParts") -> "EnergyParts":
        return EnergyParts(self.tasks_j + other.tasks_j, self.idle_j + other.idle_j,
                           self.boot_j + other.boot_j, self.off_j + other.off_j)

    @staticmethod
    def sum(parts: Iterable["EnergyParts"]) -> "EnergyParts":
        total = EnergyParts(0.0)
        for p in parts:
            total = total + p
        return total

    def as_dict(self) -> dict[str, float]:
        return {f"{name}_j": getattr(self, f"{name}_j") for name in PART_NAMES}


def overhead_share(task_j: Optional[float], facility_j: Optional[float]) -> Optional[float]:
    """1 - task work / facility energy; None when either is unknown or facility is 0."""
    if task_j is None or facility_j is None or facility_j <= 0:
        return None
    return 1.0 - task_j / facility_j


def is_inverted(share: Optional[float]) -> Optional[bool]:
    """Whether a run with this overhead share is inverted (None when the share is unknown)."""
    return None if share is None else share > INVERSION_THRESHOLD


@dataclass(frozen=True)
class RunFigures:
    """The figures of one run: its energy parts and the PUE that scales IT to facility."""

    parts: EnergyParts
    pue: float

    @property
    def it_j(self) -> float:
        return self.parts.total_j

    @property
    def facility_j(self) -> float:
        return self.it_j * self.pue

    @property
    def facility_overhead_j(self) -> float:
        return self.facility_j - self.it_j

    @property
    def overhead_share(self) -> Optional[float]:
        return overhead_share(self.parts.tasks_j, self.facility_j)

    @property
    def inverted(self) -> Optional[bool]:
        return is_inverted(self.overhead_share)
