"""The scheduler side of TAO on Dask: one ``SchedulerPlugin`` that hands each Dask event
to the part with that job. The policy itself lives in ``tao_core.control.Controller``.

* :class:`~tao_dask.membership.Membership`: workers joining and leaving, each a node
  sized by its own threads and GPUs (``add_node`` / ``remove_node``).
* :class:`~tao_core.live.worker_telemetry.TelemetryInbox`: samples from TAO's worker
  plugin, taken only from the worker's own batched stream and checked (``observe_node``,
  ``observe_cluster_power``).
* :class:`~tao_core.live.runs.RunLog`: the compute interval of every task run (Dask's
  ``startstops``).
* :class:`~tao_dask.placement.Placement`: pins ready tasks to the controller's choice,
  parks those it defers, leaves the rest to Dask.
* :class:`~tao_dask.watchdog.Watchdog`: hands parked tasks back to Dask when TAO's
  admission stalls.
* :class:`~tao_dask.scaling.ScalingAdvisor`: advice for ``EnergyAdaptive`` and the order
  of Dask's own downscaling.

Fail open: every TAO error is caught, logged as a warning with its context, and the task
goes to Dask's own placement; after ``max_errors`` errors TAO stops placing and only
observes. Bad telemetry is not an error: it is dropped and counted.

Units: seconds (wall clock, ``time.time()``), joules, watts.
"""
from __future__ import annotations

import logging
import time
from collections import Counter, OrderedDict
from typing import Any, Mapping, Optional

from distributed.diagnostics.plugin import SchedulerPlugin
from tornado.ioloop import PeriodicCallback

from tao_core.power.node_json import node_type_to_dict
from tao_core.units import add_units
from tao_dask.membership import Membership
from tao_dask.placement import HOLD_ADDRESS, EnergyBudgetExceeded, Placement
from tao_core.live.assignment import NodeAssignment
from tao_core.live.runs import MAX_EVENTS, MAX_RUNS, DecisionLog, RunLog
from tao_core.live.worker_telemetry import TelemetryInbox, parse_units
from tao_dask.scaling import ScalingAdvisor
from tao_dask.state import OP, TOPIC, UNITS_OP, key_str
from tao_dask.watchdog import Watchdog

logger = logging.getLogger("tao_dask")

__all__ = ["TAOSchedulerPlugin", "HOLD_ADDRESS", "EnergyBudgetExceeded"]

#: why a sample from a worker that is no longer connected is dropped
GONE = "from a worker that is not connected"

#: counts of tasks that ended on a worker and whose Dask end has not come yet
MAX_PENDING_UNITS = 100_000
#: why TAO only observes when no worker has a node type
OBSERVE_ONLY = ("no worker has a TAO node type: TAO only observes (it places nothing and meters no worker, so no "
                "task gets energy). Declare types (register(workers=..., default_type=...), TAO_NODE_TYPE) or let "
                "workers describe their hardware (discover=True, the default)")

#: the plugin's counters (``stats()["counts"]``): tasks TAO pinned to a worker, admitted
#: for Dask to place, parked, released from parking, left to Dask (each dispatch Dask
#: placed), handed back by the watchdog, moved by work stealing, seceded, rejected; TAO
#: errors and the decisions they cost; telemetry dropped (malformed or implausible) and
#: refused (not from a worker's own stream); settled task energies fed to the controller
COUNTS = ("placed", "admitted", "deferred", "released", "left_to_dask", "watchdog", "stolen", "seceded",
          "rejected", "errors", "fallbacks", "telemetry_dropped", "telemetry_refused", "energy_settled")


def compute_interval(startstops: Any) -> Optional[tuple[float, float]]:
    """(start, stop) of the compute step of a Dask ``startstops`` list (None: none)."""
    t = None
    for ss in startstops or ():
        if ss.get("action") == "compute":
            t = (ss["start"], ss["stop"])
    return t


class TAOSchedulerPlugin(SchedulerPlugin):
    """Energy-aware placement, deferral and accounting for a Dask scheduler.

    Parameters
    ----------
    assignment: which node type each worker is (see :mod:`tao_core.live.assignment`; a
        worker's own ``TAO_NODE_TYPE`` or ``tao.node-type`` counts as the type it reports).
    config: a ``ControllerConfig`` (power budget, lambda, ...); None: the defaults.
    place: False to observe only (telemetry, per-task energy, metrics; Dask places).
    min_task_s: prefixes measured faster than this (seconds) are left to Dask.
    pump_interval_s: how often parked tasks are reconsidered at the latest (seconds).
    watchdog_s: how long a parked task may wait while TAO runs nothing and a worker idles
        before it goes back to Dask (seconds).
    max_errors: TAO errors tolerated before it stops placing (fail open).
    max_spans: task runs kept for per-task energy (older ones are dropped and counted).
    """

    name = "tao"

    def __init__(
        self,
        assignment: Optional[NodeAssignment] = None,
        config: Any = None,
        *,
        place: bool = True,
        min_task_s: float = 0.02,
        pump_interval_s: float = 0.1,
        watchdog_s: float = 10.0,
        max_errors: int = 20,
        max_spans: int = MAX_RUNS,
    ) -> None:
        if min_task_s < 0 or not pump_interval_s > 0 or not watchdog_s > 0:
            raise ValueError("min_task_s must be >= 0, pump_interval_s and watchdog_s > 0 seconds")
        self.assignment = assignment or NodeAssignment()
        self.config = config
        self.place = bool(place)
        self.min_task_s = float(min_task_s)
        self.pump_interval_s = float(pump_interval_s)
        self.watchdog_s = float(watchdog_s)
        self.max_errors = int(max_errors)
        self.max_spans = int(max_spans)
        self.scheduler: Any = None

    _SETTINGS = ("assignment", "config", "place", "min_task_s", "pump_interval_s", "watchdog_s",
                 "max_errors", "max_spans")

    def __getstate__(self) -> dict[str, Any]:
        return {k: self.__dict__[k] for k in self._SETTINGS}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.scheduler = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self.counts: Counter = Counter()
        self.started_s = time.time()
        self._placing = self.place
        self._closed = False
        self._warned: set[str] = set()
        self.events = DecisionLog(MAX_EVENTS)
        self.members = Membership(self.assignment, self._fail)
        self.inbox = TelemetryInbox()
        self.spans = RunLog(self.max_spans)
        self.pending_units: "OrderedDict[tuple[str, str], dict]" = OrderedDict()
        self.units_by_group: dict[str, dict[str, float]] = {}
        self.units_dropped = 0
        self.placement = Placement(scheduler, self.members, self.spans, self.events, self.counts, self._fail,
                                   min_task_s=self.min_task_s)
        self.placement.active = self._placing
        self.watchdog = Watchdog(self.placement, self.watchdog_s)
        self.scaling = ScalingAdvisor(scheduler, self.members, self._pending, self.placement.reopen, self._fail)
        # first, so a worker's telemetry always has somewhere to go
        scheduler.stream_handlers[OP] = self._telemetry
        scheduler.stream_handlers[UNITS_OP] = self._units
        scheduler.handlers["tao_telemetry_ready"] = self._telemetry_ready
        scheduler.handlers["tao_scaling"] = self.scaling.advice
        scheduler.handlers["tao_keep"] = self.scaling.keep
        scheduler.handlers["tao_export"] = self.export
        try:
            from tao_dask import metrics

            metrics.install(self)
        except Exception as exc:
            self._fail("start (metrics)", exc)
        for ws in list(scheduler.workers.values()):
            self.members.join(ws)
        self._pc = PeriodicCallback(self._tick, self.pump_interval_s * 1000.0)
        self._pc.start()

    async def close(self) -> None:
        self._shut()

    def _shut(self) -> None:
        if getattr(self, "_pc", None) is not None:
            self._pc.stop()
        self._closed = True

    # ------------------------------------------------------------------ failure
    def _fail(self, context: str, exc: BaseException) -> None:
        self.counts["errors"] += 1
        logger.warning("TAO: %s failed (%s: %s); Dask's own scheduling is used", context,
                       type(exc).__name__, exc, exc_info=self.counts["errors"] <= 3)
        if self._placing and self.counts["errors"] >= self.max_errors:
            self._stop_placing(f"{self.counts['errors']} errors")

    def _stop_placing(self, why: str) -> None:
        self._placing = False
        self.placement.stop()
        logger.warning("TAO: %s; placement is off, TAO only observes from now on", why)

    def _warn_once(self, tag: str, msg: str, *args: Any) -> None:
        if tag not in self._warned:
            self._warned.add(tag)
            logger.warning(msg, *args)

    def _tick(self) -> None:
        if self.scheduler.plugins.get(self.name) is not self:  # unregistered: let go of everything
            if self._placing:
                self._stop_placing("the plugin was removed from the scheduler")
            self.placement.pump()
            self._shut()
            return
        try:
            self.placement.tick()
            self.watchdog.tick()
        except Exception as exc:
            self._fail("the placement pump", exc)

    # ------------------------------------------------------------------ controller
    def _ensure_controller(self) -> Any:
        if self.members.ctl is None and self._placing:
            self.members.make_controller(self.config, self.events.append)
        return self.members.ctl

    def _pending(self) -> list:
        return self.placement.pending()

    # ------------------------------------------------------------------ workers
    def add_worker(self, scheduler: Any, worker: str) -> None:
        try:
            ws = scheduler.workers.get(worker)
            if ws is not None:
                self.members.join(ws)
                self.placement.reopen()
        except Exception as exc:
            self._fail(f"add_worker {worker}", exc)

    def remove_worker(self, scheduler: Any, worker: str, *, stimulus_id: str = "", **kw: Any) -> None:
        try:
            self.members.leave(worker)
            self.inbox.forget_power(worker)
            self.placement.forget_settling(worker)
            self.placement.reopen()
        except Exception as exc:
            self._fail(f"remove_worker {worker}", exc)

    # ------------------------------------------------------------------ telemetry
    def _telemetry_ready(self) -> bool:
        """A worker plugin asks whether this scheduler takes its samples."""
        return not self._closed

    def _telemetry(self, worker: str, msg: Any) -> None:
        """Stream handler: one sample on the batched stream of ``worker`` (the address Dask
        gives for the stream that carried it, which no sender can choose). It never
        raises: Dask would drop the worker's connection."""
        if self._closed:
            return
        try:
            s = self._checked(worker, msg)
        except Exception as exc:  # a message no check foresaw: dropped, not a TAO error
            s = f"unreadable ({type(exc).__name__})"
            self.inbox.dropped[s] += 1
        if isinstance(s, str):
            self.counts["telemetry_dropped"] += 1
            if s == GONE:  # the last sample of a worker Dask just removed: expected
                logger.debug("TAO: telemetry from worker %s dropped (%s)", worker, s)
            else:
                self._warn_once(f"telemetry:{s}", "TAO: telemetry from worker %s dropped (%s); "
                                "later drops are only counted", worker, s)
            return
        try:
            self._use(worker, s)
        except Exception as exc:
            self._fail(f"using telemetry of worker {worker}", exc)

    def _checked(self, worker: str, msg: Any) -> Any:
        """The sample filed under ``worker``, or why it was dropped."""
        if worker not in self.scheduler.workers:
            self.inbox.dropped[GONE] += 1
            return GONE
        n = self.members.nodes.get(worker)
        peak = None if n is None or n.node_type is None else n.node_type.peak_w
        return self.inbox.receive(worker, msg, now_s=time.time(), peak_w=peak)

    def _use(self, worker: str, s: Any) -> None:
        """Give a checked sample to the controller."""
        n = self.members.nodes.get(worker)
        if n is None or n.node_type is None or n.pid is None:
            n = self.members.join(self.scheduler.workers[worker], s.node_type, s.pid, *(s.described or (None, None)))
        if s.energies:
            self.placement.settled(worker, s.energies)
        ctl = self.members.ctl
        if s.energy_j is not None and ctl is not None and n is not None and n.managed:
            ctl.observe_node(worker, now_s=s.t_s, power_w=s.power_w, utilization=s.utilization)
            ctl.observe_cluster_power(now_s=s.t_s, power_w=sum(self.inbox.last_power.values()))
            self.placement.reopen()

    def _units(self, worker: str, msg: Any) -> None:
        """Stream handler: what a task counted (``tao.count``), sent by its worker just
        before Dask reports it finished; kept until its span is recorded. Never raises."""
        got = parse_units(msg)
        if isinstance(got, str):
            self.inbox.dropped[got] += 1
            self.counts["telemetry_dropped"] += 1
            return
        self.pending_units[(worker, got[0])] = got[1]
        if len(self.pending_units) > MAX_PENDING_UNITS:
            self.pending_units.popitem(last=False)
            self.units_dropped += 1

    def log_event(self, topic: str, msg: Any) -> None:
        if topic == TOPIC:  # a client's event, not a worker's stream: refused
            self.counts["telemetry_refused"] += 1
            self._warn_once("refused", "TAO: an event on topic %r was refused: TAO takes telemetry only "
                            "from a worker's own stream", TOPIC)

    # ------------------------------------------------------------------ tasks
    def update_graph(self, scheduler: Any, **kw: Any) -> None:
        try:
            if self._placing and self.members.ctl is None:
                self._ensure_controller()
        except Exception as exc:
            self._fail("creating the controller", exc)

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kw: Any) -> None:
        if start == finish:  # Dask tried and the task stayed where it was (no worker, queue full)
            return
        p = self.placement
        try:
            if finish == "waiting":
                if self._placing:
                    p.on_waiting(key)
            elif finish == "processing":
                p.dispatched(key)
            elif start == "processing":
                self._left_processing(key, finish, kw)
            else:
                if start == "no-worker":
                    p.unparked(key)
                if finish != "queued" and key in p.pins:  # admitted or pinned, never ran
                    p.finished(key, finish, None, None)
                if finish == "memory" and self._placing:  # data from elsewhere (scatter, a replica)
                    p.on_memory(key)
        except Exception as exc:
            self._fail(f"transition {key!r} {start}->{finish}", exc)

    def _left_processing(self, key: Any, finish: str, kw: dict[str, Any]) -> None:
        worker = kw.get("worker")
        span = None
        if finish in ("memory", "erred"):
            ts = self.scheduler.tasks.get(key)
            group = ts.prefix.name if ts is not None else str(key)
            job = (ts.annotations or {}).get("tao_job") if ts is not None else None
            k = key_str(key)
            units = self.pending_units.pop((worker, k), None)
            interval = compute_interval(kw.get("startstops"))
            if interval is not None and worker is not None:
                span = self.spans.record(k, group, worker, *interval, finish,
                                         None if job is None else str(job), units)
            if units:
                self.units_by_group[group] = add_units(self.units_by_group.get(group, {}), units)
        p = self.placement
        if key in p.pins:
            p.finished(key, finish, worker, None if span is None else span.end_s - span.start_s)
        if finish == "memory" and self._placing:
            p.on_memory(key)

    # ------------------------------------------------------------------ scaling
    def valid_workers_downscaling(self, scheduler: Any, workers: list[Any]) -> list[Any]:
        return self.scaling.downscaling_order(workers)

    def scaling_advice(self, target: Optional[int] = None) -> dict[str, Any]:
        return self.scaling.advice(target)

    # ------------------------------------------------------------------ export
    def _config_dict(self) -> dict[str, Any]:
        from tao_core.control import ControllerConfig

        return (self.config if self.config is not None else ControllerConfig()).to_dict()

    def stats(self) -> dict[str, Any]:
        """Counters: placement outcomes, reasons tasks were left to Dask, telemetry
        refused by reason, runs kept and dropped."""
        p = self.placement
        typed = any(n.node_type is not None and n.left_s is None for n in self.members.nodes.values())
        return {
            "placing": self._placing,
            "mode": "placing" if self._placing and typed else "observe-only",
            "why": "" if typed else OBSERVE_ONLY,
            "counts": {**dict.fromkeys(COUNTS, 0), **self.counts},
            "left_reasons": dict(p.left_reasons),
            "telemetry_dropped": dict(self.inbox.dropped),
            "placed_on": dict(p.placed_on),
            "pinned_now": len(p.pins),
            "held_now": len(p.holds),
            "spans_kept": len(self.spans.buffer),
            "spans_dropped": self.spans.dropped,
            "events_dropped": self.events.dropped,
        }

    def work_so_far(self) -> list[Any]:
        """A work record per task group: its tasks' settled energy (J) and the units of work
        they counted, for the live per-unit metrics."""
        from tao_core.accounting.records import WorkRecord

        settled = self.placement.settlement.by_group_j
        groups = set(settled) | set(self.units_by_group)
        src = "+".join(sorted({tl.source for tl in self.inbox.timelines.values()})) or "modeled"
        return [WorkRecord("group", g, float(settled.get(g, 0.0)), src,
                           "settled attribution of the workers' timelines", group=g,
                           units=self.units_by_group.get(g, {})) for g in sorted(groups)]

    def export(self, start_index: int = 0) -> dict[str, Any]:
        """Everything the report needs, as plain data; ``spans`` from ``start_index`` on
        (``span_index``: where the next call may start)."""
        nodes = []
        for n in self.members.nodes.values():
            nt = n.node_type
            nodes.append({
                "address": n.address, "name": n.name, "nthreads": n.nthreads, "gpus": n.gpus,
                "node_type": n.type_name, "joined_s": n.joined_s, "left_s": n.left_s,
                "managed": n.managed, "pid": n.pid, "described": n.described, "curve": n.curve,
                "node_type_json": None if nt is None else node_type_to_dict(nt),
                "idle_w": None if nt is None else nt.idle_w,
                "peak_w": None if nt is None else nt.peak_w,
                "power_curve_w": None if nt is None else list(nt.power_curve.points_w),
            })
        out = self.stats()
        out.update({
            "engine": "dask",
            "started_s": self.started_s,
            "exported_s": time.time(),
            "nodes": nodes,
            "timelines": {a: tl.to_dict() for a, tl in self.inbox.timelines.items()},
            "spans": [list(s) for s in self.spans.collect(start_index)],
            "span_index": self.spans.index,
            "cpu_s": dict(self.inbox.cpu_s),
            "decisions": [e.to_dict() for e in self.events.buffer],
            "config": self._config_dict(),
        })
        return out
