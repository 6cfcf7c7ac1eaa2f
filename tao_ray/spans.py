"""Worker side: the wrapper TAO puts around a remote function records, inside the task,
the node it ran on, its start and end (wall-clock seconds) and its CPU seconds, and sends
these spans in batches (every ``FLUSH_S`` seconds, from a daemon thread of the worker
process) to the sampler actor of its node. No call leaves the worker per task.

Each batch also says when the oldest task still running in this worker process started
(None when none runs), and while a task runs the flusher repeats that every ``KEEPALIVE_S``
even when no span ended: the sampler needs it to know up to which instant every task on
its node is known, so that it can attribute its energy to tasks as it goes (see
:mod:`tao_ray.sampler`).
"""
from __future__ import annotations

import inspect
import os
import threading
import time
from typing import Any, Callable, Optional

import ray

from tao_ray.sampler import NAMESPACE, sampler_name

FLUSH_S = 0.2
#: seconds between "still running" reports when no span ended (well under the sampler's STALE_S)
KEEPALIVE_S = 2.0

_lock = threading.Lock()
_buffer: list[tuple] = []
_running: dict[str, float] = {}  # task id -> start (wall-clock s) of tasks running in this process
_thread: Optional[threading.Thread] = None


def _flusher() -> None:
    sent: tuple[Optional[float], float] = (None, 0.0)  # (oldest running start, when) last sent
    while True:
        time.sleep(FLUSH_S)
        with _lock:
            batch = list(_buffer)
            _buffer.clear()
            since = min(_running.values()) if _running else None
        now = time.time()
        if not batch and (since is None or (since == sent[0] and now - sent[1] < KEEPALIVE_S)):
            continue
        try:  # looked up each time: TAO may have been restarted with new samplers
            node = ray.get_runtime_context().get_node_id()
            ray.get_actor(sampler_name(node), namespace=NAMESPACE).add_spans.remote(batch, os.getpid(), since)
            sent = (since, now)
        except Exception:  # noqa: BLE001 - no sampler on this node: spans are dropped
            pass


def _started(task_id: str, start: float) -> None:
    global _thread
    with _lock:
        _running[task_id] = start
        if _thread is None:
            _thread = threading.Thread(target=_flusher, name="tao-spans", daemon=True)
            _thread.start()


def _ended(span: tuple) -> None:
    with _lock:
        _running.pop(span[0], None)
        _buffer.append(span)


_proc: dict[str, str] = {}  # node id and job id of this worker process (they never change)


def _proc_ids() -> tuple[str, str]:
    if not _proc:
        ctx = ray.get_runtime_context()
        _proc["node"] = ctx.get_node_id()
        _proc["job"] = ctx.get_job_id()
    return _proc["node"], _proc["job"]


def wrap_function(fn: Callable, group: str, job: Optional[str] = None, cpus: float = 1.0) -> Callable:
    """``fn`` wrapped so that each call reports its span (``cpus``: the logical CPUs each
    task reserves). Coroutine and generator functions are returned unchanged (they run, but
    get no span)."""
    if inspect.iscoroutinefunction(fn) or inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        return fn

    def tao_task(*args: Any, **kwargs: Any) -> Any:
        tid = ray.get_runtime_context().get_task_id()
        start = time.time()
        _started(tid, start)
        c0 = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            end = time.time()
            node, job_id = _proc_ids()
            _ended((tid, node, start, end, time.thread_time() - c0, group, job or job_id, cpus))

    # the name Ray shows; no __wrapped__, so Ray checks arguments against (*args, **kwargs)
    for attr in ("__name__", "__qualname__", "__module__", "__doc__"):
        try:
            setattr(tao_task, attr, getattr(fn, attr))
        except (AttributeError, TypeError):
            pass
    return tao_task
