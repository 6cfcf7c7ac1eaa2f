"""Worker side: the wrapper TAO puts around a remote function records, inside the task,
the node it ran on, its start and end (wall-clock seconds) and its CPU seconds, and sends
these spans in batches (every ``FLUSH_S`` seconds, from a daemon thread of the worker
process) to the sampler actor of its node. No call leaves the worker per task.
"""
from __future__ import annotations

import inspect
import threading
import time
from typing import Any, Callable, Optional

import ray

from tao_ray.sampler import NAMESPACE, sampler_name

FLUSH_S = 0.2

_lock = threading.Lock()
_buffer: list[tuple] = []
_thread: Optional[threading.Thread] = None
_sampler: Any = None


def _flusher() -> None:
    global _sampler
    while True:
        time.sleep(FLUSH_S)
        with _lock:
            batch = list(_buffer)
            _buffer.clear()
        if not batch:
            continue
        try:  # looked up each time: TAO may have been restarted with new samplers
            node = ray.get_runtime_context().get_node_id()
            _sampler = ray.get_actor(sampler_name(node), namespace=NAMESPACE)
            _sampler.add_spans.remote(batch)
        except Exception:  # noqa: BLE001 - no sampler on this node: spans are dropped
            _sampler = None


def _record(span: tuple) -> None:
    global _thread
    with _lock:
        _buffer.append(span)
        if _thread is None:
            _thread = threading.Thread(target=_flusher, name="tao-spans", daemon=True)
            _thread.start()


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
        start = time.time()
        c0 = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            end = time.time()
            node, job_id = _proc_ids()
            _record((ray.get_runtime_context().get_task_id(), node, start, end, time.thread_time() - c0,
                     group, job or job_id, cpus))

    # the name Ray shows; no __wrapped__, so Ray checks arguments against (*args, **kwargs)
    for attr in ("__name__", "__qualname__", "__module__", "__doc__"):
        try:
            setattr(tao_task, attr, getattr(fn, attr))
        except (AttributeError, TypeError):
            pass
    return tao_task
