"""Driver side of tao_ray: node discovery and samplers, the grant table, TAO's admission
queue, the background sync with the controller actor, and fail-open.

Grants. A grant is a controller PLACE decision: a reservation of one task's CPUs/GPUs on
a node. The driver never asks the controller per task:

- open admission (no power budget): a grant is a slot the driver reuses for every task of
  its group, in round robin over the group's slots; when all slots are busy the task still
  goes to a slot's node (Ray queues it there) and the driver asks for more slots in the next
  sync; a slot idle for ``slot_linger_s`` is handed back (the controller learns the mean
  task duration of its tasks).
- strict admission (a power budget is set): a task starts only on a grant made for it; the
  others wait in TAO's admission queue on the driver (their ObjectRefs come from a gate
  actor on the driver's node, resolved with the task's result once it ran) until a sync
  brings their grants. Every queued task is offered to the controller at every sync
  (about every ``sync_interval_s``), so each runs once power headroom returns.

Task ends reach the driver through ``ObjectRef.future()`` callbacks and go to the
controller in batches. Fail open: when the controller actor dies or does not answer within
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
from typing import Any, Callable, Mapping, Optional

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from tao_core.control.config import ControllerConfig
from tao_core.control.types import NodeType
from tao_core.errors import InputError
from tao_ray.controller_actor import CONTROLLER_NAME, ControllerActor, node_type_to_dict
from tao_ray.gate import Gate
from tao_ray.nodes import RayNode, alive_nodes, resolve_type
from tao_ray.sampler import NAMESPACE, NodeSampler, sampler_name

log = logging.getLogger("tao_ray")

#: method of the timeline row that bridges a gap with no sampler on the node
NO_SAMPLER_METHOD = "no sampler (released or restarted): idle_w of its node type over the gap, modeled"
_REPLACED = "replaced"  # incarnation placeholder: TAO started a new sampler on the node


@dataclass
class _Grant:
    gid: str
    node_id: str
    group: str
    slot: bool  # reusable slot (open admission) or one-task grant (strict)
    inflight: int = 0
    tasks: int = 0
    dur_sum: float = 0.0
    idle_since: float = field(default_factory=time.time)
    started: bool = False


@dataclass
class _Queued:
    tid: str
    fn: Any  # the TAO remote function
    args: tuple
    kwargs: dict
    box: Any = None
    since: float = field(default_factory=time.time)


class Runtime:
    """One per driver; created by :func:`tao_ray.init`."""

    def __init__(self, node_types: Mapping[str, NodeType], *, config: ControllerConfig,
                 node_type_of: Mapping[str, str] | None, default_type: Optional[str],
                 sample_interval_s: float, sync_interval_s: float, timeout_s: float,
                 slot_linger_s: float, node_poll_s: float, strict: Optional[bool],
                 on_power_off: Optional[Callable[[str], Any]], on_power_on: Optional[Callable[[str], Any]],
                 drain: str, shared_machine: Optional[bool],
                 launchable: Mapping[str, int] | None = None, boot_timeout_s: float = 120.0,
                 hint_with: str = "label") -> None:
        self.node_types = dict(node_types)
        self.config = config
        self.node_type_of = dict(node_type_of or {})
        self.default_type = default_type
        self.sample_interval_s = sample_interval_s
        self.sync_interval_s = sync_interval_s
        self.timeout_s = timeout_s
        self.slot_linger_s = slot_linger_s
        self.node_poll_s = node_poll_s
        self.strict = (config.power_budget_w is not None) if strict is None else strict
        self.on_power_off = on_power_off
        self.on_power_on = on_power_on
        if drain not in ("none", "gcs"):
            raise InputError("drain: use 'none' (leave removal to Ray's autoscaler idle timeout) or 'gcs'")
        self.drain = drain
        self.shared_machine = shared_machine
        self.driver_id = ray.get_runtime_context().get_job_id() + "-" + hex(id(self))[2:]
        self.t_start = time.time()
        self.last_end = 0.0  # when the latest task TAO placed was seen to end (wall-clock s)

        self.lock = threading.RLock()
        self._collect_lock = threading.Lock()
        self.nodes: dict[str, RayNode] = {}
        self.node_type: dict[str, str] = {}
        self.node_state: dict[str, str] = {}
        self.removed_at: dict[str, float] = {}
        self.retired: set[str] = set()  # removed nodes replaced by a node booted in their place
        self.released_at: dict[str, float] = {}  # nodes left to Ray's autoscaler
        self._energy_offset: dict[str, float] = {}
        self._tl_idx: dict[str, int] = {}
        self.launchable = dict(launchable or {})
        for typ in self.launchable:
            if typ not in self.node_types:
                raise InputError(f"launchable: node type {typ!r} is not among node_types {sorted(self.node_types)}")
        self.virtual: dict[str, str] = {}  # placeholder id -> node type (nodes the autoscaler may launch)
        self._vids = itertools.count()
        self._boot_at: dict[str, float] = {}
        self._requested: list[str] = []
        self.boot_timeout_s = boot_timeout_s
        if hint_with not in ("label", "resource"):
            raise InputError("hint_with: use 'label' (bundle label selectors) or 'resource' (tao_type_NAME resources)")
        self.hint_with = hint_with
        self.samplers: dict[str, Any] = {}
        self._shared: dict[str, bool] = {}  # node id -> modeled from its own processes
        self._incarnation: dict[str, str] = {}  # node id -> incarnation of its sampler actor
        self.timelines: dict[str, list[tuple]] = {}
        self.spans: dict[str, list[tuple]] = {}
        self._span_idx: dict[str, int] = {}
        self.grants: dict[str, _Grant] = {}
        self.slots: dict[str, list[str]] = {}  # group -> slot grant ids
        self._rr: dict[str, itertools.count] = {}
        self.queue: deque[_Queued] = deque()
        self.want_slots: dict[str, tuple[float, float, Optional[str], int]] = {}
        self._started: list[str] = []
        self._finished: list[tuple[str, float]] = []
        self._cancel: list[str] = []
        self._release: list[tuple[str, list]] = []
        self._ids = itertools.count()
        self._sync_seq = 0
        self._denied: dict[str, float] = {}  # group -> when the controller last gave no slot
        self.failed_open = False
        self.epoch: Optional[str] = None
        self.budget: dict[str, Any] = {}
        self.counters = {"placed": 0, "deferred": 0, "default": 0, "fail_open_events": 0,
                         "scale_up_hints": 0, "power_off": 0, "drain": 0}
        self.scale_log: list[dict[str, Any]] = []
        #: (Ray TaskID, node id) of the latest tasks TAO placed, for checking placement
        self.placements: deque = deque(maxlen=10_000)
        self.events: list[dict[str, Any]] = []
        self._n_events = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._granted = threading.Condition(self.lock)

        self.controller = ControllerActor.options(
            name=CONTROLLER_NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
            max_restarts=-1, num_cpus=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False),
        ).remote([node_type_to_dict(t) for t in self.node_types.values()], _config_dict(config))
        self.gate = Gate.options(num_cpus=0, max_concurrency=100_000, scheduling_strategy=NodeAffinitySchedulingStrategy(
            ray.get_runtime_context().get_node_id(), soft=False)).remote()
        self.epoch = ray.get(self.controller.ping.remote(), timeout=max(timeout_s, 30.0))
        ray.get(self.controller.reset_driver.remote(self.driver_id))
        self._discover(wait=True)
        self._thread = threading.Thread(target=self._loop, name="tao-sync", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ nodes
    def _discover(self, wait: bool = False) -> None:
        """Pick up new nodes (start their samplers), drop dead ones, tell the controller."""
        nodes = alive_nodes(ray.nodes())
        addr_count: dict[str, int] = {}
        for n in nodes:
            addr_count[n.address] = addr_count.get(n.address, 0) + 1
        new = []
        alive = set()
        for n in nodes:
            typ = resolve_type(n, self.node_types, self.node_type_of, self.default_type)
            if typ is None:
                continue
            alive.add(n.node_id)
            if n.node_id in self.nodes:
                continue
            shared = self.shared_machine if self.shared_machine is not None else addr_count[n.address] > 1
            s = self._start_sampler(n, typ, shared)
            self._shared[n.node_id] = shared
            with self.lock:
                for old, st in self.node_state.items():  # a node booted for a plan's power_on
                    if st == "booting" and self.node_type.get(old) == typ and old not in self.retired:
                        self.retired.add(old)
                        break
                self.nodes[n.node_id] = n
                self.node_type[n.node_id] = typ
                self.node_state.setdefault(n.node_id, "on")
                self.samplers[n.node_id] = s
                self.timelines.setdefault(n.node_id, [])
                self.spans.setdefault(n.node_id, [])
            new.append(s)
        with self.lock:
            for nid in list(self.nodes):
                if nid not in alive and nid not in self.removed_at:
                    self.removed_at[nid] = time.time()
                    self.node_state[nid] = "off"
                if nid not in alive and self.launchable:
                    self.retired.add(nid)  # launchable placeholders stand for the capacity now
            if self.launchable:
                self._update_launchable(alive)
        if wait and new:
            ray.get([s.ping.remote() for s in new], timeout=60)
        self._push_nodes()

    def _update_launchable(self, alive: set[str]) -> None:
        """Keep, per launchable node type, (max nodes - alive nodes) placeholders that are off
        in the controller's view; a node that joined replaces a booting placeholder first."""
        now = time.time()
        changed = False
        for typ, q in self.launchable.items():
            n_alive = sum(1 for nid in alive if self.node_type.get(nid) == typ)
            want = max(0, int(q) - n_alive)
            mine = [v for v, t in self.virtual.items() if t == typ and v not in self.retired]
            mine.sort(key=lambda v: (self.node_state.get(v) != "booting", v))
            while len(mine) > want:
                v = mine.pop(0)
                self.retired.add(v)
                changed = changed or self.node_state.get(v) == "booting"
            while len(mine) < want:
                v = f"launchable-{typ}-{next(self._vids)}"
                self.virtual[v] = typ
                self.node_type[v] = typ
                self.node_state[v] = "off"
                mine.append(v)
            for v in mine:  # a launch that never came: offer the capacity again
                if self.node_state.get(v) == "booting" and now - self._boot_at.get(v, now) > self.boot_timeout_s:
                    self.node_state[v] = "off"
                    changed = True
        self.refresh_requests()

    def release_node(self, nid: str) -> None:
        """Stop the node's sampler (after a last reading) so Ray's autoscaler can see it idle."""
        s = self.samplers.get(nid)
        try:
            if s is not None:
                ray.get(s.read_now.remote(), timeout=5.0)
            self.collect()
            if s is not None:
                ray.kill(s, no_restart=True)
        except Exception:  # noqa: BLE001
            pass
        with self.lock:
            self.released_at[nid] = time.time()
            self.node_state[nid] = "releasing"

    def resume_node(self, nid: str) -> None:
        """Take back a released node that is still in the cluster: a new sampler, whose
        cumulative energy the next collect continues from the modeled idle energy of the gap
        (as for a restarted sampler)."""
        typ = self.node_type[nid]
        n = self.nodes[nid]
        with self.lock:
            self.released_at.pop(nid, None)
            self._incarnation[nid] = _REPLACED  # the next collect takes up the new sampler
            self.node_state[nid] = "on"
        try:  # the name of the killed sampler may take a moment to be freed
            ray.get_actor(sampler_name(nid), namespace=NAMESPACE)
            time.sleep(0.2)
        except ValueError:
            pass
        self.samplers[nid] = self._start_sampler(n, typ, self._shared.get(nid, bool(self.shared_machine)))
        self._push_nodes()

    def _start_sampler(self, n: RayNode, typ: str, shared: bool) -> Any:
        """The sampler actor of node ``n`` (of TAO node type ``typ``), pinned to it."""
        nt = self.node_types[typ]
        return NodeSampler.options(
            name=sampler_name(n.node_id), namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
            num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(n.node_id, soft=False),
        ).remote(n.node_id, tuple(nt.power_curve.points_w), n.cpus or nt.cpus, shared,
                 self.sample_interval_s, CONTROLLER_NAME, typ, float(nt.idle_w))

    def refresh_requests(self) -> None:
        """One ``request_resources`` call for every placeholder now booting (an empty one
        when none is), so Ray's autoscaler launches exactly what the controller asked."""
        from tao_ray import autoscale

        booting = [self.virtual[v] for v in self.virtual
                   if v not in self.retired and self.node_state.get(v) == "booting"]
        if booting == self._requested:
            return
        self._requested = booting
        autoscale.request(self.node_types, booting, self.hint_with)

    def _push_nodes(self) -> None:
        with self.lock:
            ids = [n for n in self.nodes if n not in self.retired] + [v for v in self.virtual if v not in self.retired]
            payload = [(nid, self.node_type[nid],
                        "off" if (nid in self.removed_at or nid in self.released_at) else self.node_state[nid])
                       for nid in ids]
        try:
            ray.get(self.controller.sync_nodes.remote(payload), timeout=self.timeout_s)
        except Exception as e:  # noqa: BLE001
            self._fail_open(f"sync_nodes: {type(e).__name__}: {e}")

    def live_nodes(self) -> list[str]:
        """Nodes still in the cluster whose sampler runs."""
        with self.lock:
            return [n for n in self.nodes if n not in self.removed_at and n not in self.released_at]

    # ------------------------------------------------------------------ submission
    def new_tid(self) -> str:
        return f"t{next(self._ids)}"

    def submit(self, fn: Any, args: tuple, kwargs: dict) -> Any:
        """Submit one task of the TAO remote function ``fn``; returns its ObjectRef."""
        if self.failed_open:
            self.counters["default"] += 1
            return fn.default_handle().remote(*args, **kwargs)
        group = fn.group
        with self.lock:
            if self.strict:
                tid = self.new_tid()
                q = _Queued(tid, fn, args, kwargs)
                self.queue.append(q)
                self.counters["deferred"] += 1
                self._wake.set()
            else:
                g = self._pick_slot(group)
                if g is None or g.inflight > 0:
                    # no free slot: ask the controller for one and wait for its answer (one
                    # round trip per burst, not per task), unless it just said no
                    if time.time() - self._denied.get(group, -1e9) > self.slot_linger_s:
                        c, gp, job, n = self.want_slots.get(group, (fn.cpus, fn.gpus, fn.job, 0))
                        self.want_slots[group] = (c, gp, job, min(n + 1, 64))
                        self._wake.set()
                        seq = self._sync_seq
                        end = time.time() + min(self.timeout_s, 0.5)
                        while time.time() < end and not self.failed_open:
                            g = self._pick_slot(group)
                            if (g is not None and g.inflight == 0) or self._sync_seq >= seq + 2:
                                break
                            self._granted.wait(timeout=max(end - time.time(), 0.001))
                        g = self._pick_slot(group)
                    if g is None:
                        self.counters["default"] += 1
                        return fn.default_handle().remote(*args, **kwargs)
                g.inflight += 1
                g.tasks += 1
                if not g.started:
                    g.started = True
                    self._started.append(g.gid)
                self.counters["placed"] += 1
                node = g.node_id
                gid = g.gid
        if self.strict:
            return self.gate.hold.remote(q.tid)
        ref = fn.handle_for(node).remote(*args, **kwargs)
        self.placements.append((ref.task_id(), node))
        t0 = time.time()
        on_done(ref, lambda gid=gid, t0=t0: self._slot_done(gid, t0))
        return ref

    def _pick_slot(self, group: str) -> Optional[_Grant]:
        ids = self.slots.get(group)
        if not ids:
            return None
        best = None
        k = next(self._rr.setdefault(group, itertools.count()))
        n = len(ids)
        for i in range(n):
            g = self.grants.get(ids[(k + i) % n])
            if g is None:
                continue
            if g.inflight == 0:
                return g
            if best is None or g.inflight < best.inflight:
                best = g
        return best

    def _slot_done(self, gid: str, t0: float) -> None:
        now = time.time()
        self.last_end = now
        with self.lock:
            g = self.grants.get(gid)
            if g is None:
                return
            g.inflight -= 1
            g.dur_sum += now - t0
            if g.inflight <= 0:
                g.inflight = 0
                g.idle_since = now

    def _one_done(self, gid: str, t0: float) -> None:
        now = time.time()
        self.last_end = now
        with self.lock:
            g = self.grants.pop(gid, None)
            if g is None:
                return
            self._finished.append((gid, now - t0))
        self._wake.set()

    def _run_granted(self, q: _Queued, node_id: Optional[str]) -> None:
        """Submit a queued task now (on ``node_id``, or unmanaged when None) and resolve its gate."""
        if node_id is None:
            ref = q.fn.default_handle().remote(*q.args, **q.kwargs)
        else:
            ref = q.fn.handle_for(node_id).remote(*q.args, **q.kwargs)
            self.placements.append((ref.task_id(), node_id))
            t0 = time.time()
            on_done(ref, lambda gid=q.tid, t0=t0: self._one_done(gid, t0))
        self._release.append((q.tid, [ref]))

    # ------------------------------------------------------------------ sync loop
    def _loop(self) -> None:
        last_nodes = time.time()
        last_collect = time.time()
        while not self._stop.is_set():
            self._wake.wait(self.sync_interval_s)
            self._wake.clear()
            if self._stop.is_set():
                break
            now = time.time()
            try:
                if now - last_nodes >= self.node_poll_s:
                    last_nodes = now
                    self._discover()
                if self.failed_open:
                    self._try_recover()
                else:
                    self._sync_once()
                if now - last_collect >= 1.0:
                    last_collect = now
                    self.collect()
            except Exception as e:  # noqa: BLE001 - never let the loop die
                log.warning("tao_ray: sync loop error: %s: %s", type(e).__name__, e)
            self._flush_gates()

    def _build_batch(self) -> dict[str, Any]:
        now = time.time()
        with self.lock:
            # hand back slots idle for slot_linger_s, or idle at all when another group waits
            waiting = {g for g, spec in self.want_slots.items() if spec[3] > 0}
            for group, ids in list(self.slots.items()):
                keep = []
                linger = 0.0 if (waiting - {group}) else self.slot_linger_s
                for gid in ids:
                    g = self.grants.get(gid)
                    if g is None:
                        continue
                    if g.inflight == 0 and now - g.idle_since >= linger and group not in waiting:
                        del self.grants[gid]
                        if g.tasks:
                            self._finished.append((gid, g.dur_sum / g.tasks))
                        else:
                            self._cancel.append(gid)
                    else:
                        keep.append(gid)
                self.slots[group] = keep
            queued = [(q.tid, q.fn.group, q.fn.cpus, q.fn.gpus, q.fn.job) for q in itertools.islice(self.queue, 0, 512)]
            slots = [(g, c, gp, job, n) for g, (c, gp, job, n) in self.want_slots.items() if n > 0]
            self.want_slots = {}
            batch = {"started": self._started, "finished": self._finished, "cancel": self._cancel,
                     "queued": queued, "slots": slots, "deferred_total": len(self.queue)}
            self._started, self._finished, self._cancel = [], [], []
        return batch

    def _sync_once(self) -> None:
        batch = self._build_batch()
        try:
            resp = ray.get(self.controller.sync.remote(self.driver_id, batch), timeout=self.timeout_s)
        except Exception as e:  # noqa: BLE001
            self._fail_open(f"sync: {type(e).__name__}: {e}")
            return
        if resp["epoch"] != self.epoch:
            log.warning("tao_ray: controller restarted (epoch %s -> %s); re-registering nodes", self.epoch, resp["epoch"])
            self._reset_after_restart(resp["epoch"])
            return
        self.budget = resp.get("budget") or {}
        self._n_events_remote = resp.get("n_events", 0)
        run: list[tuple[_Queued, Optional[str]]] = []
        with self.lock:
            by_tid = None
            asked = {sl[0] for sl in batch.get("slots", ())}
            got = {gr[2] for gr in resp["grants"] if len(gr) == 3}
            for group in asked - got:
                self._denied[group] = time.time()
            for group in got:
                self._denied.pop(group, None)
            self._sync_seq += 1
            for gr in resp["grants"]:
                if len(gr) == 3:
                    gid, node, group = gr
                    self.grants[gid] = _Grant(gid, node, group, slot=True)
                    self.slots.setdefault(group, []).append(gid)
                else:
                    tid, node = gr
                    if by_tid is None:
                        by_tid = {q.tid: q for q in self.queue}
                    q = by_tid.get(tid)
                    if q is None:
                        if node is not None:
                            self._cancel.append(tid)
                        continue
                    if node is not None:
                        self.grants[tid] = _Grant(tid, node, q.fn.group, slot=False, started=True)
                        self._started.append(tid)
                    else:
                        log.warning("tao_ray: task %s rejected by the controller (job energy budget); "
                                    "running it unmanaged", tid)
                    run.append((q, node))
            if run:
                done = {q.tid for q, _ in run}
                self.queue = deque(q for q in self.queue if q.tid not in done)
            self._granted.notify_all()
        for q, node in run:
            self._run_granted(q, node)
        if resp.get("scale"):
            self._apply_scale(resp["scale"])
        if self.queue or self._finished or self._started:
            self._wake.set()
        if self.queue:
            time.sleep(min(self.sync_interval_s, 0.05))

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
            self.grants.clear()
            self.slots.clear()
            self.want_slots.clear()
            self._started, self._finished, self._cancel = [], [], []
            self._granted.notify_all()
        log.warning("tao_ray: controller unavailable (%s); failing open: %d queued and all new tasks go to "
                    "Ray's default scheduling until it answers again", why, len(pending))
        for q in pending:
            self._run_granted(q, None)
        self._flush_gates()

    def _try_recover(self) -> None:
        try:
            epoch = ray.get(self.controller.ping.remote(), timeout=self.timeout_s)
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
            ray.get(self.controller.reset_driver.remote(self.driver_id), timeout=self.timeout_s)
        except Exception as e:  # noqa: BLE001
            self._fail_open(f"reset: {e}")
            return
        with self.lock:
            self.epoch = epoch
            self.grants.clear()
            self.slots.clear()
            self._started, self._finished, self._cancel = [], [], []
            self.failed_open = False
        self._push_nodes()
        if not self.failed_open:
            log.warning("tao_ray: controller answers again (epoch %s); TAO placement resumed", epoch)

    # ------------------------------------------------------------------ scaling
    def _apply_scale(self, scale: dict[str, Any]) -> None:
        from tao_ray import autoscale

        autoscale.apply(self, scale)

    # ------------------------------------------------------------------ telemetry
    def collect(self) -> None:
        """Pull new readings and spans from every live sampler (one caller at a time: the
        sync thread and a report may both collect, and each row must be taken once)."""
        with self._collect_lock:
            self._collect()

    def _collect(self) -> None:
        refs = {}
        for nid in self.live_nodes():
            s = self.samplers.get(nid)
            if s is None:
                continue
            refs[nid] = (s.timeline.remote(self._tl_idx.get(nid, 0), self.driver_id),
                         s.spans.remote(self._span_idx.get(nid, 0), self.driver_id))
        for nid, (rt, rs) in refs.items():
            try:
                (inc, tl_first, tl), (_inc, sp_first, sp) = ray.get([rt, rs], timeout=max(self.timeout_s, 5.0))
            except Exception:  # noqa: BLE001 - node gone: keep what we have
                continue
            known = self._incarnation.setdefault(nid, inc)
            if inc != known or _inc != inc:
                replaced = known == _REPLACED
                try:  # read the new sampler from its start
                    (inc, tl_first, tl), (_inc, sp_first, sp) = ray.get(
                        [self.samplers[nid].timeline.remote(0, self.driver_id),
                         self.samplers[nid].spans.remote(0, self.driver_id)], timeout=max(self.timeout_s, 5.0))
                except Exception:  # noqa: BLE001
                    continue
                if _inc != inc or not tl:
                    continue
                self._new_sampler(nid, inc, tl[0], replaced)
            if tl_first > self._tl_idx.get(nid, 0) or sp_first > self._span_idx.get(nid, 0):
                # this driver was away longer than the sampler keeps rows for it
                log.warning("tao_ray: node %s dropped rows this driver had not fetched; the gap is "
                            "interpolated and tasks in it count as idle", nid[:12])
            with self.lock:
                self._tl_idx[nid] = tl_first + len(tl)
                off = self._energy_offset.get(nid, 0.0)
                if off:
                    tl = [(r[0], r[1] + off) + tuple(r[2:]) for r in tl]
                self.timelines[nid].extend(tl)
                self.spans[nid].extend(sp)
                self._span_idx[nid] = sp_first + len(sp)

    def _new_sampler(self, nid: str, inc: str, first: tuple, replaced: bool) -> None:
        """The node has a new sampler actor (``replaced``: TAO started it when it took the
        node back; else Ray restarted it after its process died) and ``first`` is its first
        reading. Its counters start from zero, so the node's cumulative energy continues from
        the last reading plus the gap modeled at the node type's idle watts. Spans a dead
        sampler had not handed over are lost (those tasks' energy goes to the idle share)."""
        nt = self.node_types[self.node_type[nid]]
        with self.lock:
            self._incarnation[nid] = inc
            last = self.timelines[nid][-1] if self.timelines.get(nid) else None
            if last is not None:
                t = max(float(first[0]), float(last[0]))
                e = last[1] + nt.idle_w * (t - last[0])
                self.timelines[nid].append((t, e, nt.idle_w, None, "modeled", NO_SAMPLER_METHOD, last[6]))
                self._energy_offset[nid] = e - float(first[1])
        if not replaced:
            log.warning("tao_ray: the sampler of node %s was restarted; the gap is modeled at idle power and "
                        "spans it had not handed over are lost", nid[:12])

    def close_timelines(self) -> None:
        """Take a reading on every live node now, so timelines reach this instant. First
        waits until the spans of the tasks that ended before this call have surely reached
        their samplers (``SPAN_LAG_S`` after the latest end)."""
        from tao_ray.sampler import SPAN_LAG_S

        wait = self.last_end + SPAN_LAG_S - time.time()
        if wait > 0:
            time.sleep(wait)
        refs = {nid: self.samplers[nid].read_now.remote() for nid in self.live_nodes() if nid in self.samplers}
        for nid, r in refs.items():
            try:
                ray.get(r, timeout=5.0)
            except Exception:  # noqa: BLE001
                pass
        self.collect()

    def decision_events(self) -> list[dict[str, Any]]:
        try:
            n, evs = ray.get(self.controller.decision_events.remote(self._n_events), timeout=self.timeout_s)
            self.events.extend(evs)
            self._n_events = n
        except Exception:  # noqa: BLE001
            pass
        return self.events

    # ------------------------------------------------------------------ shutdown
    def wait_idle(self, timeout_s: float = 60.0) -> bool:
        """Wait until no task waits in the admission queue."""
        end = time.time() + timeout_s
        while time.time() < end:
            with self.lock:
                if not self.queue:
                    return True
            time.sleep(0.02)
        return False

    def stop(self, kill_actors: bool = True) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5.0)
        with self.lock:  # tasks still queued run under Ray's default scheduling
            pending = list(self.queue)
            self.queue.clear()
        for q in pending:
            self._run_granted(q, None)
        self._flush_gates()
        if kill_actors:
            for s in self.samplers.values():
                try:
                    ray.kill(s)
                except Exception:  # noqa: BLE001
                    pass
            try:
                ray.kill(self.controller)
            except Exception:  # noqa: BLE001
                pass
            # wait until the names are free, so a later init starts fresh actors
            names = [CONTROLLER_NAME] + [sampler_name(n) for n in self.samplers]
            end = time.time() + 10.0
            for name in names:
                while time.time() < end:
                    try:
                        ray.get_actor(name, namespace=NAMESPACE)
                    except ValueError:
                        break
                    time.sleep(0.05)
            # the gate stays: it may still hold results of queued tasks; it ends with the driver


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


def _config_dict(cfg: ControllerConfig) -> dict[str, Any]:
    return {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in cfg.__dict__.items()}
