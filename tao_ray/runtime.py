"""Driver side of tao_ray: the grant table, TAO's admission queue, the background sync with
the controller actor, fail-open, and the reservations of actors and placement groups.

Grants. A grant (:class:`tao_ray.records.Grant`) is a controller PLACE decision: a
reservation of one task's CPUs/GPUs on a node. The driver never asks the controller per task:

- open admission (no power budget): a grant is a slot the driver reuses for every task of
  its group, in round robin over the group's slots; when all slots are busy the task still
  goes to a slot's node (Ray queues it there) and the driver asks for more slots in the next
  sync; a slot idle for ``slot_linger_s`` is handed back (the controller learns the mean
  task duration of its tasks).
- strict admission (a power budget is set): a task starts only on a grant made for it; the
  others wait in TAO's admission queue on the driver (their ObjectRefs come from a gate
  actor on the driver's node, resolved with the task's result once it ran) until a sync
  brings their grants. Every queued task is offered to the controller at every sync.
- actors and placement-group bundles: one grant each, handed back when Ray reports the
  actor dead or the group removed (checked every ``node_poll_s``).

Task ends reach the driver through ``ObjectRef`` callbacks and go to the controller in
batches. Fail open: when the controller actor dies or does not answer within
``timeout_s``, queued and new tasks go to Ray's default scheduling with a logged warning;
the driver keeps trying, and when the (restarted) controller answers it re-registers the
nodes and resumes.
"""
from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from tao_core.control.config import ControllerConfig
from tao_ray.cluster import NodeRegistry, wait_names_free
from tao_ray.controller_actor import ControllerActor, config_to_dict, node_type_to_dict
from tao_ray.gate import Gate
from tao_ray.records import CONTROLLER_NAME, NAMESPACE, Grant, new_token
from tao_ray.task_events import TaskEventReader

log = logging.getLogger("tao_ray")


@dataclass
class _Slot:
    """Use of one open-admission grant by the driver (seconds)."""

    grant: Grant
    inflight: int = 0
    tasks: int = 0
    busy_s: float = 0.0
    idle_since: float = field(default_factory=time.time)
    started: bool = False


@dataclass(frozen=True)
class _Queued:
    tid: str
    fn: Any  # the TAO remote function
    args: tuple
    kwargs: dict


@dataclass(frozen=True)
class _Held:
    """A reservation held for as long as an actor or placement group lives."""

    grant: Grant
    since: float
    alive: Callable[[], bool]


@dataclass(frozen=True)
class Options:
    """What ``tao_ray.init`` was asked for (seconds; see its docstring)."""

    sample_interval_s: float = 0.2
    sync_interval_s: float = 0.1
    timeout_s: float = 2.0
    slot_linger_s: float = 0.5
    node_poll_s: float = 1.0
    task_events_poll_s: float = 15.0
    strict: bool = False
    on_power_off: Optional[Callable[[str], Any]] = None
    on_power_on: Optional[Callable[[str], Any]] = None
    drain: str = "none"
    hint_with: str = "label"


class Runtime:
    """One per driver; created by :func:`tao_ray.init`."""

    def __init__(self, registry_args: dict[str, Any], config: ControllerConfig, opts: Options) -> None:
        self.token = new_token()
        self.config = config
        self.opts = opts
        self.t_start = time.time()
        self.last_end = 0.0  # when the latest task TAO placed was seen to end (wall-clock s)
        self.lock = threading.RLock()
        self.registry = NodeRegistry(self.token, **registry_args, timeout_s=opts.timeout_s)
        self.task_events = TaskEventReader(since_s=self.t_start)
        self._slots: dict[str, _Slot] = {}
        self._by_group: dict[str, list[str]] = {}
        self._rr: dict[str, itertools.count] = {}
        self._one: dict[str, tuple[Grant, float]] = {}  # strict grants of running tasks -> start
        self._held: list[_Held] = []
        self._requested: list[str] = []  # node types asked of Ray's autoscaler
        self.queue: deque[_Queued] = deque()
        self._want: dict[str, list] = {}  # group -> [cpus, gpus, job, n]
        self._started: list[str] = []
        self._finished: list[tuple[str, float]] = []
        self._cancel: list[str] = []
        self._release: list[tuple[str, list]] = []
        self._ids = itertools.count()
        self._sync_seq = 0
        self._denied: dict[str, float] = {}  # group -> when the controller last gave no slot
        self.failed_open = False
        self.budget: dict[str, Any] = {}
        self.counters = {"placed": 0, "deferred": 0, "default": 0, "fail_open_events": 0, "scale_up_hints": 0,
                         "power_off": 0, "drain": 0, "reservations_released": 0}
        self.scale_log: list[dict[str, Any]] = []
        self.placements: deque = deque(maxlen=10_000)  # (Ray TaskID, node id) of tasks TAO placed
        self.events: list[dict[str, Any]] = []
        self._n_events = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._granted = threading.Condition(self.lock)

        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        types = registry_args["node_types"]
        self.controller = ControllerActor.options(
            name=CONTROLLER_NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
            max_restarts=-1, num_cpus=0, scheduling_strategy=here,
        ).remote(self.token, [node_type_to_dict(t) for t in types.values()], config_to_dict(config))
        self.gate = Gate.options(num_cpus=0, max_concurrency=100_000, scheduling_strategy=here).remote()
        self.epoch = ray.get(self.controller.ping.remote(self.token), timeout=max(opts.timeout_s, 30.0))
        ray.get(self.controller.reset.remote(self.token))
        self.registry.discover(wait=True)
        self.push_nodes()
        self._thread = threading.Thread(target=self._loop, name="tao-sync", daemon=True)
        self._thread.start()
        self._events_thread = threading.Thread(target=self._poll_task_events, name="tao-task-events", daemon=True)
        self._events_thread.start()

    def refresh_requests(self) -> None:
        """Ask Ray's autoscaler for exactly the placeholders now booting (an empty request
        clears it) when that changed, unless the user adds nodes (``on_power_on``)."""
        booting = self.registry.booting_types()
        if self.registry.launchable and self.opts.on_power_on is None and booting != self._requested:
            from tao_ray import autoscale

            self._requested = booting
            autoscale.request(self.registry.node_types, booting, self.opts.hint_with)

    def call(self, method: str, *args: Any, timeout: Optional[float] = None) -> Any:
        """One call to the controller actor with this session's token; waits for the answer."""
        ref = getattr(self.controller, method).remote(self.token, *args)
        return ray.get(ref, timeout=self.opts.timeout_s if timeout is None else timeout)

    def push_nodes(self) -> None:
        try:
            while self.registry.new_types:
                self.call("add_node_type", node_type_to_dict(self.registry.new_types.pop(0)))
            self.call("sync_nodes", self.registry.controller_view())
        except Exception as e:  # noqa: BLE001
            self._fail_open(f"sync_nodes: {type(e).__name__}: {e}")

    # ------------------------------------------------------------------ submission
    def submit(self, fn: Any, args: tuple, kwargs: dict) -> Any:
        """Submit one task of the TAO remote function ``fn``; returns its ObjectRef."""
        if self.failed_open:
            self.counters["default"] += 1
            return fn.default_handle().remote(self.token, *args, **kwargs)
        if self.opts.strict:
            q = _Queued(f"t{next(self._ids)}", fn, args, kwargs)
            with self.lock:
                self.queue.append(q)
                self.counters["deferred"] += 1
            self._wake.set()
            return self.gate.hold.remote(q.tid)
        with self.lock:
            s = self._free_slot(fn)
            if s is None:
                self.counters["default"] += 1
                return fn.default_handle().remote(self.token, *args, **kwargs)
            s.inflight += 1
            s.tasks += 1
            if not s.started:
                s.started = True
                self._started.append(s.grant.gid)
            self.counters["placed"] += 1
        node = s.grant.node_id
        ref = fn.handle_for(node).remote(self.token, *args, **kwargs)
        self.placements.append((ref.task_id(), node))
        on_done(ref, lambda s=s, t0=time.time(): self._slot_done(s, t0))
        return ref

    def _free_slot(self, fn: Any) -> Optional[_Slot]:
        """A slot of ``fn``'s group, a free one when a sync brings one in time (call with
        the lock held): when all are busy, ask for one more and wait one round trip, unless
        the controller just said no."""
        s = self._pick(fn.group)
        if s is not None and s.inflight == 0:
            return s
        if time.time() - self._denied.get(fn.group, -1e9) <= self.opts.slot_linger_s:
            return s
        want = self._want.setdefault(fn.group, [fn.cpus, fn.gpus, fn.job, 0])
        want[3] = min(want[3] + 1, 64)
        self._wake.set()
        seq, end = self._sync_seq, time.time() + min(self.opts.timeout_s, 0.5)
        while time.time() < end and not self.failed_open and self._sync_seq < seq + 2:
            s = self._pick(fn.group)
            if s is not None and s.inflight == 0:
                return s
            self._granted.wait(timeout=max(end - time.time(), 0.001))
        return self._pick(fn.group)

    def _pick(self, group: str) -> Optional[_Slot]:
        """The group's next free slot in round robin, else its least busy one."""
        ids = self._by_group.get(group)
        if not ids:
            return None
        k, n, best = next(self._rr.setdefault(group, itertools.count())), len(ids), None
        for i in range(n):
            s = self._slots.get(ids[(k + i) % n])
            if s is not None and s.inflight == 0:
                return s
            if s is not None and (best is None or s.inflight < best.inflight):
                best = s
        return best

    def _slot_done(self, s: _Slot, t0: float) -> None:
        now = self.last_end = time.time()
        with self.lock:
            s.inflight = max(s.inflight - 1, 0)
            s.busy_s += now - t0
            if s.inflight == 0:
                s.idle_since = now

    def _one_done(self, gid: str) -> None:
        now = self.last_end = time.time()
        with self.lock:
            g = self._one.pop(gid, None)
            if g is not None:
                self._finished.append((gid, now - g[1]))
        self._wake.set()

    def _run(self, q: _Queued, grant: Optional[Grant]) -> None:
        """Submit a queued task now (on its grant's node, or unmanaged) and resolve its gate."""
        if grant is None:
            ref = q.fn.default_handle().remote(self.token, *q.args, **q.kwargs)
        else:
            ref = q.fn.handle_for(grant.node_id).remote(self.token, *q.args, **q.kwargs)
            self.placements.append((ref.task_id(), grant.node_id))
            on_done(ref, lambda gid=grant.gid: self._one_done(gid))
        self._release.append((q.tid, [ref]))

    # ------------------------------------------------------------------ actors, bundles
    def hold(self, grant: Grant, alive: Callable[[], bool]) -> None:
        """Keep ``grant`` until ``alive()`` says the actor or group it placed is gone."""
        with self.lock:
            self._held.append(_Held(grant, time.time(), alive))

    def _check_held(self) -> None:
        with self.lock:
            held = list(self._held)
        gone = [h for h in held if not _safe(h.alive)]
        if gone:
            now = time.time()
            with self.lock:
                self._held = [h for h in self._held if h not in gone]
                self._finished.extend((h.grant.gid, now - h.since) for h in gone)
                self.counters["reservations_released"] += len(gone)
            self._wake.set()

    def hand_back(self, grants: list[Grant]) -> None:
        """Cancel grants never used (a placement group TAO could not place whole)."""
        with self.lock:
            self._cancel.extend(g.gid for g in grants)
        self._wake.set()

    def held_reservations(self) -> list[Grant]:
        with self.lock:
            return [h.grant for h in self._held]

    # ------------------------------------------------------------------ sync loop
    def _loop(self) -> None:
        last_nodes = last_collect = time.time()
        while not self._stop.is_set():
            self._wake.wait(self.opts.sync_interval_s)
            self._wake.clear()
            if self._stop.is_set():
                break
            now = time.time()
            try:
                if now - last_nodes >= self.opts.node_poll_s:
                    last_nodes = now
                    if self.registry.discover():
                        self.push_nodes()
                        self.refresh_requests()
                    self._check_held()
                if self.failed_open:
                    self._try_recover()
                else:
                    self._sync_once()
                if now - last_collect >= 1.0:
                    last_collect = now
                    self.registry.collect()
            except Exception as e:  # noqa: BLE001 - never let the loop die
                log.warning("tao_ray: sync loop error: %s: %s", type(e).__name__, e)
            self._flush_gates()

    def _poll_task_events(self) -> None:
        while not self._stop.wait(self.opts.task_events_poll_s):
            self.task_events.poll()

    def _build_batch(self) -> dict[str, Any]:
        now = time.time()
        with self.lock:
            # hand back slots idle for slot_linger_s, or idle at all when another group waits
            waiting = {g for g, w in self._want.items() if w[3] > 0}
            for group, ids in self._by_group.items():
                linger = 0.0 if (waiting - {group}) else self.opts.slot_linger_s
                keep = []
                for gid in ids:
                    s = self._slots[gid]
                    if s.inflight == 0 and now - s.idle_since >= linger and group not in waiting:
                        del self._slots[gid]
                        if s.tasks:
                            self._finished.append((gid, s.busy_s / s.tasks))
                        else:
                            self._cancel.append(gid)
                    else:
                        keep.append(gid)
                self._by_group[group] = keep
            batch = {"started": self._started, "finished": self._finished, "cancel": self._cancel,
                     "queued": [(q.tid, q.fn.group, q.fn.cpus, q.fn.gpus, q.fn.job)
                                for q in itertools.islice(self.queue, 0, 512)],
                     "slots": [(g, c, gp, job, n) for g, (c, gp, job, n) in self._want.items() if n > 0],
                     "deferred_total": len(self.queue)}
            self._want = {}
            self._started, self._finished, self._cancel = [], [], []
        return batch

    def _sync_once(self) -> None:
        batch = self._build_batch()
        try:
            resp = self.call("sync", batch)
        except Exception as e:  # noqa: BLE001
            self._fail_open(f"sync: {type(e).__name__}: {e}")
            return
        if resp["epoch"] != self.epoch:
            log.warning("tao_ray: controller restarted (epoch %s -> %s); re-registering nodes", self.epoch, resp["epoch"])
            self._reset_after_restart(resp["epoch"])
            return
        self.budget = resp.get("budget") or {}
        run = self._take_grants(batch, resp["grants"])
        for q, grant in run:
            self._run(q, grant)
        if resp.get("scale"):
            from tao_ray import autoscale

            autoscale.apply(self, resp["scale"])
        if self.queue or self._finished or self._started:
            self._wake.set()
        if self.queue:
            time.sleep(min(self.opts.sync_interval_s, 0.05))

    def _take_grants(self, batch: dict[str, Any], grants: list) -> list[tuple[_Queued, Optional[Grant]]]:
        """Record the slots granted; return the queued tasks to run now with their grants."""
        run = []
        with self.lock:
            got = {g.group for tid, g in grants if not tid}
            for group, *_ in batch["slots"]:
                if group not in got:
                    self._denied[group] = time.time()
            by_tid = {q.tid: q for q in self.queue} if any(tid for tid, _ in grants) else {}
            for tid, g in grants:
                if not tid:
                    self._denied.pop(g.group, None)
                    self._slots[g.gid] = _Slot(g)
                    self._by_group.setdefault(g.group, []).append(g.gid)
                    continue
                q = by_tid.get(tid)
                if q is None:  # no longer queued (failed open meanwhile)
                    if g is not None:
                        self._cancel.append(tid)
                    continue
                if g is None:
                    log.warning("tao_ray: task %s rejected by the controller (job energy budget); running it "
                                "unmanaged", tid)
                else:
                    self._one[tid] = (g, time.time())
                    self._started.append(tid)
                run.append((q, g))
            if run:
                done = {q.tid for q, _ in run}
                self.queue = deque(q for q in self.queue if q.tid not in done)
            self._sync_seq += 1
            self._granted.notify_all()
        return run

    def _flush_gates(self) -> None:
        with self.lock:
            items, self._release = self._release, []
        if items:
            self.gate.release.remote(items)

    # ------------------------------------------------------------------ fail open
    def _fail_open(self, why: str) -> None:
        with self.lock:
            if self.failed_open:
                return
            self.failed_open = True
            self.counters["fail_open_events"] += 1
            pending = list(self.queue)
            self.queue.clear()
            self._clear_grants()
            self._granted.notify_all()
        log.warning("tao_ray: controller unavailable (%s); failing open: %d queued and all new tasks go to "
                    "Ray's default scheduling until it answers again", why, len(pending))
        for q in pending:
            self._run(q, None)
        self._flush_gates()

    def _clear_grants(self) -> None:
        self._slots.clear()
        self._by_group.clear()
        self._one.clear()
        self._held.clear()
        self._want.clear()
        self._started, self._finished, self._cancel = [], [], []

    def _try_recover(self) -> None:
        try:
            epoch = self.call("ping")
        except Exception:  # noqa: BLE001
            try:  # the handle may be stale after a restart: look the actor up by name
                self.controller = ray.get_actor(CONTROLLER_NAME, namespace=NAMESPACE)
            except Exception:  # noqa: BLE001
                pass
            time.sleep(0.5)
            return
        self._reset_after_restart(epoch)

    def _reset_after_restart(self, epoch: str) -> None:
        try:
            self.call("reset")
        except Exception as e:  # noqa: BLE001
            self._fail_open(f"reset: {e}")
            return
        with self.lock:
            self.epoch = epoch
            self._clear_grants()
            self.failed_open = False
        self.push_nodes()
        if not self.failed_open:
            log.warning("tao_ray: controller answers again (epoch %s); TAO placement resumed", epoch)

    # ------------------------------------------------------------------ reading back
    def close_timelines(self) -> None:
        """Take a reading on every live node now, so timelines reach this instant. First
        waits until the spans of the tasks that ended before this call have surely reached
        their samplers (``SPAN_LAG_S`` after the latest end)."""
        from tao_ray.sampler import SPAN_LAG_S

        wait = self.last_end + SPAN_LAG_S - time.time()
        if wait > 0:
            time.sleep(wait)
        self.registry.read_all_now()

    def decision_events(self) -> list[dict[str, Any]]:
        try:
            n, evs = self.call("decision_events", self._n_events)
            self.events.extend(evs)
            self._n_events = n
        except Exception:  # noqa: BLE001
            pass
        return self.events

    def note(self, action: str, reason: str, **what: Any) -> None:
        """One line of the scale log (what TAO did to a node, or why it did not)."""
        with self.lock:
            self.scale_log.append({"t_s": time.time(), "action": action, "reason": reason, **what})

    def stop(self, kill_actors: bool = True) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5.0)
        with self.lock:  # tasks still queued run under Ray's default scheduling
            pending = list(self.queue)
            self.queue.clear()
        for q in pending:
            self._run(q, None)
        self._flush_gates()
        if kill_actors:
            self.registry.kill_samplers()
            try:
                ray.kill(self.controller)
            except Exception:  # noqa: BLE001
                pass
            wait_names_free([CONTROLLER_NAME])
            # the gate stays: it may still hold results of queued tasks; it ends with the driver


def _safe(alive: Callable[[], bool]) -> bool:
    try:
        return bool(alive())
    except Exception:  # noqa: BLE001 - unknown: keep the reservation
        return True


def on_done(ref: Any, callback: Callable[[], Any]) -> None:
    """Call ``callback()`` once the task behind ``ref`` has finished (or failed), without
    fetching its value where Ray allows it (``ObjectRef._on_ready``, else ``_on_completed``,
    else the public ``ref.future()``). The callback keeps ``ref`` alive until it runs, so a
    caller dropping its ref does not lose the notification."""
    cb = lambda *_a, _r=ref: callback()  # noqa: E731
    try:
        ref._on_ready(cb)
        return
    except AttributeError:
        pass
    try:
        ref._on_completed(cb)
    except AttributeError:
        ref.future().add_done_callback(cb)
