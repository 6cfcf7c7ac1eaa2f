"""The worker side of TAO on Dask: the node's sampler, its task spans and units of work.

Each worker is one node. Its type is the one declared for it (``register(workers=...,
default_type=...)``, ``TAO_NODE_TYPE``), else the worker describes its own hardware
(:func:`tao_core.hardware.describe_this_node` with its thread count) and carries the
type named after it. A :class:`tao_core.live.sampler.NodeSampler` (the sampler Ray's node
actors run) models the worker process's power from that type's curve, takes the span of
every task the worker executes (start and end from the worker's transitions, one CPU
each) and attributes its timeline to them as it settles. Every ``interval_s`` the plugin
takes a reading and sends the new readings, the settled task energies and the task
prefixes' CPU seconds to the scheduler on the worker's own batched stream (operation
``tao-telemetry``), and, when a task ends, what it counted with ``tao.count`` (operation
``tao-units``) before Dask reports the task finished. The plugin first asks the scheduler whether it takes these messages.

Units: seconds (wall clock, ``time.time()``, the clock of Dask's ``startstops``),
joules, watts.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any, Optional

from distributed.diagnostics.plugin import WorkerPlugin
from tornado.ioloop import PeriodicCallback

from tao_core import units
from tao_core.live.values import SpanRow
from tao_core.live.assignment import NodeAssignment
from tao_core.live.worker_telemetry import VERSION
from tao_dask.state import OP, UNITS_OP

logger = logging.getLogger("tao_dask")

#: runs shorter than this (s) get no settled energy on the worker: Dask's own placement takes
#: tasks that short (``min_task_s``), so the controller waits for no energy of theirs, and
#: settling thousands of them a second cost the worker's node about 7 % of its throughput
#: (``benchmarks/dask_overhead.py``). The report still accounts them: its spans come from the
#: scheduler.
MIN_SETTLED_RUN_S = 0.02
#: worker task states a task leaves when it stops running
_RUNNING = ("executing", "long-running")


#: the environment variable and the Dask config key that name a worker process's node type
ENV_VAR, CONFIG_KEY = "TAO_NODE_TYPE", "tao.node-type"


def env_node_type() -> Optional[str]:
    """The node type this process was started with (``TAO_NODE_TYPE`` or ``tao.node-type``)."""
    value = os.environ.get(ENV_VAR)
    if value:
        return value
    try:
        import dask.config

        return dask.config.get(CONFIG_KEY, None)
    except Exception:  # config broken: no type from config
        return None


def _current_key() -> Optional[str]:
    """The key of the Dask task this thread executes (None outside a task)."""
    try:
        from distributed import get_worker

        key = get_worker().get_current_task()
    except (ValueError, KeyError, AttributeError):
        return None
    return None if key is None else (key if isinstance(key, str) else str(key))


class TAOWorkerPlugin(WorkerPlugin):
    """Samples the worker's node and reports it to
    :class:`~tao_dask.scheduler_plugin.TAOSchedulerPlugin` every ``interval_s``."""

    name = "tao-worker"
    idempotent = True

    def __init__(self, assignment: Optional[NodeAssignment] = None, interval_s: float = 0.5) -> None:
        if not interval_s > 0:
            raise ValueError("interval_s: must be a positive number of seconds")
        self.assignment = assignment or NodeAssignment()
        self.interval_s = float(interval_s)
        self._worker: Any = None
        self._sampler: Any = None
        self._pc: Optional[PeriodicCallback] = None
        self._type_name: Optional[str] = None
        self._described: Optional[dict] = None
        self._since = (0, 0, 0)
        self._running: dict[Any, tuple[str, float]] = {}  # key -> (span id, start wall-clock s)
        self._names: dict[str, tuple[str, str]] = {}  # span id -> (key, group) until its energy is sent
        self._seq = 0

    async def setup(self, worker: Any) -> None:
        try:
            if not await worker.scheduler.tao_telemetry_ready():
                raise RuntimeError("the scheduler's TAO plugin is closed")
        except Exception as exc:
            logger.warning("TAO: the scheduler of worker %s takes no TAO telemetry (%s); none is sent",
                           worker.address, exc)
            return
        try:
            self._worker = worker
            # discovery and the sampler (its imports, the power model) take about a second of
            # CPU: in a thread, so the worker's event loop (shared by every in-process worker
            # and the scheduler of a local cluster) keeps serving meanwhile
            self._sampler = await asyncio.to_thread(self._prepare, worker)
            units.set_task_resolver(_current_key)
            self._send()
            self._pc = PeriodicCallback(self._send, self.interval_s * 1000.0)
            worker.periodic_callbacks["tao-telemetry"] = self._pc
            self._pc.start()
        except Exception:
            logger.warning("TAO: worker telemetry setup failed on %s; Dask runs on without it",
                           getattr(worker, "address", "?"), exc_info=True)

    def _prepare(self, worker: Any) -> Any:
        """The started sampler of the worker's node type (None: it has no type)."""
        nt = self._node_type(worker)
        return None if nt is None else self._start_sampler(worker, nt)

    def _node_type(self, worker: Any) -> Any:
        """The worker's declared type, else the one it describes (None: neither)."""
        nthreads = worker.state.nthreads
        self._type_name = self.assignment.type_name(worker.name, env_node_type())
        if self._type_name is not None:
            return self.assignment.resolve(self._type_name, nthreads)
        if not self.assignment.discover:
            logger.warning("TAO: worker %s has no node type (no mapping, no TAO_NODE_TYPE, discovery off): "
                           "TAO only observes it", worker.name)
            return None
        from tao_core.hardware import describe_this_node
        from tao_core.power.node_json import node_type_to_dict

        try:
            d = describe_this_node(cpus=nthreads)
        except Exception as exc:
            logger.warning("TAO: worker %s could not describe its hardware (%s: %s): TAO only observes it",
                           worker.name, type(exc).__name__, exc)
            return None
        self._described = {**node_type_to_dict(d.node_type), "origin": d.model.provenance.to_dict()}
        logger.info("TAO: worker %s described itself as %s", worker.name, d.node_type.name)
        return d.node_type

    def _start_sampler(self, worker: Any, nt: Any) -> Any:
        from tao_core.live.sampler import NodeSampler, make_source

        pid = os.getpid()
        unc = (self._described or {}).get("origin", {}).get("uncertainty")
        src = make_source(nt.power_curve, worker.state.nthreads, processes=lambda: [pid],
                          label=f"{nt.name} power curve", **({} if unc is None else {"uncertainty": unc}))
        # the plugin reads the source when it sends (the scheduler gets each reading at once);
        # the sampler's own thread settles the timeline and reads in between
        return NodeSampler(worker.address, src, cpus=worker.state.nthreads, idle_w=nt.idle_w,
                           interval_s=max(1.0, 2.0 * self.interval_s)).start()

    def teardown(self, worker: Any) -> None:
        # No last sample: the worker's stream may already be closing. The energy after
        # the last sample (under interval_s seconds) is not counted.
        try:
            if self._pc is not None:
                self._pc.stop()
                worker.periodic_callbacks.pop("tao-telemetry", None)
            if self._sampler is not None:
                self._sampler.stop()
            units.set_task_resolver(None)
        except Exception:
            logger.warning("TAO: worker telemetry teardown failed", exc_info=True)

    # ------------------------------------------------------------------ task spans
    def transition(self, key: Any, start: str, finish: str, **kw: Any) -> None:
        try:
            if finish == "executing":
                self._seq += 1
                self._running[key] = (f"{key}@{self._seq}", time.time())
            elif start in _RUNNING and finish not in _RUNNING:
                self._ended(key)
        except Exception:
            logger.warning("TAO: span of task %r not recorded", key, exc_info=True)

    def _ended(self, key: Any) -> None:
        """``key`` stopped running: its span to the sampler, its counts to the scheduler
        (before Dask reports the task finished, on the same stream)."""
        got = self._running.pop(key, None)
        k = key if isinstance(key, str) else str(key)
        counted = units.drain(k)
        if counted and self._worker is not None:
            self._worker.batched_send({"op": UNITS_OP, "msg": {"key": k, "units": counted}})
        if got is None or self._sampler is None:
            return
        sid, t0 = got
        if time.time() - t0 < MIN_SETTLED_RUN_S:
            return
        from distributed.utils import key_split

        group = key_split(key)
        self._names[sid] = (k, group)
        since = min((t for _s, t in self._running.values()), default=None)
        self._sampler.add_spans([SpanRow(sid, self._worker.address, t0, time.time(), None, group, "", 1.0)],
                                os.getpid(), since)

    # ------------------------------------------------------------------ messages
    def _cpu_by_prefix(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for k, v in self._worker.digests_total.items():
            # ("execute", span_id, prefix, "thread-cpu", "seconds")
            if isinstance(k, tuple) and len(k) == 5 and k[0] == "execute" and k[3] == "thread-cpu":
                out[str(k[2])] = out.get(str(k[2]), 0.0) + float(v)
        return out

    def _send(self) -> None:
        try:
            w = self._worker
            base: dict[str, Any] = {"v": VERSION, "pid": os.getpid(), "nthreads": w.state.nthreads,
                                    "node_type": self._type_name, "final": False}
            if self._described is not None:
                base["described"] = self._described
            if self._sampler is None:
                w.batched_send({"op": OP, "msg": {**base, "t": time.time(), "cpu_s": self._cpu_by_prefix()}})
                return
            self._sampler.sample()
            b = self._sampler.fetch(self._since)
            self._since = (b.first_row + len(b.rows), b.first_span + len(b.spans), b.first_energy + len(b.energies))
            energies = []
            for e in b.energies:
                k, group = self._names.pop(e.task_id, (e.task_id, e.task_id))
                energies.append([k, group, e.energy_j, e.run_s])
            for i, r in enumerate(b.rows):
                msg = {**base, "t": r.t_s, "energy_j": r.energy_j, "power_w": r.power_w, "utilization": r.util,
                       "source": r.source, "method": r.method, "uncertainty": r.uncertainty or 0.0}
                if i == len(b.rows) - 1:
                    msg.update(cpu_s=self._cpu_by_prefix(), energies=energies)
                w.batched_send({"op": OP, "msg": msg})
        except Exception:
            logger.warning("TAO: telemetry sample failed on worker %s",
                           getattr(self._worker, "address", "?"), exc_info=True)
