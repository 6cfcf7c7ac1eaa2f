"""Task rows from any engine, turned into attribution spans once.

An engine adapter knows what ran where and when from one or more records: TAO's own
wrapper around a task (start and end in the task, its CPU seconds) and the engine's own
records (Ray's task events, a Dask task stream). Each record becomes a :class:`TaskRow`
saying how it was known and to what time resolution; :func:`spans_from_rows` keeps one row
per task (the most precise source first) and gives :func:`tao_core.attribution.attribute`
its :class:`~tao_core.attribution.TaskSpan` list. Times are seconds on the clock of the
node timelines; CPUs are logical CPUs reserved.

A task that reserves no CPU (an actor method with ``num_cpus=0``, say) and whose CPU time
is unknown would get no energy at all from a CPU-share split; it is taken to keep one CPU
busy for its run (``cpu_s`` = run time), and its row says so.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

from tao_core.attribution import TaskSpan

#: how a row was known: inside the task by TAO's wrapper (exact start, end and CPU seconds)
KNOWN_BY_WRAPPER = "tao-wrapper"
#: ASSUMED: the CPU time of a task that reserves no CPU and reported none
ZERO_CPU_ASSUMPTION = "no CPU reserved or measured: one busy CPU assumed for its run"


@dataclass(frozen=True)
class TaskRow:
    """One run of one task on one node (seconds, CPUs).

    ``known_by`` names the record it came from (``tao-wrapper``, ``ray-task-events``, ...)
    and ``resolution_s`` the time resolution of its start and end."""

    task_id: str
    node_id: str
    start_s: float
    end_s: float
    name: str
    job: Optional[str]
    cpus: float
    known_by: str
    resolution_s: float
    cpu_s: Optional[float] = None
    actor_id: Optional[str] = None

    @property
    def provenance(self) -> str:
        """One line for the record's method field."""
        note = f"span from {self.known_by} ({self.resolution_s:g} s resolution)"
        if self.cpus <= 0 and self.cpu_s is None:
            note += f"; {ZERO_CPU_ASSUMPTION}"
        return note


def unique_rows(rows: Iterable[TaskRow], prefer: Sequence[str] = (KNOWN_BY_WRAPPER,)) -> list[TaskRow]:
    """One row per task id: of several, the one whose ``known_by`` comes first in
    ``prefer`` (others after, in arrival order)."""
    rank = {k: i for i, k in enumerate(prefer)}
    best: dict[str, TaskRow] = {}
    for r in rows:
        old = best.get(r.task_id)
        if old is None or rank.get(r.known_by, len(rank)) < rank.get(old.known_by, len(rank)):
            best[r.task_id] = r
    return list(best.values())


def span_of(row: TaskRow) -> TaskSpan:
    """The attribution span of one row (see the module doc for tasks reserving no CPU)."""
    end = max(row.end_s, row.start_s)
    cpu_s = row.cpu_s
    if row.cpus <= 0 and cpu_s is None:
        cpu_s = end - row.start_s
    return TaskSpan(task_id=row.task_id, node_id=row.node_id, start_s=float(row.start_s), end_s=float(end),
                    group=row.name, job=row.job, cpus=float(max(row.cpus, 0.0)),
                    cpu_s=None if cpu_s is None else float(max(cpu_s, 0.0)))


def spans_from_rows(rows: Iterable[TaskRow], prefer: Sequence[str] = (KNOWN_BY_WRAPPER,)
                    ) -> tuple[list[TaskSpan], dict[str, TaskRow]]:
    """(spans, row of each task id): one span per task, from the preferred row."""
    kept = unique_rows(rows, prefer)
    return [span_of(r) for r in kept], {r.task_id: r for r in kept}
