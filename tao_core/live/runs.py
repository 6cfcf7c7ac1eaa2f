"""Bounded logs a live adapter keeps: every run of a task, and the controller's decisions.

Both are recorded like Dask's ``TaskStreamPlugin``: a bounded ``deque`` with an append
index, so memory stays bounded and a reader can ask for what was added since it last looked
(:meth:`RunLog.collect`). Each run of a task key gets its own number: a key computed twice
(two computations of one collection, a retry) is two runs, ``<key>#1`` and ``<key>#2``.

Units: seconds (wall clock).
"""
from __future__ import annotations

import itertools
from collections import deque
from typing import Any, Iterator, NamedTuple, Optional

#: runs kept (about 200 bytes each); older ones are dropped, and counted
MAX_RUNS = 1_000_000
#: decision events kept
MAX_EVENTS = 200_000


class TaskRun(NamedTuple):
    """One run of one task on one worker: its compute interval and how it ended."""

    task_id: str  #: ``"<key>#<run>"``, unique in the log
    key: str
    run: int
    group: str
    worker: str
    start_s: float
    end_s: float
    status: str  #: "memory" or "erred"
    job: Optional[str] = None  #: the job it belongs to
    units: Optional[dict] = None  #: what it counted with ``tao.count`` (unit -> amount)


class RunLog:
    """Task runs in completion order, the newest ``maxlen`` kept."""

    def __init__(self, maxlen: int = MAX_RUNS) -> None:
        if maxlen < 1:
            raise ValueError("maxlen: keep at least one run")
        self.maxlen = maxlen
        self.buffer: deque[TaskRun] = deque(maxlen=maxlen)
        self.index = 0  #: runs recorded so far (the next run's index)
        # key -> its last run number, for keys with a run still in the buffer: insertion
        # order is the order of each key's last run, so the first entry is the stalest
        self._last_run: dict[str, int] = {}

    def task_id(self, key: str) -> str:
        """The id of the run of ``key`` that is about to happen: ``<key>#<run>``."""
        return f"{key}#{self._last_run.get(key, 0) + 1}"

    def record(self, key: str, group: str, worker: str, start_s: float, end_s: float, status: str,
               job: Optional[str] = None, units: Optional[dict] = None) -> TaskRun:
        """Record a run that ended (``status`` memory or erred), with its job and the units
        of work it counted."""
        last = self._last_run
        run = last.pop(key, 0) + 1
        last[key] = run
        if len(last) > self.maxlen:  # its runs have all left the buffer
            del last[next(iter(last))]
        r = TaskRun(f"{key}#{run}", key, run, group, worker, float(start_s), float(end_s), status, job,
                    units or None)
        self.buffer.append(r)
        self.index += 1
        return r

    @property
    def dropped(self) -> int:
        """Runs that left the buffer to make room."""
        return self.index - len(self.buffer)

    def collect(self, start_index: int = 0) -> list[TaskRun]:
        """Runs recorded at or after ``start_index`` that are still kept."""
        first = max(0, min(start_index - self.dropped, len(self.buffer)))
        return list(itertools.islice(self.buffer, first, None))


class DecisionLog:
    """The controller's decision events, the newest ``maxlen`` kept."""

    def __init__(self, maxlen: int = MAX_EVENTS) -> None:
        self.buffer: deque[Any] = deque(maxlen=maxlen)
        self.total = 0  #: events kept or dropped for room so far

    def __len__(self) -> int:
        return len(self.buffer)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.buffer)

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
