"""The driver side of tao_ray: the actors it starts and how a wrapped task is submitted; the
sync with the controller actor and failing open are :class:`tao_core.live.driver.Driver`'s,
the grants a :class:`tao_core.live.grants.GrantPool`'s.

A strictly admitted task is not submitted to Ray until its grant comes: its ObjectRef is
a gate actor's, resolved with the task's result once it ran. Task ends reach the driver
through ``ObjectRef`` callbacks.
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
from tao_core.live.driver import Driver, DriverPort
from tao_core.live.grants import GrantPool, Slot, Waiting
from tao_core.live.nodes import NodeBook
from tao_core.live.plans import PlanRunner
from tao_core.live.sampler import SPAN_LAG_S
from tao_core.live.token import new_token
from tao_core.live.values import Grant, TaskEnergy
from tao_core.power.node_json import node_type_to_dict
from tao_ray.autoscale import RayPort
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


class Runtime(DriverPort):
    """One per driver; created by :func:`tao_ray.init`."""

    def __init__(self, node_types: dict[str, NodeType], nodes: dict[str, Any], config: ControllerConfig,
                 opts: Options, launchable: dict[str, int]) -> None:
        self.token, self.config, self.opts = new_token(), config, opts
        self.t_start = self.last_end = time.time()
        self.counters = dict.fromkeys(("placed", "deferred", "default"), 0)
        self.placements: deque = deque(maxlen=10_000)  # (Ray TaskID, node id) of tasks TAO placed
        self.last_summary: Optional[dict[str, Any]] = None
        self._ids = itertools.count()
        self._release: list[tuple[str, list]] = []  # gate releases not sent yet
        self._release_lock = threading.Lock()
        self.book = NodeBook(launchable=launchable)
        wake = threading.Event()
        self.pool = GrantPool(linger_s=opts.slot_linger_s, wake=wake.set)
        self.nodes = RayNodes(self.token, self.book, node_types, **nodes, interval_s=opts.sample_interval_s,
                              timeout_s=opts.timeout_s, last_end=lambda: self.last_end)
        self.task_events = TaskEventReader(since_s=self.t_start)
        self.nodes.discover(wait=True)
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        self.controller = ControllerActor.options(
            name=CONTROLLER_NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
            max_restarts=-1, num_cpus=0, scheduling_strategy=here,
        ).remote(self.token, [node_type_to_dict(t) for t in self.nodes.node_types.values()], config.to_dict())
        self.gate = Gate.options(num_cpus=0, max_concurrency=100_000, scheduling_strategy=here).remote()
        plans = PlanRunner(self.book, RayPort(self.nodes, opts, tell=self._tell_state, push=self._push))
        self.driver = Driver(self, self.pool, self.book, plans, wake=wake, sync_interval_s=opts.sync_interval_s,
                             node_poll_s=opts.node_poll_s)
        epoch = ray.get(self.controller.ping.remote(self.token), timeout=max(opts.timeout_s, 30.0))
        self.driver.start(epoch, set(self.nodes.node_types))
        threading.Thread(target=self._poll_task_events, name="tao-task-events", daemon=True).start()

    # ------------------------------------------------------------------ the driver's port
    def call(self, method: str, *args: Any, timeout: Optional[float] = None) -> Any:
        ref = self.controller.do.remote(self.token, method, *args)
        return ray.get(ref, timeout=self.opts.timeout_s if timeout is None else timeout)

    def ping(self) -> str:
        try:
            return ray.get(self.controller.ping.remote(self.token), timeout=self.opts.timeout_s)
        except Exception:  # the handle may be stale after a restart: look the actor up by name
            try:
                self.controller = ray.get_actor(CONTROLLER_NAME, namespace=NAMESPACE)
            except ValueError:
                pass
            raise

    def add_type(self, node_type: NodeType) -> None:
        ray.get(self.controller.add_node_type.remote(self.token, node_type_to_dict(node_type)),
                timeout=self.opts.timeout_s)

    def node_types(self) -> dict[str, NodeType]:
        return self.nodes.node_types

    def discover(self) -> bool:
        return self.nodes.discover()

    def collect(self) -> list[TaskEnergy]:
        return self.nodes.collect()

    def run(self, w: Waiting, grant: Optional[Grant]) -> None:
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

    def flush(self) -> None:
        with self._release_lock:
            items, self._release = self._release, []
        if items:
            self.gate.release.remote(items)

    def _tell_state(self, node_id: str, state: NodeState) -> None:
        self.controller.do.remote(self.token, "set_node_state", node_id, state)

    def _push(self) -> None:
        self.driver.push_nodes()

    # ------------------------------------------------------------------ submission
    def submit(self, fn: Any, args: tuple, kwargs: dict) -> Any:
        """Submit one task of the TAO remote function ``fn``; returns its ObjectRef."""
        if self.driver.failed_open or not self.driver.placing:
            self.counters["default"] += 1
            return fn.default_handle().remote(self.token, *args, **kwargs)
        if self.opts.strict:
            tid = f"t{next(self._ids)}"
            self.pool.wait(TaskRequest(tid, fn.group, cpus=fn.cpus, gpus=fn.gpus, job=fn.job), (fn, args, kwargs))
            self.counters["deferred"] += 1
            return self.gate.hold.remote(tid)
        s = self.pool.take_slot(fn.group, fn.cpus, fn.gpus, fn.job, wait_s=min(self.opts.timeout_s, 0.5),
                                available=lambda: not self.driver.failed_open)
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

    def _slot_ended(self, slot: Slot, t0: float) -> None:
        self.last_end = time.time()
        self.pool.slot_done(slot, t0)

    def _strict_ended(self, tid: str) -> None:
        self.last_end = time.time()
        self.pool.strict_done(tid)

    def _poll_task_events(self) -> None:
        while not self.driver.stopped.wait(self.opts.task_events_poll_s):
            self.task_events.poll()

    # ------------------------------------------------------------------ reading back, stopping
    def close_timelines(self) -> None:
        """A reading on every live node now, once the spans of the tasks that ended before
        this call surely reached their samplers (``SPAN_LAG_S`` after the latest end)."""
        time.sleep(max(0.0, self.last_end + SPAN_LAG_S - time.time()))
        self.pool.settled(self.nodes.read_all_now())

    def stop(self, kill_actors: bool = True) -> None:
        self.driver.stop()
        if not kill_actors:
            return  # the gate stays in any case: it may still hold results of waiting tasks
        try:  # samplers of discovered nodes with a measured source keep the controller's fit
            fits = self.call("fitted_models", timeout=10.0)
            ray.get([r.handle.remember.remote(self.token, fits.get(r.node_type)) for r in self.book.live()],
                    timeout=10.0)
        except Exception as e:  # noqa: BLE001
            log.info("tao_ray: fitted curves not kept (%s)", e)
        self.nodes.kill_samplers()
        try:
            ray.kill(self.controller)
        except Exception:  # noqa: BLE001
            pass
        wait_names_free([CONTROLLER_NAME])


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
