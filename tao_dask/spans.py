"""The compute interval of every task run, for per-task energy.

Recorded like Dask's ``TaskStreamPlugin``: a bounded ``deque`` with an append index, so
memory stays bounded and a reader can ask for what was added since it last looked
(:meth:`SpanLog.collect`). Each run of a key gets its own number: a key computed twice
is two spans, ``<key>#1`` and ``<key>#2``.

Units: seconds (wall clock, the clock of Dask's ``startstops``).
"""
from __future__ import annotations

import itertools
from collections import deque
from typing import Any, Iterable, Optional

from tao_dask.state import Span, key_str

#: spans kept (about 200 bytes each); older ones are dropped, and counted
MAX_SPANS = 1_000_000


class SpanLog:
    """Task runs in completion order, the newest ``maxlen`` kept."""

    def __init__(self, maxlen: int = MAX_SPANS) -> None:
        if maxlen < 1:
            raise ValueError("maxlen: keep at least one span")
        self.maxlen = maxlen
        self.buffer: deque[Span] = deque(maxlen=maxlen)
        self.index = 0  #: spans recorded so far (the next span's index)
        # key -> its last run number, for keys with a span still in the buffer: insertion
        # order is the order of each key's last span, so the first entry is the stalest
        self._last_run: dict[str, int] = {}

    def run_of(self, key: str) -> int:
        """The run number the next span of ``key`` will carry."""
        return self._last_run.get(key, 0) + 1

    def task_id(self, key: Any) -> str:
        """The id of the run of ``key`` that is about to happen: ``<key>#<run>``."""
        k = key_str(key)
        return f"{k}#{self.run_of(k)}"

    def record(self, key: Any, group: str, worker: str, startstops: Iterable[dict], status: str) -> Optional[Span]:
        """Record the compute interval of a run that ended (``status`` memory or erred)."""
        t0 = t1 = None
        for ss in startstops or ():
            if ss.get("action") == "compute":
                t0, t1 = ss["start"], ss["stop"]
        if t0 is None or worker is None:
            return None
        k = key_str(key)
        last = self._last_run
        run = last.pop(k, 0) + 1
        last[k] = run
        if len(last) > self.maxlen:  # its spans have all left the buffer
            del last[next(iter(last))]
        span = Span(f"{k}#{run}", k, run, group, worker, float(t0), float(t1), status)
        self.buffer.append(span)
        self.index += 1
        return span

    @property
    def dropped(self) -> int:
        """Spans that left the buffer to make room."""
        return self.index - len(self.buffer)

    def collect(self, start_index: int = 0) -> list[Span]:
        """Spans recorded at or after ``start_index`` that are still kept."""
        first = max(0, min(start_index - self.dropped, len(self.buffer)))
        return list(itertools.islice(self.buffer, first, None))
