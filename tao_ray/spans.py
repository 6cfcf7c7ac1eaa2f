"""Worker side: the wrapper TAO puts around a remote function records, inside the task,
the node it ran on, its start and end (wall-clock seconds) and its CPU seconds; a daemon
thread of the worker process sends them every ``FLUSH_S`` seconds to its node's sampler
(:class:`tao_core.live.spans.SpanBuffer` says what and when). No call leaves the worker
per task.

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

from tao_core.live.spans import SpanBuffer
from tao_core.live.values import SpanRow
from tao_ray.records import NAMESPACE, sampler_name

FLUSH_S = 0.2
_buffer = SpanBuffer(keepalive_s=2.0)  # well under the sampler's STALE_S
_flusher_lock = threading.Lock()
_flushing = False


def _flusher() -> None:
    while True:
        time.sleep(FLUSH_S)
        batches, since, token = _buffer.take(time.time())
        if not batches:
            continue
        try:  # looked up each time: TAO may have been restarted with new samplers
            sampler = ray.get_actor(sampler_name(_proc_ids()[0]), namespace=NAMESPACE)
            for tok, batch in batches.items():
                sampler.add_spans.remote(tok, batch, os.getpid(), since if tok == token else None)
        except Exception:  # noqa: BLE001 - no sampler on this node: spans are dropped
            pass


def _begin(token: str, task_id: str, start: float) -> None:
    global _flushing
    _buffer.started(token, task_id, start)
    with _flusher_lock:
        if not _flushing:
            _flushing = True
            threading.Thread(target=_flusher, name="tao-spans", daemon=True).start()


def _end(token: str, span: SpanRow) -> None:
    _buffer.ended(token, span)


_proc: dict[str, str] = {}  # node id and job id of this worker process (they never change)


def _proc_ids() -> tuple[str, str]:
    if not _proc:
        ctx = ray.get_runtime_context()
        _proc["node"] = ctx.get_node_id()
        _proc["job"] = ctx.get_job_id()
    return _proc["node"], _proc["job"]


def wrap_function(fn: Callable, group: str, job: Optional[str] = None, cpus: float = 1.0) -> Callable:
    """``fn`` wrapped so that each call, given the session token first, reports its span
    (``cpus``: the logical CPUs each task reserves). The wrapper reaches this module's
    state through its functions only: Ray may pickle it by value, with its globals. Coroutine and generator functions only
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
        _begin(_tao_token, tid, start)
        c0 = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            end = time.time()
            node, job_id = _proc_ids()
            _end(_tao_token, SpanRow(tid, node, start, end, time.thread_time() - c0, group, job or job_id, cpus))

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
