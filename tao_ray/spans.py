"""Worker side: the wrapper TAO puts around a remote function records, inside the task,
the node it ran on, its start and end (wall-clock seconds) and its CPU seconds, and sends
these spans in batches (every ``FLUSH_S`` seconds, from a daemon thread of the worker
process) to the sampler actor of its node. No call leaves the worker per task.

Each batch also says when the oldest task still running in this worker process started
(None when none runs), and while a task runs the flusher repeats that every ``KEEPALIVE_S``
even when no span ended: the sampler needs it to know up to which instant every task on
its node is known, so that it can attribute its energy to tasks as it goes (see
:mod:`tao_ray.sampler`).

Each call carries the TAO session token as its first argument (the driver adds it, and
strips nothing from the user's arguments); the spans go to the sampler with that token,
which refuses any other.
"""
from __future__ import annotations

import inspect
import os
import threading
import time
from typing import Any, Callable, Optional

import ray

from tao_core.live.values import SpanRow
from tao_ray.records import NAMESPACE, sampler_name

FLUSH_S = 0.2
#: seconds between "still running" reports when no span ended (well under the sampler's STALE_S)
KEEPALIVE_S = 2.0

_lock = threading.Lock()
_buffer: dict[str, list[SpanRow]] = {}  # session token -> spans not sent yet
_running: dict[str, tuple[str, float]] = {}  # task id -> (token, start wall-clock s) of running tasks
_thread: Optional[threading.Thread] = None


def _flusher() -> None:
    sent: tuple[Optional[float], float] = (None, 0.0)  # (oldest running start, when) last sent
    while True:
        time.sleep(FLUSH_S)
        with _lock:
            batches = dict(_buffer)
            _buffer.clear()
            since = min(s for _t, s in _running.values()) if _running else None
            token = next(iter(_running.values()))[0] if _running else (next(iter(batches), None))
        now = time.time()
        if not batches and (since is None or (since == sent[0] and now - sent[1] < KEEPALIVE_S)):
            continue
        if token is not None:  # the sampler hears "still running" with the running tasks' token
            batches.setdefault(token, [])
        try:  # looked up each time: TAO may have been restarted with new samplers
            sampler = ray.get_actor(sampler_name(_proc_ids()[0]), namespace=NAMESPACE)
            for tok, batch in batches.items():
                sampler.add_spans.remote(tok, batch, os.getpid(), since if tok == token else None)
            sent = (since, now)
        except Exception:  # noqa: BLE001 - no sampler on this node: spans are dropped
            pass


def _started(token: str, task_id: str, start: float) -> None:
    global _thread
    with _lock:
        _running[task_id] = (token, start)
        if _thread is None:
            _thread = threading.Thread(target=_flusher, name="tao-spans", daemon=True)
            _thread.start()


def _ended(token: str, span: SpanRow) -> None:
    with _lock:
        _running.pop(span.task_id, None)
        _buffer.setdefault(token, []).append(span)


_proc: dict[str, str] = {}  # node id and job id of this worker process (they never change)


def _proc_ids() -> tuple[str, str]:
    if not _proc:
        ctx = ray.get_runtime_context()
        _proc["node"] = ctx.get_node_id()
        _proc["job"] = ctx.get_job_id()
    return _proc["node"], _proc["job"]


def wrap_function(fn: Callable, group: str, job: Optional[str] = None, cpus: float = 1.0) -> Callable:
    """``fn`` wrapped so that each call, given the session token first, reports its span
    (``cpus``: the logical CPUs each task reserves). Coroutine and generator functions only
    drop the token (they run, but get no span; Ray's task events still account them)."""
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        async def tao_async(_tao_token: str, *args: Any, **kwargs: Any) -> Any:
            return await fn(*args, **kwargs)
        return _named(tao_async, fn)
    if inspect.isgeneratorfunction(fn):
        def tao_gen(_tao_token: str, *args: Any, **kwargs: Any) -> Any:
            yield from fn(*args, **kwargs)
        return _named(tao_gen, fn)

    def tao_task(_tao_token: str, *args: Any, **kwargs: Any) -> Any:
        if not _tao_token:  # TAO not running in the driver: nothing to report to
            return fn(*args, **kwargs)
        tid = ray.get_runtime_context().get_task_id()
        start = time.time()
        _started(_tao_token, tid, start)
        c0 = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            end = time.time()
            node, job_id = _proc_ids()
            _ended(_tao_token, SpanRow(tid, node, start, end, time.thread_time() - c0, group, job or job_id, cpus))

    return _named(tao_task, fn)


def _named(wrapper: Callable, fn: Callable) -> Callable:

    """``wrapper`` under ``fn``'s name (the name Ray shows); no ``__wrapped__``, so Ray checks
    arguments against the wrapper's own signature."""
    for attr in ("__name__", "__qualname__", "__module__", "__doc__"):
        try:
            setattr(wrapper, attr, getattr(fn, attr))
        except (AttributeError, TypeError):
            pass
    return wrapper
