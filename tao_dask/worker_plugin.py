"""The worker side of TAO on Dask: models the node's power and reports it.

Every ``interval_s`` seconds the plugin reads the CPU time of the worker process (and
its children) through :class:`tao_core.telemetry.estimator.ModeledSource`, which turns
it into the node's wall power through the node type's power curve (a worker of
``nthreads`` threads is modeled as a server of that many CPUs), and sends one message to
the scheduler on the worker's own batched stream (operation ``tao-telemetry``), so the
scheduler knows which worker sent it. It also sends the thread CPU seconds Dask measured
per task prefix. The plugin first asks the scheduler whether it takes these messages; a
scheduler without TAO gets none.

Units: seconds (wall clock, ``time.time()``, the clock of Dask's ``startstops``),
joules, watts.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any, Optional

from distributed.diagnostics.plugin import WorkerPlugin
from tornado.ioloop import PeriodicCallback

from tao_core.telemetry.estimator import ModeledSource
from tao_dask.profiles import NodeAssignment, env_node_type
from tao_dask.telemetry import OP, VERSION

logger = logging.getLogger("tao_dask")


class TAOWorkerPlugin(WorkerPlugin):
    """Samples the worker's modeled node power and per-prefix CPU time, and reports them
    to :class:`~tao_dask.scheduler_plugin.TAOSchedulerPlugin` every ``interval_s``."""

    name = "tao-worker"
    idempotent = True

    def __init__(self, assignment: Optional[NodeAssignment] = None, interval_s: float = 0.5) -> None:
        if not interval_s > 0:
            raise ValueError("interval_s: must be a positive number of seconds")
        self.assignment = assignment or NodeAssignment()
        self.interval_s = float(interval_s)
        self._worker: Any = None
        self._model: Optional[ModeledSource] = None
        self._pc: Optional[PeriodicCallback] = None
        self._type_name: Optional[str] = None

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
            nthreads = worker.state.nthreads
            self._type_name = self.assignment.type_name(worker.name, env_node_type())
            if self._type_name is None:
                logger.warning(
                    "TAO: worker %s has no node type (no mapping, no %s): its power is not modeled",
                    worker.name, "TAO_NODE_TYPE",
                )
            else:
                nt = self.assignment.resolve(self._type_name, nthreads)
                # wall clock, the clock of Dask's startstops
                self._model = ModeledSource(nt.power_curve, cpus=nthreads, processes=[os.getpid()],
                                            name=str(worker.name), curve_label=f"{nt.name} power curve",
                                            clock=time.time)
            self._send()
            self._pc = PeriodicCallback(self._send, self.interval_s * 1000.0)
            worker.periodic_callbacks["tao-telemetry"] = self._pc
            self._pc.start()
        except Exception:
            logger.warning("TAO: worker telemetry setup failed on %s; Dask runs on without it",
                           getattr(worker, "address", "?"), exc_info=True)

    def teardown(self, worker: Any) -> None:
        # No last sample: the worker's stream may already be closing. The energy after
        # the last sample (under interval_s seconds) is not counted.
        try:
            if self._pc is not None:
                self._pc.stop()
                worker.periodic_callbacks.pop("tao-telemetry", None)
        except Exception:
            logger.warning("TAO: worker telemetry teardown failed", exc_info=True)

    def _cpu_by_prefix(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for k, v in self._worker.digests_total.items():
            # ("execute", span_id, prefix, "thread-cpu", "seconds")
            if isinstance(k, tuple) and len(k) == 5 and k[0] == "execute" and k[3] == "thread-cpu":
                out[str(k[2])] = out.get(str(k[2]), 0.0) + float(v)
        return out

    def _send(self, final: bool = False) -> None:
        try:
            w = self._worker
            msg: dict[str, Any] = {
                "v": VERSION,
                "pid": os.getpid(),
                "nthreads": w.state.nthreads,
                "node_type": self._type_name,
                "final": final,
                "cpu_s": self._cpu_by_prefix(),
            }
            if self._model is not None:
                r = self._model.read()
                d = next(iter(r.domains.values()))
                msg.update(t=r.t_s, energy_j=d.energy_j, power_w=d.power_w,
                           utilization=self._model.last_utilization, source=str(d.source),
                           method=d.method, uncertainty=d.uncertainty)
            else:
                msg.update(t=time.time())
            w.batched_send({"op": OP, "msg": msg})
        except Exception:
            logger.warning("TAO: telemetry sample failed on worker %s",
                           getattr(self._worker, "address", "?"), exc_info=True)
