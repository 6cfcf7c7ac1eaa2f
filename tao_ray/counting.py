"""Worker side of units of work: ``tao.count(unit, n)`` inside any Ray task or actor
method, wrapped by TAO or a plain ``@ray.remote``, is charged to that task.

Nothing runs until a task counts: the first ``tao.count`` in a worker process calls
:func:`install` (the ``tao.task_resolvers`` entry point of this package,
``tao_core.units``), which registers Ray's task id (``ray.get_runtime_context()``) as the
current task and starts a daemon thread that every ``FLUSH_S`` seconds drains the process's
counts and sends them, fire and forget, to its node's sampler (``add_counts``: (task id,
unit, amount) triples; the sampler checks them and stamps node and time). The driver
collects them with the node's timeline and the report charges them to the task of the same
id, whether its span came from TAO's wrapper or from Ray's task events.

The samplers take counts from every job on the cluster (its tasks are all accounted), so
this is their one call without the session token; a count only ever adds to a task that
Ray says ran on that node. Counts made while no TAO session runs, or on a node without a
sampler, are dropped when sent.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from typing import Optional

from tao_core import units

FLUSH_S = 0.2
_started = False
_start_lock = threading.Lock()


def install() -> bool:
    """Register Ray's current task as ``tao.count``'s task, in a Ray worker process (True);
    anywhere else (no Ray loaded, a driver) nothing (False)."""
    global _started
    if "ray" not in sys.modules:
        return False
    import ray

    if not ray.is_initialized():
        return False
    ctx = ray.get_runtime_context()
    if ctx.worker.mode != ray.WORKER_MODE:
        return False
    units.set_task_resolver(ctx.get_task_id)
    with _start_lock:
        if not _started:
            _started = True
            threading.Thread(target=_flusher, args=(ctx.get_node_id(),), name="tao-units", daemon=True).start()
    return True


def send(node_id: str) -> Optional[int]:
    """Send the counts drained now to ``node_id``'s sampler; how many were sent (None:
    nothing to send, or no sampler there: dropped)."""
    import ray

    from tao_ray.records import NAMESPACE, sampler_name

    drained = units.drain_all()
    if not drained:
        return None
    batch = [(tid, unit, n) for tid, counts in drained.items() for unit, n in counts.items()]
    try:  # looked up each time: TAO may have been restarted with new samplers
        ray.get_actor(sampler_name(node_id), namespace=NAMESPACE).add_counts.remote(batch, os.getpid())
    except Exception:  # noqa: BLE001 - no TAO session on this node: counts are dropped
        return None
    return len(batch)


def _flusher(node_id: str) -> None:
    while True:
        time.sleep(FLUSH_S)
        send(node_id)
