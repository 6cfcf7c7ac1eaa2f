"""The driver's view of the Ray nodes: which nodes TAO meters (a node type each), their
sampler actors, their power state (the core's :class:`NodeState`), the placeholders of
nodes Ray's autoscaler may launch, and the energy timelines and spans collected from the
samplers.

Node states. TAO uses the core's states only. A node TAO *released* to Ray's autoscaler
(its sampler stopped, so that Ray sees it idle) is ``OFF`` for the controller from the
moment of release, with ``released_at`` set until it leaves the cluster (``removed_at``);
its energy over that stretch is modeled at its idle watts (see :mod:`tao_ray.energy`).
"""
from __future__ import annotations

import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from tao_core.control.types import NodeState, NodeType
from tao_ray.nodes import RayNode, alive_nodes, discovered_type, resolve_type
from tao_ray.records import NAMESPACE, SpanRow, TimelineRow, sampler_name
from tao_ray.sampler import NodeSampler

log = logging.getLogger("tao_ray")

#: method of the timeline row that bridges a gap with no sampler on the node
NO_SAMPLER_METHOD = "no sampler (released or restarted): idle_w of its node type over the gap, modeled"


@dataclass
class NodeRecord:
    """One node TAO knows: a live Ray node, or a placeholder for one the autoscaler may
    launch (``ray`` None). Times are wall-clock seconds."""

    node_id: str
    node_type: str
    state: NodeState = NodeState.ON
    ray: Optional[RayNode] = None
    sampler: Any = None
    shared_machine: bool = False
    released_at: Optional[float] = None
    removed_at: Optional[float] = None
    boot_at: Optional[float] = None
    retired: bool = False  # a placeholder no longer offered (its node came, or capacity shrank)
    rows: list[TimelineRow] = field(default_factory=list)
    spans: list[SpanRow] = field(default_factory=list)
    next_row: int = 0
    next_span: int = 0
    incarnation: Optional[str] = None
    energy_offset_j: float = 0.0

    @property
    def live(self) -> bool:
        """In the cluster with TAO's sampler running."""
        return self.ray is not None and self.removed_at is None and self.released_at is None

    @property
    def cpus(self) -> float:
        return float(self.ray.cpus) if self.ray is not None else 0.0


class NodeRegistry:
    """Discovery, samplers and telemetry of the typed nodes (see module doc)."""

    def __init__(self, token: str, node_types: Mapping[str, NodeType], *, node_type_of: Mapping[str, str],
                 default_type: Optional[str], sample_interval_s: float, shared_machine: Optional[bool],
                 launchable: Mapping[str, int], timeout_s: float, boot_timeout_s: float = 120.0) -> None:
        self._token = token
        self.node_types = dict(node_types)
        self._type_of = dict(node_type_of)
        self._default_type = default_type
        self._interval_s = sample_interval_s
        self._shared = shared_machine
        self.launchable = dict(launchable)
        self._timeout_s = max(timeout_s, 5.0)
        self._boot_timeout_s = boot_timeout_s
        self.nodes: dict[str, NodeRecord] = {}
        self.untyped: dict[str, RayNode] = {}
        self.lock = threading.RLock()
        self._collect_lock = threading.Lock()
        self._vids = itertools.count()
        self.new_types: list[NodeType] = []  # discovered types the controller has not been told of

    # ------------------------------------------------------------------ views
    def live(self) -> list[NodeRecord]:
        with self.lock:
            return [r for r in self.nodes.values() if r.live]

    def metered(self) -> list[NodeRecord]:
        """Every node that was ever in the cluster (timelines to report)."""
        with self.lock:
            return [r for r in self.nodes.values() if r.ray is not None]

    def controller_view(self) -> list[tuple[str, str, str]]:
        """(node id, type, state) of every node and placeholder the controller should know."""
        with self.lock:
            return [(r.node_id, r.node_type, str(NodeState.OFF if not (r.live or r.ray is None) else r.state))
                    for r in self.nodes.values() if not r.retired]

    # ------------------------------------------------------------------ discovery
    def discover(self, wait: bool = False) -> bool:
        """Pick up new nodes (start their samplers) and note departed ones; True when the
        controller's view changed."""
        nodes = alive_nodes(ray.nodes())
        per_addr: dict[str, int] = {}
        for n in nodes:
            per_addr[n.address] = per_addr.get(n.address, 0) + 1
        alive, new, changed = set(), [], False
        for n in nodes:
            typ = resolve_type(n, self.node_types, self._type_of, self._default_type) or self._adopt(n)
            if typ is None:
                self.untyped[n.node_id] = n
                continue
            alive.add(n.node_id)
            if n.node_id in self.nodes:
                continue
            shared = self._shared if self._shared is not None else per_addr[n.address] > 1
            rec = NodeRecord(n.node_id, typ, ray=n, shared_machine=shared)
            rec.sampler = self._start_sampler(rec)
            with self.lock:
                self._retire_booting(typ)
                self.nodes[n.node_id] = rec
            new.append(rec.sampler)
            changed = True
        with self.lock:
            for rec in self.nodes.values():
                if rec.ray is not None and rec.node_id not in alive and rec.removed_at is None:
                    rec.removed_at = time.time()
                    rec.state = NodeState.OFF
                    rec.retired = bool(self.launchable)  # placeholders stand for the capacity now
                    changed = True
            if self.launchable:
                changed = self._update_placeholders(alive) or changed
        if wait and new:
            ray.get([s.ping.remote(self._token) for s in new], timeout=60)
        return changed

    def _adopt(self, n: RayNode) -> Optional[str]:
        """The name of the discovered type of an untyped node, added to the node types
        (the controller hears of it with the next node push), or None."""
        nt = discovered_type(n)
        if nt is None:
            return None
        self.node_types.setdefault(nt.name, nt)
        self.new_types.append(nt)
        return nt.name

    def _retire_booting(self, typ: str) -> None:
        """A node of ``typ`` joined: the placeholder booted for it is no longer offered."""
        for rec in self.nodes.values():
            if rec.ray is None and rec.node_type == typ and rec.state == NodeState.BOOTING and not rec.retired:
                rec.retired = True
                return

    def _update_placeholders(self, alive: set[str]) -> bool:
        """Keep, per launchable type, (max nodes - alive nodes) placeholders; a launch that
        never came within the boot timeout is offered again."""
        now, changed = time.time(), False
        for typ, most in self.launchable.items():
            n_alive = sum(1 for nid in alive if self.nodes[nid].node_type == typ)
            mine = sorted((r for r in self.nodes.values() if r.ray is None and r.node_type == typ and not r.retired),
                          key=lambda r: (r.state != NodeState.BOOTING, r.node_id))
            while len(mine) > max(0, int(most) - n_alive):
                r = mine.pop(0)
                r.retired = True
                changed = changed or r.state == NodeState.BOOTING
            while len(mine) < max(0, int(most) - n_alive):
                r = NodeRecord(f"launchable-{typ}-{next(self._vids)}", typ, state=NodeState.OFF)
                self.nodes[r.node_id] = r
                mine.append(r)
                changed = True
            for r in mine:
                if r.state == NodeState.BOOTING and now - (r.boot_at or now) > self._boot_timeout_s:
                    r.state = NodeState.OFF
                    changed = True
        return changed

    def booting_types(self) -> list[str]:
        """Node types of the placeholders now booting (what to ask the autoscaler for)."""
        with self.lock:
            return [r.node_type for r in self.nodes.values()
                    if r.ray is None and not r.retired and r.state == NodeState.BOOTING]

    def _start_sampler(self, rec: NodeRecord) -> Any:
        nt = self.node_types[rec.node_type]
        return NodeSampler.options(
            name=sampler_name(rec.node_id), namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
            num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(rec.node_id, soft=False),
        ).remote(self._token, rec.node_id, tuple(nt.power_curve.points_w), rec.cpus or nt.cpus,
                 rec.shared_machine, self._interval_s, rec.node_type, float(nt.idle_w))

    # ------------------------------------------------------------------ release / resume
    def last_reading(self, rec: NodeRecord) -> None:
        """A reading now on the node, collected, before its sampler goes."""
        try:
            if rec.sampler is not None:
                ray.get(rec.sampler.read_now.remote(self._token), timeout=5.0)
            self.collect()
        except Exception:  # noqa: BLE001 - the node may be going already
            pass

    def stop_sampler(self, rec: NodeRecord) -> None:
        """Stop the node's sampler for good (an actor there keeps Ray from seeing it idle)."""
        self.last_reading(rec)
        try:
            if rec.sampler is not None:
                ray.kill(rec.sampler, no_restart=True)
        except Exception:  # noqa: BLE001
            pass

    def resume(self, rec: NodeRecord) -> None:
        """Take back a released node still in the cluster, or one whose sampler TAO stopped:
        a new sampler, whose timeline continues from the gap modeled at idle power."""
        end = time.time() + 5.0
        while time.time() < end:  # the name of the killed sampler may take a moment to be freed
            try:
                ray.get_actor(sampler_name(rec.node_id), namespace=NAMESPACE)
                time.sleep(0.2)
            except ValueError:
                break
        with self.lock:
            rec.released_at = None
            rec.incarnation = None  # the next collect takes up the new sampler
            rec.state = NodeState.ON
            rec.sampler = self._start_sampler(rec)

    # ------------------------------------------------------------------ telemetry
    def collect(self) -> None:
        """Pull new readings and spans from every live sampler (one caller at a time: the
        sync thread and a report may both collect, and each row must be taken once)."""
        with self._collect_lock:
            refs = {r.node_id: (r, r.sampler.timeline.remote(self._token, r.next_row),
                                r.sampler.spans.remote(self._token, r.next_span))
                    for r in self.live() if r.sampler is not None}
            for rec, rt, rs in refs.values():
                try:
                    (inc, tl_first, tl), (sp_inc, sp_first, sp) = ray.get([rt, rs], timeout=self._timeout_s)
                    if rec.incarnation not in (None, inc) or rec.incarnation is None and rec.rows:
                        (inc, tl_first, tl), (sp_inc, sp_first, sp) = ray.get(
                            [rec.sampler.timeline.remote(self._token, 0), rec.sampler.spans.remote(self._token, 0)],
                            timeout=self._timeout_s)
                        if not tl:
                            continue
                        self._bridge(rec, tl[0])
                except Exception:  # noqa: BLE001 - node gone or sampler restarting: keep what we have
                    continue
                if sp_inc != inc:
                    continue
                rec.incarnation = inc
                if tl_first > rec.next_row:
                    log.warning("tao_ray: node %s dropped readings this driver had not fetched; the gap is "
                                "interpolated", rec.node_id[:12])
                off = rec.energy_offset_j
                with self.lock:
                    rec.rows.extend([r._replace(energy_j=r.energy_j + off) for r in tl] if off else tl)
                    rec.next_row = tl_first + len(tl)
                    rec.spans.extend(sp)
                    rec.next_span = sp_first + len(sp)

    def _bridge(self, rec: NodeRecord, first: TimelineRow) -> None:
        """The node has a new sampler (Ray restarted it, or TAO replaced it) whose counters
        start from zero: its timeline continues from the last reading plus the gap at the
        node type's idle watts. Spans a dead sampler had not handed over are lost."""
        if rec.incarnation is not None:
            log.warning("tao_ray: the sampler of node %s was restarted; the gap is modeled at idle power and "
                        "spans it had not handed over are lost", rec.node_id[:12])
        rec.next_row = rec.next_span = 0
        if not rec.rows:
            return
        idle_w = self.node_types[rec.node_type].idle_w
        last = rec.rows[-1]
        t = max(first.t_s, last.t_s)
        e = last.energy_j + idle_w * (t - last.t_s)
        with self.lock:
            rec.rows.append(TimelineRow(t, e, idle_w, None, "modeled", NO_SAMPLER_METHOD, last.uncertainty))
            rec.energy_offset_j = e - first.energy_j

    def read_all_now(self) -> None:
        """A reading on every live node now, then collect (timelines reach this instant)."""
        refs = [r.sampler.read_now.remote(self._token) for r in self.live() if r.sampler is not None]
        for ref in refs:
            try:
                ray.get(ref, timeout=5.0)
            except Exception:  # noqa: BLE001
                pass
        self.collect()

    def kill_samplers(self) -> None:
        names = []
        for rec in self.nodes.values():
            if rec.sampler is not None:
                names.append(sampler_name(rec.node_id))
                try:
                    ray.kill(rec.sampler)
                except Exception:  # noqa: BLE001
                    pass
        wait_names_free(names)


def wait_names_free(names: list[str], timeout_s: float = 10.0, lookup: Callable[..., Any] = ray.get_actor) -> None:
    """Wait until no actor holds these names in TAO's namespace (a later init starts fresh)."""
    end = time.time() + timeout_s
    for name in names:
        while time.time() < end:
            try:
                lookup(name, namespace=NAMESPACE)
            except ValueError:
                break
            time.sleep(0.05)
