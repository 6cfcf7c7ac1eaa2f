"""The spans a worker process's wrapped tasks recorded, batched for its node's sampler.

Each batch also says when the oldest task still running in the process started (None when
none runs), and while a task runs the batch is repeated every ``keepalive_s`` even when no
span ended: the sampler needs it to know up to which instant every task on its node is
known (its settled attribution, :mod:`tao_core.live.sampler`). Spans are kept per session
token, and go to the sampler with it.
"""
from __future__ import annotations

import threading
from typing import Optional

from tao_core.live.values import SpanRow


class SpanBuffer:
    def __init__(self, keepalive_s: float = 2.0) -> None:
        self.keepalive_s = keepalive_s
        self._lock = threading.Lock()
        self._spans: dict[str, list[SpanRow]] = {}  # session token -> spans not sent yet
        self._running: dict[str, tuple[str, float]] = {}  # task id -> (token, start wall-clock s)
        self._sent: tuple[Optional[float], float] = (None, 0.0)  # (oldest running start, when) last sent

    def started(self, token: str, task_id: str, t_s: float) -> None:
        with self._lock:
            self._running[task_id] = (token, t_s)

    def ended(self, token: str, span: SpanRow) -> None:
        with self._lock:
            self._running.pop(span.task_id, None)
            self._spans.setdefault(token, []).append(span)

    def take(self, now: float) -> tuple[dict[str, list[SpanRow]], Optional[float], Optional[str]]:
        """(spans by token, oldest running start, the running tasks' token) to send now;
        nothing when no span ended and "still running" was said less than keepalive ago."""
        with self._lock:
            batches, self._spans = self._spans, {}
            since = min(s for _t, s in self._running.values()) if self._running else None
            token = next(iter(self._running.values()))[0] if self._running else next(iter(batches), None)
        if not batches and (since is None or (since == self._sent[0] and now - self._sent[1] < self.keepalive_s)):
            return {}, None, None
        if token is not None:  # the sampler hears "still running" with the running tasks' token
            batches.setdefault(token, [])
        self._sent = (since, now)
        return batches, since, token
