"""The driver side of tao_ray: the actors it starts, how a wrapped task is submitted, the
background sync with the controller actor, and failing open.

Grants are held in a :class:`tao_core.live.grants.GrantPool` (its module doc: slots under
open admission, a grant per task under strict admission, one per actor or bundle). A
strictly admitted task is not submitted to Ray until its grant comes: its ObjectRef is a
gate actor's, resolved with the task's result once it ran. Task ends reach the driver
through ``ObjectRef`` callbacks, the samplers' settled task energies through the node
collection; both go to the controller in the next batch.

Fail open: when the controller actor dies or does not answer within ``timeout_s``, waiting
and new tasks go to Ray's default scheduling with a logged warning; the driver keeps
trying, and when the (restarted) controller answers it re-registers the nodes and resumes.
"""
from __future__ import annotations

import functools
import itertools
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Optional

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from tao_core.control.config import ControllerConfig
from tao_core.control.types import NodeState, NodeType, TaskRequest
from tao_core.live.grants import GrantPool, Waiting
from tao_core.live.nodes import NodeBook
from tao_core.live.values import Grant
from tao_core.live.token import new_token
from tao_core.power.node_json import node_type_to_dict
from tao_ray.autoscale import Scaler
from tao_ray.cluster import RayNodes, wait_names_free
from tao_ray.controller_actor import ControllerActor
from tao_ray.gate import Gate
from tao_ray.records import CONTROLLER_NAME, NAMESPACE
from tao_ray.task_events import TaskEventReader

log = logging.getLogger("tao_ray")


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

    def __init__(self, node_types: dict[str, NodeType], nodes: dict[str, Any], config: ControllerConfig,
                 opts: Options, launchable: dict[str, int]) -> None:
        self.token, self.config, self.opts = new_token(), config, opts
        self.t_start = self.last_end = time.time()
        self.counters = dict.fromkeys(("placed", "deferred", "default", "fail_open_events"), 0)
        self.placements: deque = deque(maxlen=10_000)  # (Ray TaskID, node id) of tasks TAO placed
        self.failed_open = False
        self.budget: dict[str, Any] = {}
        self.events: list[dict[str, Any]] = []
        self.last_summary: Optional[dict[str, Any]] = None
        self._wake, self._stop = threading.Event(), threading.Event()
        self._ids = itertools.count()
        self._release: list[tuple[str, list]] = []  # gate releases not sent yet
        self._release_lock = threading.Lock()
        self.pool = GrantPool(linger_s=opts.slot_linger_s, wake=self._wake.set)
        self.book = NodeBook(launchable=launchable)
        self.nodes = RayNodes(self.token, self.book, node_types, **nodes, interval_s=opts.sample_interval_s,
                              timeout_s=opts.timeout_s)
        self.scaler = Scaler(self.book, self.nodes, opts, tell=self._tell_state, push=self.push_nodes)
        self.task_events = TaskEventReader(since_s=self.t_start)
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        self.nodes.discover(wait=True)
        self.placing = bool(self.book.live())  #: some typed node is live: TAO places
        self._pushed: set[str] = set(self.nodes.node_types)
        self.controller = ControllerActor.options(
            name=CONTROLLER_NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
            max_restarts=-1, num_cpus=0, scheduling_strategy=here,
        ).remote(self.token, [node_type_to_dict(t) for t in self.nodes.node_types.values()], config.to_dict())
        self.gate = Gate.options(num_cpus=0, max_concurrency=100_000, scheduling_strategy=here).remote()
        self.epoch = ray.get(self.controller.ping.remote(self.token), timeout=max(opts.timeout_s, 30.0))
        self.call("reset")
        self.push_nodes()
        for target in (self._loop, self._poll_task_events):
            threading.Thread(target=target, name="tao-sync", daemon=True).start()

    def call(self, method: str, *args: Any, timeout: Optional[float] = None) -> Any:
        """``ControllerSession.method(*args)`` in the controller actor; waits for the answer."""
        ref = self.controller.do.remote(self.token, method, *args)
        return ray.get(ref, timeout=self.opts.timeout_s if timeout is None else timeout)

    def push_nodes(self) -> None:
        """Tell the controller the node types it lacks and the nodes as they are now."""
        try:
            for name, t in self.nodes.node_types.items():
                if name not in self._pushed:
                    ray.get(self.controller.add_node_type.remote(self.token, node_type_to_dict(t)),
                            timeout=self.opts.timeout_s)
                    self._pushed.add(name)
            self.call("sync_nodes", self.book.controller_view())
        except Exception as e:  # noqa: BLE001
            self._fail_open(f"sync_nodes: {type(e).__name__}: {e}")

    def _tell_state(self, node_id: str, state: NodeState) -> None:
        self.controller.do.remote(self.token, "set_node_state", node_id, state)

    # ------------------------------------------------------------------ submission
    def submit(self, fn: Any, args: tuple, kwargs: dict) -> Any:
        """Submit one task of the TAO remote function ``fn``; returns its ObjectRef."""
        if self.failed_open or not self.placing:
            self.counters["default"] += 1
            return fn.default_handle().remote(self.token, *args, **kwargs)
        if self.opts.strict:
            tid = f"t{next(self._ids)}"
            self.pool.wait(TaskRequest(tid, fn.group, cpus=fn.cpus, gpus=fn.gpus, job=fn.job), (fn, args, kwargs))
            self.counters["deferred"] += 1
            return self.gate.hold.remote(tid)
        s = self.pool.take_slot(fn.group, fn.cpus, fn.gpus, fn.job, wait_s=min(self.opts.timeout_s, 0.5),
                                available=lambda: not self.failed_open)
        if s is None:
            self.counters["default"] += 1
            return fn.default_handle().remote(self.token, *args, **kwargs)
        self.counters["placed"] += 1
        ref = fn.handle_for(s.grant.node_id).remote(self.token, *args, **kwargs)
        tid = ref.task_id()
        self.placements.append((tid, s.grant.node_id))
        self.pool.ran(s, tid.hex())
        on_done(ref, functools.partial(self._slot_ended, s, time.time()))
        return ref

    def _slot_ended(self, slot: Any, t0: float) -> None:
        self.last_end = time.time()
        self.pool.slot_done(slot, t0)

    def _strict_ended(self, tid: str) -> None:
        self.last_end = time.time()
        self.pool.strict_done(tid)

    def _run(self, w: Waiting, grant: Optional[Grant]) -> None:
        """Submit a waiting task now (on its grant's node, or unmanaged) and resolve its gate."""
        fn, args, kwargs = w.call
        tid = w.request.task_id
        if grant is None:
            ref = fn.default_handle().remote(self.token, *args, **kwargs)
        else:
            ref = fn.handle_for(grant.node_id).remote(self.token, *args, **kwargs)
            self.placements.append((ref.task_id(), grant.node_id))
            on_done(ref, functools.partial(self._strict_ended, tid))
        with self._release_lock:
            self._release.append((tid, [ref]))

    def _flush_gates(self) -> None:
        with self._release_lock:
            items, self._release = self._release, []
        if items:
            self.gate.release.remote(items)

    # ------------------------------------------------------------------ sync loop
    def _loop(self) -> None:
        last_nodes = last_collect = time.time()
        while not self._stop.is_set():
            self._wake.wait(self.opts.sync_interval_s)
            self._wake.clear()
            now = time.time()
            try:
                if now - last_nodes >= self.opts.node_poll_s:
                    last_nodes = now
                    if self.nodes.discover():
                        self.push_nodes()
                        self.scaler.refresh_requests()
                    self.pool.check_held()
                    self.placing = bool(self.book.live())
                if now - last_collect >= 1.0:
                    last_collect = now
                    self.pool.settled(self.nodes.collect())
                if self.failed_open:
                    self._try_recover()
                else:
                    self._sync_once()
            except Exception as e:  # noqa: BLE001 - never let the loop die
                log.warning("tao_ray: sync loop error: %s: %s", type(e).__name__, e)
            self._flush_gates()

    def _poll_task_events(self) -> None:
        while not self._stop.wait(self.opts.task_events_poll_s):
            self.task_events.poll()

    def _sync_once(self) -> None:
        try:
            reply = self.call("sync", self.pool.batch())
        except Exception as e:  # noqa: BLE001
            self._fail_open(f"sync: {type(e).__name__}: {e}")
            return
        if reply.epoch != self.epoch:
            log.warning("tao_ray: controller restarted (epoch %s -> %s); re-registering nodes", self.epoch, reply.epoch)
            self._resume(reply.epoch)
            return
        self.budget = reply.budget
        for w, grant in self.pool.apply(reply):
            if grant is None:
                log.warning("tao_ray: task %s rejected by the controller (job energy budget); running it unmanaged",
                            w.request.task_id)
            self._run(w, grant)
        if reply.scale:
            self.scaler.apply(reply.scale)
        if self.pool.busy():
            self._wake.set()
            time.sleep(min(self.opts.sync_interval_s, 0.05))

    # ------------------------------------------------------------------ fail open
    def _fail_open(self, why: str) -> None:
        if self.failed_open:
            return
        self.failed_open = True
        self.counters["fail_open_events"] += 1
        waiting = self.pool.clear(keep_waiting=False)
        log.warning("tao_ray: controller unavailable (%s); failing open: %d waiting and all new tasks go to Ray's "
                    "default scheduling until it answers again", why, len(waiting))
        for w in waiting:
            self._run(w, None)
        self._flush_gates()

    def _try_recover(self) -> None:
        try:
            epoch = ray.get(self.controller.ping.remote(self.token), timeout=self.opts.timeout_s)
        except Exception:  # noqa: BLE001 - the handle may be stale after a restart: look the actor up
            try:
                self.controller = ray.get_actor(CONTROLLER_NAME, namespace=NAMESPACE)
            except ValueError:
                pass
            time.sleep(0.5)
            return
        self._resume(epoch)

    def _resume(self, epoch: str) -> None:
        """A (restarted) controller of ``epoch`` answers: it drops every grant, and gets the
        nodes and the waiting tasks again."""
        try:
            self.call("reset")
        except Exception as e:  # noqa: BLE001
            self._fail_open(f"reset: {type(e).__name__}: {e}")
            return
        self.pool.clear(keep_waiting=True)
        self.epoch, self.failed_open = epoch, False
        self._pushed = set()
        self.push_nodes()
        if not self.failed_open:
            log.warning("tao_ray: controller answers again (epoch %s); TAO placement resumed", epoch)

    # ------------------------------------------------------------------ reading back
    def close_timelines(self) -> None:
        """A reading on every live node now, once the spans of the tasks that ended before
        this call surely reached their samplers (``SPAN_LAG_S`` after the latest end)."""
        from tao_core.live.sampler import SPAN_LAG_S

        time.sleep(max(0.0, self.last_end + SPAN_LAG_S - time.time()))
        self.pool.settled(self.nodes.read_all_now())

    def decision_events(self) -> list[dict[str, Any]]:
        try:
            n, evs = self.call("decision_events", len(self.events))
            self.events.extend(evs)
        except Exception:  # noqa: BLE001 - controller down: the events seen so far
            pass
        return self.events

    def stop(self, kill_actors: bool = True) -> None:
        self._stop.set()
        self._wake.set()
        for w in self.pool.clear(keep_waiting=False):  # tasks still waiting run under Ray's default scheduling
            self._run(w, None)
        self._flush_gates()
        if kill_actors:
            self._remember_fits()
            self.nodes.kill_samplers()
            try:
                ray.kill(self.controller)
            except Exception:  # noqa: BLE001
                pass
            wait_names_free([CONTROLLER_NAME])
            # the gate stays: it may still hold results of queued tasks; it ends with the driver

    def _remember_fits(self) -> None:
        """Samplers of discovered nodes with a measured source keep the controller's fitted curve."""
        try:
            fits = self.call("fitted_models", timeout=10.0)
            ray.get([r.handle.remember.remote(self.token, fits.get(r.node_type)) for r in self.book.live()],
                    timeout=10.0)
        except Exception as e:  # noqa: BLE001 - a fit is kept next time
            log.info("tao_ray: fitted curves not kept (%s)", e)


def on_done(ref: Any, callback: Callable[[], Any]) -> None:
    """Call ``callback()`` once the task behind ``ref`` has finished (or failed), without
    fetching its value where Ray allows it (``ObjectRef._on_ready``, else ``_on_completed``,
    else the public ``ref.future()``). The callback keeps ``ref`` alive until it runs."""
    cb = lambda *_a, _r=ref: callback()  # noqa: E731
    for name in ("_on_ready", "_on_completed"):
        if hasattr(ref, name):
            getattr(ref, name)(cb)
            return
    ref.future().add_done_callback(cb)
