"""Records the controller takes and gives: node types, task requests, decisions,
scaling plans and decision events. Shared unchanged by the simulator and the Ray and
Dask adapters.

Units: seconds, joules, watts, kelvin.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any, Optional

from tao_core.power.curve import PowerCurve


class NodeState(str, Enum):
    """Power state of a node as the controller sees it."""

    OFF = "off"
    BOOTING = "booting"
    ON = "on"
    DRAINING = "draining"  #: takes no new work; powered off once its running work ends

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class NodeType:
    """Declared power and capacity of one kind of node.

    ``power_curve`` is wall watts against CPU utilization. Each GPU draws ``gpu_idle_w``
    watts idle and up to ``gpu_max_w`` watts busy (or ``gpu_power_limit_w`` when a lower
    limit is set). ``speed`` is relative to a reference node (a task of 10 s at speed 1.0
    runs 5 s at speed 2.0). Booting takes ``boot_s`` seconds at ``boot_w`` watts (default:
    the idle draw); a node that is off draws ``off_w`` watts. ``gpu_model`` names the GPU
    (``"V100"``), where known.
    """

    name: str
    cpus: float
    power_curve: PowerCurve
    gpus: int = 0
    gpu_idle_w: float = 0.0
    gpu_max_w: float = 0.0
    gpu_power_limit_w: Optional[float] = None
    speed: float = 1.0
    boot_s: float = 0.0
    boot_w: Optional[float] = None
    off_w: float = 0.0
    gpu_model: Optional[str] = None

    def __post_init__(self) -> None:
        if not self.cpus > 0:
            raise ValueError(f"node type {self.name!r}: cpus must be > 0")
        if self.gpus < 0:
            raise ValueError(f"node type {self.name!r}: gpus must be >= 0")
        if not self.speed > 0:
            raise ValueError(f"node type {self.name!r}: speed must be > 0")
        if self.gpu_max_w < self.gpu_idle_w:
            raise ValueError(f"node type {self.name!r}: gpu_max_w must be >= gpu_idle_w")
        if self.boot_s < 0 or self.off_w < 0:
            raise ValueError(f"node type {self.name!r}: boot_s and off_w must be >= 0")

    @property
    def gpu_busy_w(self) -> float:
        """Watts one fully busy GPU draws: ``gpu_max_w``, or the power limit when lower."""
        if self.gpu_power_limit_w is not None:
            return max(self.gpu_idle_w, min(self.gpu_max_w, self.gpu_power_limit_w))
        return self.gpu_max_w

    def power_w(self, cpu_util: float, gpu_util: float = 0.0) -> float:
        """Wall watts of an ON node at ``cpu_util`` and mean ``gpu_util`` (fractions 0..1)."""
        gpu = self.gpus * (self.gpu_idle_w + (self.gpu_busy_w - self.gpu_idle_w) * min(max(gpu_util, 0.0), 1.0))
        return float(self.power_curve.power_w(cpu_util)) + gpu

    @property
    def idle_w(self) -> float:
        """Watts of an ON node with nothing running (CPU and GPUs idle)."""
        return self.power_w(0.0, 0.0)

    @property
    def peak_w(self) -> float:
        """Watts of an ON node with every CPU and GPU busy."""
        return self.power_w(1.0, 1.0)

    @property
    def boot_power_w(self) -> float:
        """Watts drawn while booting."""
        return self.idle_w if self.boot_w is None else self.boot_w

    @property
    def boot_energy_j(self) -> float:
        """Joules one boot costs."""
        return self.boot_s * self.boot_power_w


@dataclass(frozen=True)
class TaskRequest:
    """A unit of work asking for a place to run.

    ``group`` is what predictions are learned per: a Ray function or actor class name, a
    Dask key prefix. ``duration_hint_s`` is a declared run time at speed 1.0 when known.
    ``deadline_s`` is the absolute time (same clock as ``now_s``) by which it must finish.
    """

    task_id: str
    group: str
    cpus: float = 1.0
    gpus: float = 0.0
    job: Optional[str] = None
    duration_hint_s: Optional[float] = None
    deadline_s: Optional[float] = None
    deferrable: bool = True


class Action(str, Enum):
    PLACE = "place"
    DEFER = "defer"
    REJECT = "reject"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Alternative:
    """A candidate node and its penalty terms."""

    node_id: str
    cost: float  #: penalty, in joule-equivalents (inf when infeasible or over budget)
    energy_j: float  #: predicted marginal energy, joules
    delay_s: float  #: predicted queue wait plus run time, seconds


@dataclass(frozen=True)
class Decision:
    """What to do with one task now.

    PLACE: run on ``node_id``. DEFER: hold the task in the admission queue until
    ``defer_until_s`` (None: until capacity or power headroom returns) and ask again.
    REJECT: the job's energy budget is spent and the budget mode is ``deny``.
    """

    task_id: str
    action: Action
    node_id: Optional[str] = None
    cost: Optional[float] = None
    predicted_energy_j: Optional[float] = None
    predicted_duration_s: Optional[float] = None
    defer_until_s: Optional[float] = None
    reason: str = ""
    alternatives: tuple[Alternative, ...] = ()
    warning: Optional[str] = None


@dataclass(frozen=True)
class ScalePlan:
    """Which nodes to change power state now. ``power_on``: nodes that are off, to boot.
    ``power_off``: nodes with no running work, to shut down (least efficient and hottest
    first). ``drain``: nodes to stop giving new work so they can be powered off later."""

    power_on: tuple[str, ...] = ()
    power_off: tuple[str, ...] = ()
    drain: tuple[str, ...] = ()
    reason: str = ""

    def __bool__(self) -> bool:
        return bool(self.power_on or self.power_off or self.drain)


@dataclass(frozen=True)
class DecisionEvent:
    """One controller decision, as written to the audit ledger.

    ``kind``: place, defer, reject, scale-up, scale-down, drain, budget-correction, warn.
    ``subject``: the task id, node id or job the decision is about. ``alternatives``: the
    best other candidates and their costs. ``budget``: the budget state when deciding
    (cluster power and budget in watts, admission margin, job energy spent and allowed).
    ``detail``: kind-specific figures (an actuator's old and new setting, say).
    """

    t_s: float
    kind: str
    subject: str
    group: Optional[str] = None
    node_id: Optional[str] = None
    cost: Optional[float] = None
    reason: str = ""
    alternatives: tuple[Alternative, ...] = ()
    budget: dict[str, Any] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (infinite costs become the string "inf")."""
        d = asdict(self)
        d["alternatives"] = [asdict(a) for a in self.alternatives]

        def fix(v: Any) -> Any:
            if isinstance(v, float) and v != v:
                return "nan"
            if isinstance(v, float) and v in (float("inf"), float("-inf")):
                return "inf" if v > 0 else "-inf"
            if isinstance(v, dict):
                return {k: fix(x) for k, x in v.items()}
            if isinstance(v, list):
                return [fix(x) for x in v]
            return v

        return fix(d)
