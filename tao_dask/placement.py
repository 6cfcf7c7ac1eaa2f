"""Where ready tasks go: to the worker the controller chooses, held back for an energy
reason, or left to Dask.

When a task becomes ready to run (its own ``-> waiting`` transition with nothing left to
wait for, or the ``-> memory`` transition of its last missing dependency) and before Dask
picks a worker for it, :class:`Placement` decides. Tasks TAO leaves to Dask, counted by
reason (``left_reasons``): a prefix Dask measured under ``min_task_s``; restrictions of
their own (``workers=``, hosts, resources, ``allow_other_workers``, actors); tasks of a
P2P shuffle, rechunk or merge (its barrier, the transfers into it, the outputs after it);
a run Dask put back once (``Reschedule``, a lost worker, a stale steal). The others go
to ``Controller.decide``:

* PLACE of a task Dask counts as root-ish (part of a group much larger than the
  cluster): *admitted*. Dask's own root-ish queue or co-assignment picks its worker; the
  controller's reservation stays until it ends, so power budgets still hold.
* PLACE on a running worker with a free task slot: TAO *pins* the task there with a soft
  restriction (``worker_restrictions={worker}``, ``loose_restrictions=True``): Dask sends
  it there now, work stealing may still move it, and if the worker goes away Dask places
  it elsewhere. The restriction is taken off when the task leaves processing.
* PLACE on a worker that is paused, closing or busy, or that holds none of the task's
  inputs (Dask runs a task where one of its inputs is), or DEFER because no node has
  room: the task is Dask's (its own queuing, on the worker or at the scheduler).
* DEFER with room (power budget, power cap, a cleaner hour): TAO *parks* the task in
  Dask's ``no-worker`` state behind a restriction no worker matches, in Dask priority
  order, and asks again as tasks finish, telemetry arrives or ``pump_interval_s`` passes.
* REJECT (a job's energy budget spent, ``job_budget_mode="deny"``): the task fails with
  :class:`EnergyBudgetExceeded`.

Parked tasks are watched by :class:`tao_dask.watchdog.Watchdog` (the policy:
:class:`tao_core.live.parked.ParkedWatch`).

Units: seconds (wall clock, ``time.time()``).
"""
from __future__ import annotations

import math
import time
from collections import Counter, OrderedDict
from typing import Any, Callable, Optional

from tao_core.control.admission import AdmissionQueue
from tao_core.control.types import Action, Decision, TaskRequest
from tao_core.live.parked import Hold
from tao_core.live.runs import RunLog
from tao_core.live.settling import EnergySettlement
from tao_dask.membership import Membership
from tao_dask.state import Pin, key_str

#: A worker address no worker ever has: tasks restricted to it wait in ``no-worker``.
HOLD_ADDRESS = "tao-deferred://nowhere"

#: runs Dask put back that are remembered, to leave their next run to Dask
MAX_PUT_BACK = 100_000

PIN, DASK, HOLD = "pin", "dask", "hold"


class EnergyBudgetExceeded(RuntimeError):
    """A task TAO did not run: its job's energy budget is spent (``job_budget_mode="deny"``)."""


def _barrier_prefix() -> str:
    try:
        from distributed.shuffle._core import barrier_key

        return barrier_key("")  # type: ignore[arg-type]
    except Exception:  # another layout of distributed: the prefix it has used so far
        return "shuffle-barrier-"


BARRIER_PREFIX = _barrier_prefix()


def _is_barrier(ts: Any) -> bool:
    k = ts.key
    return isinstance(k, str) and k.startswith(BARRIER_PREFIX)


def is_p2p(ts: Any) -> bool:
    """Whether ``ts`` is a P2P barrier, a transfer into one, or an output after one."""
    if _is_barrier(ts):
        return True
    for dts in ts.dependencies:
        if _is_barrier(dts):
            return True
    for dts in ts.dependents:
        if _is_barrier(dts):
            return True
    return False


def _finite_or_none(v: Any) -> Optional[float]:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def task_slots(ws: Any, saturation: float) -> int:
    """Tasks ``ws`` takes at once: its threads, fewer when Dask's ``worker-saturation``
    asks for fewer."""
    if math.isinf(saturation):
        return ws.nthreads
    return min(ws.nthreads, max(math.ceil(saturation * ws.nthreads), 1))


def has_free_thread(ws: Any, saturation: float, on_the_way: int = 0) -> bool:
    """A running worker with a free task slot (seceded tasks hold none); ``on_the_way``:
    tasks TAO pinned there that Dask has not sent yet."""
    from distributed.core import Status

    busy = len(ws.processing) - len(ws.long_running) + on_the_way
    return ws.status == Status.running and busy < task_slots(ws, saturation)


def holds_a_dependency(ts: Any, ws: Any) -> bool:
    """Whether worker ``ws`` holds one of the inputs of ``ts`` (always true without inputs).
    Dask runs a task where one of its inputs is; TAO keeps to that."""
    if not ts.dependencies:
        return True
    for dts in ts.dependencies:
        if ws in dts.who_has:
            return True
    return False


class Placement:
    """The placement hooks: decides ready tasks, pins, parks, pumps and watches.

    Ready tasks wait in one :class:`tao_core.control.admission.AdmissionQueue` (the
    simulator's and tao_ray's): priority Dask's, offered again when capacity may have
    changed (:meth:`reopen`) or at a DEFER's time; a DEFER for want of headroom closes it to
    tasks as large. ``events``: the :class:`~tao_core.live.runs.DecisionLog` the controller
    writes into (TAO takes out the events of a decision it does not carry out).
    ``counts``: the plugin's counters. ``fail(context, exc)``: the plugin's fail-open path."""

    def __init__(self, scheduler: Any, membership: Membership, spans: RunLog, events: Any,
                 counts: Counter, fail: Callable[[str, BaseException], None], *,
                 min_task_s: float) -> None:
        self.s = scheduler
        self.m = membership
        self.spans = spans
        self.events = events
        self.counts = counts
        self.fail = fail
        self.min_task_s = min_task_s
        self.active = True  #: False once placement is off (fail open): everything is Dask's
        self.pins: dict[Any, Pin] = {}
        self.holds: dict[Any, Hold] = {}
        self._queue: Optional[AdmissionQueue] = None
        self._last: dict[str, Decision] = {}  # task id -> its latest decision while queued
        self._before = 0  # decision events before the latest decision
        self._recs: dict[Any, str] = {}  # parked tasks released in this offer
        self.left_reasons: Counter = Counter()
        self.placed_on: Counter = Counter()
        self.on_the_way: Counter = Counter()  # worker -> tasks pinned there, not yet sent
        self.put_back: "OrderedDict[Any, None]" = OrderedDict()
        self.settlement = EnergySettlement()  #: placed tasks that ended, waiting for their energy
        self._pump_scheduled = False

    @property
    def ctl(self) -> Any:
        return self.m.ctl

    @property
    def queue(self) -> AdmissionQueue:
        """The admission queue over the controller (made with it)."""
        if self._queue is None:
            self._queue = AdmissionQueue(self._decide, room=self.ctl.has_room)
        return self._queue

    def pending(self) -> list[TaskRequest]:
        """The tasks waiting for a PLACE, in order (for ``plan_scaling``)."""
        return [] if self._queue is None else list(self._queue.pending())

    # ------------------------------------------------------------------ readiness
    def on_waiting(self, key: Any) -> None:
        ts = self.s.tasks.get(key)
        if ts is not None and not ts.waiting_on:
            self.ready(ts)

    def on_memory(self, key: Any) -> None:
        """``key`` is in memory: its dependents that waited only for it are ready."""
        ts = self.s.tasks.get(key)
        if ts is None:
            return
        for dts in ts.dependents:
            if dts.state == "waiting" and not dts.waiting_on:
                self.ready(dts)

    def leave_reason(self, ts: Any) -> Optional[str]:
        """Why ``ts`` is Dask's to place, or None when the controller decides it."""
        d = ts.prefix.duration_average
        if 0 <= d < self.min_task_s:
            return "short"
        if ts.worker_restrictions or ts.host_restrictions or ts.loose_restrictions:
            return "restricted"
        if ts.resource_restrictions:
            return "resources"
        if ts.actor:
            return "actor"
        if ts.key in self.put_back:
            del self.put_back[ts.key]
            return "put back by Dask"
        if is_p2p(ts):
            return "p2p"
        if not self.ctl.has_room(1.0):
            return "no free thread"  # Dask's own queuing holds it
        return None

    def ready(self, ts: Any) -> None:
        """Queue ``ts``, which Dask is about to send to a worker, and offer it: a task
        still waiting afterwards is parked."""
        key = ts.key
        if not self.active or self.ctl is None or key in self.pins or key in self.holds:
            return
        tid = self.spans.task_id(key_str(key))
        try:
            reason = self.leave_reason(ts)
            if reason is not None:
                self.left_reasons[reason] += 1
                return
            req = self.request(ts, tid)
            self.queue.push(req, item=key, priority=ts.priority)
            self.queue.offer(time.time(), self._carry_out, new_only=True)
            if req.task_id not in self.queue:
                return
            d = self._last.get(req.task_id)
            if not self.ctl.has_room(1.0):  # deferred for want of room: Dask's own queuing holds it
                self._forget(tid)
                if d is not None:
                    self.events.drop_since(self._before)
                self.left_reasons["no free thread"] += 1
                return
            self._hold(ts, tid, d.reason if d else "queued behind parked tasks", d.defer_until_s if d else None)
        except Exception as exc:
            self._undo(ts, tid)
            self.counts["fallbacks"] += 1
            self.fail(f"deciding task {key!r} ({ts.prefix.name})", exc)

    def request(self, ts: Any, task_id: str) -> TaskRequest:
        """The controller's view of ``ts`` (annotations ``tao_job``, ``tao_duration_s``,
        ``tao_deadline_s``, ``tao_deferrable``; malformed ones are ignored)."""
        ann = ts.annotations or {}
        hint = _finite_or_none(ann.get("tao_duration_s"))
        if hint is None and ts.prefix.duration_average >= 0:
            hint = ts.prefix.duration_average
        job = ann.get("tao_job")
        return TaskRequest(task_id=task_id, group=ts.prefix.name, cpus=1.0, gpus=0.0,
                           job=None if job is None else str(job), duration_hint_s=hint,
                           deadline_s=_finite_or_none(ann.get("tao_deadline_s")),
                           deferrable=bool(ann.get("tao_deferrable", True)))

    # ------------------------------------------------------------------ one decision
    def _decide(self, req: TaskRequest, *, now_s: float) -> Decision:
        """The queue's policy: the controller's decision, remembered while the task waits."""
        self._before = self.events.total
        d = self._last[req.task_id] = self.ctl.decide(req, now_s=now_s)
        return d

    def _carry_out(self, req: TaskRequest, d: Decision, key: Any) -> bool:
        """A PLACE or REJECT of queued ``key``: pin, admit or leave to Dask; fail a
        rejected one. Always done: the task leaves the queue."""
        self._last.pop(req.task_id, None)
        ts = self.s.tasks.get(key)
        parked = key in self.holds
        if ts is None:
            self.ctl.cancel(req.task_id, now_s=time.time())
            return True
        try:
            if d.action == Action.REJECT:
                h = self.holds.get(key) or self._hold(ts, req.task_id, d.reason, None)
                h.reject = d.reason
                self.schedule_pump()
                return True
            self._place(ts, d, req.task_id)
        except Exception as exc:
            self._undo(ts, req.task_id)
            self.counts["fallbacks"] += 1
            self.fail(f"carrying out the decision on task {key!r}", exc)
        if parked:
            self._recs[key] = "processing"
            self.counts["released"] += 1
        return True

    def _place(self, ts: Any, d: Decision, task_id: str) -> str:
        """Carry out a PLACE of ``ts``: PIN, DASK (admitted, or not carried out)."""
        now = time.time()
        if self.s.is_rootish(ts):  # admitted; Dask's root-ish queue or co-assignment places it
            self.holds.pop(ts.key, None)
            self._admit(ts, d.node_id, task_id, now)
            return DASK
        ws = self.s.workers.get(d.node_id)
        free = ws is not None and has_free_thread(ws, self.s.WORKER_SATURATION, self.on_the_way[d.node_id])
        if free and holds_a_dependency(ts, ws):
            self._pin(ts, ws.address, task_id, now)
            return PIN
        if ws is None:
            self.m.leave(d.node_id)  # the controller had not seen it leave yet
        self._void(task_id, self._before, now)
        return self._to_dask(ts, "data elsewhere" if free else "chosen worker not free")

    def _void(self, task_id: str, before: int, now: float) -> None:
        """Undo a decision TAO does not carry out: its reservation and its events."""
        self.ctl.cancel(task_id, now_s=now)
        self.events.drop_since(before)

    def _pin(self, ts: Any, addr: str, task_id: str, now: float) -> None:
        r = {addr}
        ts.worker_restrictions = r
        ts.loose_restrictions = True
        self.holds.pop(ts.key, None)
        self.pins[ts.key] = Pin(addr, r, task_id)
        self.on_the_way[addr] += 1
        self.ctl.task_started(task_id, now_s=now)
        self.counts["placed"] += 1
        self.placed_on[addr] += 1

    def _admit(self, ts: Any, node_id: str, task_id: str, now: float) -> None:
        """The controller admits ``ts`` and Dask picks its worker: the reservation stays
        (on the node the controller chose) until the task ends, so power budgets hold."""
        if ts.worker_restrictions == {HOLD_ADDRESS}:  # it was parked
            ts.worker_restrictions = None
        self.pins[ts.key] = Pin(node_id, None, task_id)
        self.ctl.task_started(task_id, now_s=now)
        self.counts["admitted"] += 1
        self.left_reasons["root-ish: Dask's queue"] += 1

    def _hold(self, ts: Any, task_id: str, reason: str, until_s: Optional[float]) -> Hold:
        ts.worker_restrictions = {HOLD_ADDRESS}
        ts.loose_restrictions = False
        h = self.holds[ts.key] = Hold(task_id, time.time(), reason, until_s)
        self.counts["deferred"] += 1
        return h

    def _to_dask(self, ts: Any, reason: str) -> str:
        """Leave ``ts`` to Dask (a parked one gets its own restrictions, none, back)."""
        self.left_reasons[reason] += 1
        if self.holds.pop(ts.key, None) is not None:
            ts.worker_restrictions = None
            ts.loose_restrictions = False
        return DASK

    def _undo(self, ts: Any, task_id: Optional[str] = None) -> None:
        """After an error: whatever TAO set on ``ts`` is taken off; Dask places it."""
        if task_id is not None and self._queue is not None:
            self._queue.discard(task_id)
            self._last.pop(task_id, None)
        pin = self.pins.pop(ts.key, None)
        if pin is not None and pin.restriction is not None:
            self._arrived(pin)
        if (pin is not None and pin.restriction is not None) or self.holds.pop(ts.key, None) is not None:
            ts.worker_restrictions = None
            ts.loose_restrictions = False
        try:
            for tid in {t for t in (task_id, pin.task_id if pin else None) if t is not None}:
                self.ctl.cancel(tid, now_s=time.time())
        except Exception:
            pass  # the controller is what failed; the task is Dask's either way

    # ------------------------------------------------------------------ task lifecycle
    def dispatched(self, key: Any) -> None:
        """``key`` went to processing."""
        pin = self.pins.get(key)
        if pin is None or pin.restriction is None:
            self.counts["left_to_dask"] += 1
        else:
            self._arrived(pin)

    def _arrived(self, pin: Pin) -> None:
        if not pin.sent:
            pin.sent = True
            n = self.on_the_way[pin.address] - 1
            if n > 0:
                self.on_the_way[pin.address] = n
            else:
                del self.on_the_way[pin.address]

    def finished(self, key: Any, finish: str, worker: Optional[str], duration_s: Optional[float]) -> None:
        """``key`` left processing (or waiting) for ``finish``: take TAO's pin off."""
        pin = self.pins.pop(key, None)
        if pin is None:
            return
        ts = self.s.tasks.get(key)
        if pin.restriction is not None:
            self._arrived(pin)
            if ts is not None:
                if ts.worker_restrictions is pin.restriction:  # nobody replaced it
                    ts.worker_restrictions = None
                ts.loose_restrictions = False
            if worker is not None and worker != pin.address:
                self.counts["stolen"] += 1
        if ts is not None and finish in ("released", "waiting"):  # put back by Dask: next run is Dask's
            self.put_back[key] = None
            if len(self.put_back) > MAX_PUT_BACK:
                self.put_back.popitem(last=False)
        now = time.time()
        if not pin.seceded and self.ctl is not None:
            if finish == "memory":
                self.ctl.task_finished(pin.task_id, now_s=now, duration_s=duration_s,
                                       energy_pending=worker is not None)
                if worker is not None:
                    self.settlement.expect(self.ctl, worker, key_str(key), pin.task_id)
            else:
                self.ctl.cancel(pin.task_id, now_s=now)
        self.reopen()

    # ------------------------------------------------------------------ settled energy
    def settled(self, worker: str, energies: Any) -> None:
        """Settled task energies from ``worker``, to the controller's tasks (:mod:`tao_core.live.settling`)."""
        self.counts["energy_settled"] += self.settlement.settle(self.ctl, worker, energies)

    def forget_settling(self, worker: str) -> None:
        """``worker`` left: the energies it had not settled will not come."""
        self.settlement.forget(self.ctl, worker)

    def unparked(self, key: Any) -> None:
        """``key`` left no-worker other than to processing (released, forgotten, erred)."""
        h = self.holds.pop(key, None)
        if h is not None:
            self._forget(h.task_id)

    def _forget(self, task_id: str) -> None:
        if self._queue is not None:
            self._queue.discard(task_id)
        self._last.pop(task_id, None)
        if self.ctl is not None:
            self.ctl.cancel(task_id, now_s=time.time())

    # ------------------------------------------------------------------ pump
    def reopen(self) -> None:
        """Capacity or headroom may have changed: the queue opens and is offered soon."""
        if self._queue is not None:
            self._queue.reopen()
        if self.holds:
            self.schedule_pump()

    def schedule_pump(self) -> None:
        if not self._pump_scheduled:
            self._pump_scheduled = True
            self.s.loop.add_callback(self.pump)

    def pump(self) -> None:
        """Offer the queue: parked tasks the controller now places are released (runs on
        the event loop); with placement off every parked task goes to Dask."""
        self._pump_scheduled = False
        if not self.holds:
            return
        self._recs = {}
        try:
            self._err_rejected()
            if self.active and self.ctl is not None:
                self._drop_stale()
                self.queue.offer(time.time(), self._carry_out)
                if not self.ctl.has_room(1.0):  # full: parked tasks wait in Dask's own queue
                    for key in [k for k, h in self.holds.items() if h.reject is None]:
                        self._release_to_dask(key, "no free thread")
                for h in self.holds.values():  # the latest reason of each task still parked
                    d = self._last.get(h.task_id)
                    if d is not None:
                        h.reason, h.until_s = d.reason, d.defer_until_s
            else:
                for key in [k for k, h in self.holds.items() if h.reject is None]:
                    self._release_to_dask(key, "placement off")
        finally:
            recs, self._recs = self._recs, {}
            if recs:
                self.s.transitions(recs, stimulus_id=f"tao-release-{time.time()}")
        if any(h.reject for h in self.holds.values()):
            self.schedule_pump()

    def _drop_stale(self) -> None:
        """Parked tasks that are no longer in Dask's no-worker state leave the queue."""
        tasks = self.s.tasks
        for key in [k for k, h in self.holds.items() if h.reject is None
                    and (tasks.get(k) is None or tasks[k].state != "no-worker")]:
            self._forget(self.holds.pop(key).task_id)

    def _release_to_dask(self, key: Any, reason: str) -> None:
        h = self.holds.get(key)
        ts = self.s.tasks.get(key)
        if ts is not None and ts.state == "no-worker":
            self._to_dask(ts, reason)
            self._recs[key] = "processing"
            self.counts["released"] += 1
        else:
            self.holds.pop(key, None)
        if h is not None:
            self._forget(h.task_id)

    def _err_rejected(self) -> None:
        """Fail the tasks the controller rejected, as a task error the client sees."""
        rejected = [(k, h) for k, h in self.holds.items() if h.reject is not None]
        if not rejected:
            return
        from distributed.core import error_message

        sched = self.s
        stimulus_id = f"tao-reject-{time.time()}"
        for key, h in rejected:
            del self.holds[key]
            ts = sched.tasks.get(key)
            if ts is None or ts.state != "no-worker":
                continue
            ts.worker_restrictions = None
            try:
                msg = error_message(EnergyBudgetExceeded(f"TAO rejected {key!r}: {h.reject}"))
                recs, cmsgs, wmsgs = sched._transition(
                    key, "erred", stimulus_id, cause=key, exception=msg["exception"],
                    traceback=msg["traceback"], exception_text=msg["exception_text"],
                    traceback_text=msg["traceback_text"])
                sched._transitions(recs, cmsgs, wmsgs, stimulus_id)
                sched.send_all(cmsgs, wmsgs)
                self.counts["rejected"] += 1
            except Exception as exc:
                self.fail(f"failing rejected task {key!r}; it runs instead", exc)
                sched.transitions({key: "processing"}, stimulus_id=stimulus_id)

    # ------------------------------------------------------------------ periodic
    def tick(self) -> None:
        """Every ``pump_interval_s``: seceded tasks give their thread back and parked
        tasks are asked about again."""
        if self.pins:
            self._release_seceded()
        if self.holds:
            self.pump()

    def _release_seceded(self) -> None:
        """A pinned task that seceded (``secede``, ``worker_client``) no longer holds a
        thread: its controller reservation goes, so its subtasks find room."""
        freed = False
        for ws in self.s.workers.values():
            for ts in ws.long_running:
                pin = self.pins.get(ts.key)
                if pin is not None and not pin.seceded:
                    pin.seceded = True
                    self.ctl.cancel(pin.task_id, now_s=time.time())
                    self.counts["seceded"] += 1
                    freed = True
        if freed:
            self.reopen()

    def running(self) -> bool:
        """Whether a task the controller admitted holds a thread now."""
        return any(not p.seceded for p in self.pins.values())

    def hand_back(self, keys: list, reason: str) -> int:
        """Parked ``keys`` go to Dask's placement now (``reason`` is counted); how many."""
        self._recs = {}
        for key in keys:
            if key in self.holds:
                self._release_to_dask(key, reason)
        recs, self._recs = self._recs, {}
        if recs:
            self.s.transitions(recs, stimulus_id=f"tao-{reason}-{time.time()}")
        return len(recs)

    def stop(self) -> None:
        """Placement off for good: TAO's restrictions come off the tasks it sent to
        workers, and parked tasks go to Dask on the next pump."""
        self.active = False
        now = time.time()
        for key, pin in list(self.pins.items()):
            ts = self.s.tasks.get(key)
            if pin.restriction is not None and ts is not None and ts.worker_restrictions is pin.restriction:
                ts.worker_restrictions = None
                ts.loose_restrictions = False
            try:
                self.ctl.cancel(pin.task_id, now_s=now)
            except Exception:
                pass  # the controller may be what failed; its reservations no longer matter
        self.pins.clear()
        self.on_the_way.clear()
        if self.holds:
            self.schedule_pump()
