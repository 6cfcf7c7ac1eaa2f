"""The value objects a live session passes between its processes (a node's sampler, the
driver, the workers' task wrappers): readings, task spans, settled task energies and the
batch a sampler hands over. Plain tuples and dataclasses with no heavy imports, so that a
worker process loads them fast. Times are wall-clock seconds, energy joules."""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Optional

Parts = tuple[tuple[str, str, float], ...]  #: (component, source, cumulative J)


class TimelineRow(NamedTuple):
    """One reading of a node: wall-clock s, cumulative J, W, CPU utilization 0..1, joined
    source, method, relative uncertainty (None: unknown) and the cumulative J per
    (component, source)."""

    t_s: float
    energy_j: float
    power_w: Optional[float]
    util: Optional[float]
    source: str
    method: str
    uncertainty: Optional[float]
    parts: Parts = ()


class SpanRow(NamedTuple):
    """What TAO's wrapper records inside one task: task id, node, wall-clock start and end
    (s), CPU seconds, group, job, reserved CPUs."""

    task_id: str
    node_id: str
    start_s: float
    end_s: float
    cpu_s: float
    group: str
    job: str
    cpus: float


class TaskEnergy(NamedTuple):
    """A wrapped task's attributed energy (J) once its node's timeline settled past its end,
    and its run time (s)."""

    task_id: str
    energy_j: float
    run_s: float


@dataclass(frozen=True)
class SamplerBatch:
    """What a sampler hands over: rows, spans and settled task energies from absolute
    indexes ``since`` on (``first_*``: the index of the first item, above ``since`` when older
    ones were dropped). A new ``incarnation`` is a new sampler: its indexes and counters start
    from zero."""

    incarnation: str
    since: tuple[int, int, int]
    first_row: int
    rows: list[TimelineRow]
    first_span: int
    spans: list[SpanRow]
    first_energy: int
    energies: list[TaskEnergy]


@dataclass(frozen=True)
class Grant:
    """A controller PLACE: one task's reservation on ``node_id``. ``slot``: reused by every
    task of ``group`` (open admission) rather than made for one task, actor or bundle."""

    gid: str
    node_id: str
    group: str
    slot: bool = False
