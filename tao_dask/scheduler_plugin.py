"""The scheduler side of TAO on Dask.

``TAOSchedulerPlugin`` turns Dask scheduler events into controller calls and controller
decisions into Dask actions; the policy itself lives in ``tao_core.control.Controller``.

* Workers joining and leaving become ``add_node`` / ``remove_node``; telemetry events
  from :class:`~tao_dask.worker_plugin.TAOWorkerPlugin` become ``observe_node`` and
  ``observe_cluster_power``.
* When a task becomes ready to run (its own ``released -> waiting`` transition with no
  missing dependency, or the ``processing -> memory`` transition of its last missing
  dependency), the plugin asks ``Controller.decide``. PLACE sets
  ``ts.worker_restrictions = {worker}`` (strict) before Dask's ``waiting -> processing``
  transition runs, so Dask sends it there. DEFER restricts the task to a worker address
  that never exists, so Dask parks it in its ``no-worker`` state, and TAO keeps it in
  its own admission queue (Dask priority order); a pump on the event loop asks again as
  tasks finish, telemetry arrives or time passes, and releases it with
  ``no-worker -> processing``. Parked tasks are never lost: they are ordinary Dask tasks.
* TAO's admission queue takes the place of Dask's root-ish queuing for the tasks it
  decides (a restricted task is never root-ish). Tasks whose prefix Dask has measured
  at under ``min_task_s`` are left to Dask's own placement and queuing: a decision per
  task would cost more than it could save; their energy is still attributed.
* Fail open: every TAO error is caught, logged as a warning with its context, and the
  task goes to Dask's own placement; after ``max_errors`` errors TAO stops placing and
  only observes.

Units: seconds (wall clock, ``time.time()``), joules, watts.
"""
from __future__ import annotations

import dataclasses
import heapq
import itertools
import logging
import time
from typing import Any, Mapping, Optional

from distributed.diagnostics.plugin import SchedulerPlugin
from tornado.ioloop import PeriodicCallback

from tao_core.control.types import Action, NodeState, TaskRequest
from tao_dask.profiles import NodeAssignment
from tao_dask.state import Timeline, WorkerNode
from tao_dask.worker_plugin import TOPIC

logger = logging.getLogger("tao_dask")

class EnergyBudgetExceeded(RuntimeError):
    """A task TAO did not run: its job's energy budget is spent (``job_budget_mode="deny"``)."""


#: A worker address no worker ever has: tasks restricted to it wait in ``no-worker``.
HOLD_ADDRESS = "tao-deferred://nowhere"

#: Most decision events kept in memory for the report and the ledger.
MAX_EVENTS = 200_000


def _controller_classes() -> tuple[Any, Any]:
    from tao_core.control import Controller, ControllerConfig

    return Controller, ControllerConfig


class TAOSchedulerPlugin(SchedulerPlugin):
    """Energy-aware placement, deferral and accounting for a Dask scheduler.

    Parameters
    ----------
    assignment: which node type each worker is (see :mod:`tao_dask.profiles`).
    config: a ``ControllerConfig`` (power budget, lambda, ...); None: the defaults.
    place: False to observe only (telemetry, per-task energy, metrics; Dask places).
    min_task_s: prefixes measured faster than this (seconds) are left to Dask.
    pump_interval_s: how often parked tasks are reconsidered at the latest (seconds).
    max_errors: TAO errors tolerated before it stops placing (fail open).
    """

    name = "tao"

    #: seconds a worker the plan powered off may stay before TAO counts it as kept (ON)
    retire_grace_s = 5.0
    #: task spans kept for per-task energy (about 150 bytes each); later ones are counted only
    max_spans = 2_000_000

    def __init__(
        self,
        assignment: Optional[NodeAssignment] = None,
        config: Any = None,
        *,
        place: bool = True,
        min_task_s: float = 0.02,
        pump_interval_s: float = 0.1,
        max_errors: int = 20,
    ) -> None:
        if min_task_s < 0 or not pump_interval_s > 0:
            raise ValueError("min_task_s must be >= 0 and pump_interval_s > 0 seconds")
        self.assignment = assignment or NodeAssignment()
        self.config = config
        self.place = bool(place)
        self.min_task_s = float(min_task_s)
        self.pump_interval_s = float(pump_interval_s)
        self.max_errors = int(max_errors)
        self.scheduler: Any = None

    # ------------------------------------------------------------------ lifecycle
    def __getstate__(self) -> dict[str, Any]:
        keep = ("assignment", "config", "place", "min_task_s", "pump_interval_s", "max_errors")
        return {k: self.__dict__[k] for k in keep}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.scheduler = None

    def _init_state(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self.ctl: Any = None
        self.nodes: dict[str, WorkerNode] = {}
        self.timelines: dict[str, Timeline] = {}
        self.cpu_s: dict[str, dict[str, float]] = {}
        self.last_power: dict[str, float] = {}
        self.spans: list[tuple[str, str, str, float, float]] = []
        self.decided: dict[Any, str] = {}  # key -> worker address of a live PLACE
        self.held: list[tuple[Any, int, Any]] = []  # heap of (priority, seq, key)
        self.held_keys: set[Any] = set()
        self.events: list[Any] = []
        self.counts = {"placed": 0, "deferred": 0, "released": 0, "left_to_dask": 0,
                       "fallbacks": 0, "errors": 0, "events_dropped": 0, "spans_dropped": 0}
        self.placed_on: dict[str, int] = {}
        self.started_s = time.time()
        self._seq = itertools.count()
        self._closed = False  # admission closed since the last DEFER, until something changes
        self._pump_scheduled = False
        self._placing = self.place
        self._warned: set[str] = set()
        self._pc: Optional[PeriodicCallback] = None
        self._powered_off: dict[str, float] = {}  # node -> when a plan powered it off
        self._rejected: dict[Any, str] = {}  # key -> reason, parked until the pump errs it

    async def start(self, scheduler: Any) -> None:
        self._init_state(scheduler)
        try:
            scheduler.handlers["tao_scaling"] = self.scaling_advice
            scheduler.handlers["tao_export"] = self.export
            scheduler.handlers["tao_keep"] = self.keep_workers
            from tao_dask import metrics

            metrics.install(self)
        except Exception as exc:
            self._fail("start (handlers, metrics)", exc)
        for addr in list(scheduler.workers):
            self._join(addr)
        self._pc = PeriodicCallback(self._tick, self.pump_interval_s * 1000.0)
        self._pc.start()

    async def close(self) -> None:
        if getattr(self, "_pc", None) is not None:
            self._pc.stop()

    # ------------------------------------------------------------------ failure
    def _fail(self, context: str, exc: BaseException) -> None:
        self.counts["errors"] += 1
        logger.warning("TAO: %s failed (%s: %s); Dask's own scheduling is used", context,
                       type(exc).__name__, exc, exc_info=self.counts["errors"] <= 3)
        if self._placing and self.counts["errors"] >= self.max_errors:
            self._placing = False
            logger.warning("TAO: %d errors; placement is off, TAO only observes from now on",
                           self.counts["errors"])
            self._schedule_pump()

    def _warn_once(self, tag: str, msg: str, *args: Any) -> None:
        if tag not in self._warned:
            self._warned.add(tag)
            logger.warning(msg, *args)

    # ------------------------------------------------------------------ controller
    def _event(self, ev: Any) -> None:
        if len(self.events) < MAX_EVENTS:
            self.events.append(ev)
        else:
            self.counts["events_dropped"] += 1

    def _ensure_controller(self) -> Any:
        if self.ctl is not None or not self._placing:
            return self.ctl
        types = {n.node_type.name: n.node_type for n in self.nodes.values() if n.node_type is not None}
        types.update(self.assignment.node_types)
        if not types:
            return None
        Controller, _ = _controller_classes()
        self.ctl = Controller(list(types.values()), self.config, event_sink=self._event)
        now = time.time()
        for n in self.nodes.values():
            if n.left_s is None and n.node_type is not None:
                self._ctl_add(n, now)
        return self.ctl

    def _ctl_add(self, n: WorkerNode, now: float) -> None:
        try:
            if n.node_type.name not in self.ctl.type_index:
                self.ctl.add_node_type(n.node_type)  # a worker of a kind not seen before
            self.ctl.add_node(n.address, n.node_type.name, now_s=now)
            n.managed = True
        except Exception as exc:
            n.managed = False
            self._fail(f"adding worker {n.name} ({n.node_type.name}) to the controller", exc)

    # ------------------------------------------------------------------ workers
    def _join(self, addr: str, reported_type: Optional[str] = None, pid: Optional[int] = None) -> None:
        ws = self.scheduler.workers.get(addr)
        if ws is None:
            return
        n = self.nodes.get(addr)
        if n is None:
            n = self.nodes[addr] = WorkerNode(addr, str(ws.name), ws.nthreads, joined_s=time.time())
        if pid is not None:
            n.pid = pid
        if n.node_type is None:
            tname = self.assignment.type_name(ws.name, reported_type)
            if tname is None:
                return
            try:
                n.type_name = tname
                n.node_type = self.assignment.resolve(tname, ws.nthreads)
            except Exception as exc:
                self._fail(f"node type {tname!r} of worker {ws.name}", exc)
                return
            if self.ctl is not None:
                self._ctl_add(n, time.time())
        self._reopen()

    def add_worker(self, scheduler: Any, worker: str) -> None:
        try:
            self._join(worker)
        except Exception as exc:
            self._fail(f"add_worker {worker}", exc)

    def _node_gone(self, addr: str) -> None:
        n = self.nodes.get(addr)
        if n is None or n.left_s is not None:
            return
        n.left_s = time.time()
        if self.ctl is not None and n.managed:
            n.managed = False
            try:
                self.ctl.remove_node(addr, now_s=n.left_s)
            except Exception as exc:
                self._fail(f"removing worker {n.name} from the controller", exc)
        self.last_power.pop(addr, None)
        self._reopen()

    def remove_worker(self, scheduler: Any, worker: str, *, stimulus_id: str = "", **kw: Any) -> None:
        try:
            self._node_gone(worker)
            # tasks released to this worker but not yet sent: park them again
            for ts in list(scheduler.unrunnable):
                if ts.worker_restrictions and worker in ts.worker_restrictions and ts.key not in self.held_keys:
                    self.decided.pop(ts.key, None)
                    self._hold(ts)
            self._schedule_pump()
        except Exception as exc:
            self._fail(f"remove_worker {worker}", exc)

    # ------------------------------------------------------------------ telemetry
    def log_event(self, topic: str, msg: Any) -> None:
        if topic != TOPIC or self.scheduler is None:
            return
        try:
            addr = msg["worker"]
            if addr not in self.nodes or self.nodes[addr].node_type is None:
                self._join(addr, msg.get("node_type"), msg.get("pid"))
            elif self.nodes[addr].pid is None:
                self.nodes[addr].pid = msg.get("pid")
            cpu = msg.get("cpu_s")
            if cpu:
                self.cpu_s[addr] = cpu
            if "energy_j" not in msg:
                return
            tl = self.timelines.get(addr)
            if tl is None:
                tl = self.timelines[addr] = Timeline(source=msg.get("source", "modeled"), method=msg.get("method", ""),
                                                     uncertainty=float(msg.get("uncertainty", 0.0)))
            tl.add(float(msg["t"]), float(msg["energy_j"]), float(msg["power_w"]))
            if msg.get("final"):
                self.last_power.pop(addr, None)
            else:
                self.last_power[addr] = float(msg["power_w"])
            if self.ctl is not None and self.nodes[addr].managed:
                now = float(msg["t"])
                self.ctl.observe_node(addr, now_s=now, power_w=float(msg["power_w"]),
                                      utilization=msg.get("utilization"))
                self.ctl.observe_cluster_power(now_s=now, power_w=sum(self.last_power.values()))
                self._reopen()
        except Exception as exc:
            self._fail("reading a telemetry event", exc)

    # ------------------------------------------------------------------ tasks
    def update_graph(self, scheduler: Any, **kw: Any) -> None:
        # Decisions are taken when tasks become ready (see the module docstring); here
        # the controller is created once the first graph arrives.
        try:
            if self._placing and self.ctl is None:
                self._ensure_controller()
        except Exception as exc:
            self._fail("creating the controller", exc)

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kw: Any) -> None:
        try:
            if start == "processing":
                if finish == "memory":
                    self._done(key, kw)
                elif key in self.decided:
                    self._abandon(key)
            elif finish == "waiting":
                if self._placing and self.ctl is not None:
                    ts = self.scheduler.tasks.get(key)
                    if ts is not None and not ts.waiting_on:
                        self._ready(ts)
            elif start == "no-worker" and finish != "processing":
                self.held_keys.discard(key)
                if key in self.decided:
                    self._abandon(key)
        except Exception as exc:
            self._fail(f"transition {key!r} {start}->{finish}", exc)

    def _done(self, key: Any, kw: dict[str, Any]) -> None:
        worker = kw.get("worker")
        ts = self.scheduler.tasks.get(key)
        t0 = t1 = None
        for ss in kw.get("startstops") or ():
            if ss.get("action") == "compute":
                t0, t1 = ss["start"], ss["stop"]
        if ts is None:
            return
        if t0 is not None and worker is not None:
            if len(self.spans) < self.max_spans:
                self.spans.append((str(key), ts.prefix.name, worker, float(t0), float(t1)))
            else:
                self.counts["spans_dropped"] += 1
        addr = self.decided.pop(key, None)
        if addr is not None:
            ts.worker_restrictions = None  # TAO's restriction; a recomputation decides anew
        if addr is not None and self.ctl is not None:
            now = time.time()
            self.ctl.task_finished(str(key), now_s=now,
                                   duration_s=None if t0 is None else float(t1) - float(t0))
            self._reopen()
        if self._placing and self.ctl is not None:
            for dts in ts.dependents:
                if dts.state == "waiting" and not dts.waiting_on:
                    self._ready(dts)

    def _abandon(self, key: Any) -> None:
        self.decided.pop(key, None)
        ts = self.scheduler.tasks.get(key)
        if ts is not None:
            ts.worker_restrictions = None  # TAO's restriction; decided anew if it runs again
        if self.ctl is not None:
            self.ctl.cancel(str(key), now_s=time.time())
        self._reopen()

    def _request(self, ts: Any) -> TaskRequest:
        ann = ts.annotations or {}
        hint = ann.get("tao_duration_s")
        if hint is None and ts.prefix.duration_average >= 0:
            hint = ts.prefix.duration_average
        rr = ts.resource_restrictions or {}
        return TaskRequest(
            task_id=str(ts.key),
            group=ts.prefix.name,
            cpus=float(rr.get("CPU", 1.0)),
            gpus=float(rr.get("GPU", 0.0)),
            job=ann.get("tao_job"),
            duration_hint_s=hint,
            deadline_s=ann.get("tao_deadline_s"),
            deferrable=bool(ann.get("tao_deferrable", True)),
        )

    def _tiny(self, ts: Any) -> bool:
        d = ts.prefix.duration_average
        return 0 <= d < self.min_task_s

    def _ready(self, ts: Any) -> None:
        """Decide a task that is about to go waiting -> processing (sets its restrictions)."""
        if ts.key in self.decided or ts.key in self.held_keys:
            return
        if ts.worker_restrictions or ts.host_restrictions or ts.actor:
            if not (ts.worker_restrictions and HOLD_ADDRESS in ts.worker_restrictions):
                self.counts["left_to_dask"] += 1  # the user's own restrictions win
                return
        if self._tiny(ts):
            self.counts["left_to_dask"] += 1
            return
        if self._closed:
            self._hold(ts)
            return
        try:
            self._apply(ts, self.ctl.decide(self._request(ts), now_s=time.time()), parked=False)
        except Exception as exc:
            ts.worker_restrictions = None
            self.counts["fallbacks"] += 1
            self._fail(f"deciding task {ts.key!r} ({ts.prefix.name})", exc)

    def _apply(self, ts: Any, d: Any, *, parked: bool) -> bool:
        """Carry out decision ``d`` for ``ts``; True when the task may go to processing."""
        if d.action == Action.PLACE:
            addr = d.node_id
            if addr not in self.scheduler.workers:  # the controller has not seen it leave yet
                self._node_gone(addr)
                d = self.ctl.decide(self._request(ts), now_s=time.time())
                if d.action == Action.PLACE and d.node_id not in self.scheduler.workers:
                    raise RuntimeError(f"controller placed on unknown worker {d.node_id}")
                return self._apply(ts, d, parked=parked)
            ts.worker_restrictions = {addr}
            ts.loose_restrictions = False
            self.ctl.task_started(str(ts.key), now_s=time.time())
            self.decided[ts.key] = addr
            self.counts["placed"] += 1
            self.placed_on[addr] = self.placed_on.get(addr, 0) + 1
            return True
        if d.action == Action.DEFER:
            self._closed = True
            if not parked:
                self._hold(ts)
            return False
        # REJECT: the job's energy budget is spent and the budget mode is "deny". The
        # task fails with EnergyBudgetExceeded (delivered to the client by the pump,
        # outside the transition that is running now).
        self._rejected[ts.key] = d.reason
        if not parked:
            self._hold(ts)
        self._schedule_pump()
        return False

    def _hold(self, ts: Any) -> None:
        ts.worker_restrictions = {HOLD_ADDRESS}
        ts.loose_restrictions = False
        heapq.heappush(self.held, (ts.priority, next(self._seq), ts.key))
        self.held_keys.add(ts.key)
        self.counts["deferred"] += 1

    # ------------------------------------------------------------------ pump
    def _reopen(self) -> None:
        self._closed = False
        if self.held:
            self._schedule_pump()

    def _schedule_pump(self) -> None:
        if not self._pump_scheduled and self.scheduler is not None:
            self._pump_scheduled = True
            self.scheduler.loop.add_callback(self._pump)

    def _tick(self) -> None:
        if self.held:
            self._closed = False
            self._pump()

    def _pump(self) -> None:
        """Release parked tasks the controller now places (runs on the event loop)."""
        self._pump_scheduled = False
        if not self.held or self.scheduler is None:
            return
        tasks = self.scheduler.tasks
        recs: dict[Any, str] = {}
        if self._rejected:
            self._err_rejected()
        try:
            while self.held:
                _, _, key = self.held[0]
                ts = tasks.get(key)
                if ts is None or ts.state != "no-worker" or key not in self.held_keys:
                    heapq.heappop(self.held)
                    self.held_keys.discard(key)
                    continue
                if not self._placing or self.ctl is None or self._tiny(ts):
                    ts.worker_restrictions = None
                    go = True
                else:
                    if self._closed:
                        break
                    try:
                        go = self._apply(ts, self.ctl.decide(self._request(ts), now_s=time.time()), parked=True)
                    except Exception as exc:
                        ts.worker_restrictions = None
                        self.counts["fallbacks"] += 1
                        self._fail(f"deciding parked task {key!r}", exc)
                        go = True
                    if not go:
                        break
                heapq.heappop(self.held)
                self.held_keys.discard(key)
                recs[key] = "processing"
                self.counts["released"] += 1
        finally:
            if recs:
                self.scheduler.transitions(recs, stimulus_id=f"tao-release-{time.time()}")

    def _err_rejected(self) -> None:
        """Fail the tasks the controller rejected, as a task error the client sees."""
        from distributed.core import error_message

        rejected, self._rejected = self._rejected, {}
        sched = self.scheduler
        stimulus_id = f"tao-reject-{time.time()}"
        for key, reason in rejected.items():
            ts = sched.tasks.get(key)
            self.held_keys.discard(key)
            if ts is None or ts.state != "no-worker":
                continue
            try:
                msg = error_message(EnergyBudgetExceeded(f"TAO rejected {key!r}: {reason}"))
                recs, cmsgs, wmsgs = sched._transition(
                    key, "erred", stimulus_id, cause=key, exception=msg["exception"],
                    traceback=msg["traceback"], exception_text=msg["exception_text"],
                    traceback_text=msg["traceback_text"])
                sched._transitions(recs, cmsgs, wmsgs, stimulus_id)
                sched.send_all(cmsgs, wmsgs)
                self.counts["rejected"] = self.counts.get("rejected", 0) + 1
            except Exception as exc:
                ts.worker_restrictions = None
                self._fail(f"failing rejected task {key!r}; it runs instead", exc)
                sched.transitions({key: "processing"}, stimulus_id=stimulus_id)

    # ------------------------------------------------------------------ scaling
    def efficiency_order(self) -> list[str]:
        """Live worker addresses, least efficient first: highest watts per unit of work
        at full load (peak watts / (cpus x speed), the controller's scaling order);
        workers without a node type last."""
        def cost(n: WorkerNode) -> float:
            nt = n.node_type
            return -1.0 if nt is None else nt.peak_w / (nt.cpus * nt.speed)

        live = [n for n in self.nodes.values() if n.left_s is None and n.address in self.scheduler.workers]
        return [n.address for n in sorted(live, key=cost, reverse=True)]

    def scaling_advice(self, target: Optional[int] = None) -> dict[str, Any]:
        """For :class:`tao_dask.EnergyAdaptive`: the controller's scaling plan and the
        workers ordered least efficient first."""
        out: dict[str, Any] = {"order": [], "power_off": [], "drain": [], "power_on": [], "reason": ""}
        try:
            workers = self.scheduler.workers
            # (name, idle) of live workers, least efficient first
            out["order"] = [(str(workers[a].name), not workers[a].processing)
                            for a in self.efficiency_order() if a in workers]
            ctl = self._ensure_controller()
            if ctl is not None:
                pending = []
                for _, _, key in self.held[:1024]:
                    ts = self.scheduler.tasks.get(key)
                    if ts is not None:
                        pending.append(self._request(ts))
                now = time.time()
                # nodes an earlier plan powered off that Dask did not retire: back ON
                for addr, t_off in list(self._powered_off.items()):
                    if addr not in self.scheduler.workers or not self.nodes[addr].managed:
                        del self._powered_off[addr]
                    elif now - t_off > self.retire_grace_s:
                        del self._powered_off[addr]
                        ctl.set_node_state(addr, NodeState.ON, now_s=now)
                plan = ctl.plan_scaling(now_s=now, pending=pending)
                for addr in plan.power_off:
                    self._powered_off[addr] = now
                # the plan is already applied to the controller's view (OFF, DRAINING,
                # BOOTING); a node it wants on that is still a live worker is simply ON
                for addr in plan.power_on:
                    if addr in self.scheduler.workers:
                        ctl.set_node_state(addr, NodeState.ON, now_s=now)
                        self._reopen()
                workers = self.scheduler.workers
                names = lambda addrs: [str(workers[a].name) for a in addrs if a in workers]
                out.update(power_off=names(plan.power_off), drain=names(plan.drain),
                           power_on=list(plan.power_on), reason=plan.reason)
        except Exception as exc:
            self._fail("planning scaling", exc)
        return out

    def keep_workers(self, names: list[str]) -> None:
        """Workers a scaling plan powered off that will not be retired (Dask's
        ``minimum``): ON again in the controller's view."""
        try:
            now = time.time()
            by_name = {str(ws.name): a for a, ws in self.scheduler.workers.items()}
            for name in names:
                addr = by_name.get(str(name))
                if addr is not None and self.nodes.get(addr) is not None and self.nodes[addr].managed:
                    self._powered_off.pop(addr, None)
                    self.ctl.set_node_state(addr, NodeState.ON, now_s=now)
            self._reopen()
        except Exception as exc:
            self._fail("returning workers to service", exc)

    def valid_workers_downscaling(self, scheduler: Any, workers: list[Any]) -> list[Any]:
        """Order Dask's retirement candidates so the least efficient go first.

        ``Scheduler.workers_to_close`` sorts candidates stably by (idle, data held) and
        retires from the end of that order, so among equals the last one here goes first."""
        try:
            rank = {a: i for i, a in enumerate(self.efficiency_order())}
            return sorted(workers, key=lambda ws: -rank.get(ws.address, len(rank)))
        except Exception as exc:
            self._fail("ordering workers for downscaling", exc)
            return workers

    # ------------------------------------------------------------------ export
    def _config_dict(self) -> dict[str, Any]:
        cfg = self.config
        if cfg is None and self.ctl is not None:
            try:
                cfg = self.ctl.config
            except Exception:
                cfg = None
        if cfg is None:
            return {}
        if dataclasses.is_dataclass(cfg):
            return {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in dataclasses.asdict(cfg).items()}
        return {"repr": repr(cfg)}

    def export(self) -> dict[str, Any]:
        """Everything the report needs, as plain data."""
        nodes = []
        for n in self.nodes.values():
            nt = n.node_type
            nodes.append({
                "address": n.address, "name": n.name, "nthreads": n.nthreads,
                "node_type": n.type_name, "joined_s": n.joined_s, "left_s": n.left_s,
                "managed": n.managed, "pid": n.pid,
                "idle_w": None if nt is None else nt.idle_w,
                "peak_w": None if nt is None else nt.peak_w,
                "power_curve_w": None if nt is None else list(nt.power_curve.points_w),
            })
        return {
            "engine": "dask",
            "started_s": self.started_s,
            "exported_s": time.time(),
            "placing": self._placing,
            "nodes": nodes,
            "timelines": {a: {"t_s": tl.t_s, "energy_j": tl.energy_j, "power_w": tl.power_w,
                              "source": tl.source, "method": tl.method, "uncertainty": tl.uncertainty}
                          for a, tl in self.timelines.items()},
            "spans": [list(s) for s in self.spans],
            "cpu_s": self.cpu_s,
            "counts": dict(self.counts),
            "placed_on": dict(self.placed_on),
            "held_now": len(self.held_keys),
            "decisions": [e.to_dict() for e in self.events],
            "config": self._config_dict(),
        }
