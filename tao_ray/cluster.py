"""The Ray side of the session's nodes: which Ray nodes there are (``ray.nodes()``, polled:
no hook announces them), the type of each (declared, or described by the node's own
sampler), the sampler actors, and the timelines, spans and settled task energies
collected from them into the :class:`tao_core.live.nodes.NodeBook`.

A node with no declared type and CPUs gets a sampler that describes its hardware; where
that fails (or with ``discover=False``) the node stays untyped: TAO neither places on nor
meters it. Where several Ray nodes share one address (``ray.cluster_utils.Cluster``) each
is modeled from its own raylet's processes.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Mapping, Optional

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from tao_core.control.types import NodeType
from tao_core.live.nodes import NodeBook, TrackedNode
from tao_core.live.sampler import SPAN_LAG_S
from tao_core.live.timeline import NodeTimeline
from tao_core.live.values import TaskEnergy
from tao_core.power.node_json import node_type_to_dict
from tao_ray.nodes import RayNode, alive_nodes, discovered_type, resolve_type
from tao_ray.records import NAMESPACE, sampler_name
from tao_ray.sampler import NodeSampler

log = logging.getLogger("tao_ray")


class RayNodes:
    """Discovery, samplers and telemetry of the session's Ray nodes (see the module doc)."""

    def __init__(self, token: str, book: NodeBook, node_types: Mapping[str, NodeType], *,
                 node_type_of: Mapping[str, str], default_type: Optional[str], discover: bool, interval_s: float,
                 shared_machine: Optional[bool], timeout_s: float, last_end: Callable[[], float] = time.time) -> None:
        self.token, self.book = token, book
        self.node_types = dict(node_types)
        self.declared = frozenset(node_types)  #: node types the user declared (nodes name them by label)
        self._type_of, self._default, self._discover = dict(node_type_of), default_type, discover
        self._interval_s, self._shared, self._timeout_s = interval_s, shared_machine, max(timeout_s, 5.0)
        self._last_end = last_end  # when the latest task the driver placed ended
        self._starting: dict[str, tuple[RayNode, Optional[str], bool, Any, Any]] = {}
        self._collect_lock = threading.Lock()

    def discover(self, wait: bool = False) -> bool:
        """Start samplers on new nodes, take in those that are up (``wait``: wait for them)
        and note departed nodes; True when the controller's view changed."""
        nodes = alive_nodes(ray.nodes())
        per_addr: dict[str, int] = {}
        for n in nodes:
            per_addr[n.address] = per_addr.get(n.address, 0) + 1
        for n in nodes:
            if n.node_id in self.book.nodes or n.node_id in self.book.untyped or n.node_id in self._starting:
                continue
            typ = resolve_type(n, self.node_types, self._type_of, self._default)
            if typ is None and not (self._discover and n.cpus > 0):
                self.book.untyped[n.node_id] = n
                continue
            shared = self._shared if self._shared is not None else per_addr[n.address] > 1
            h = self._sampler(n, typ, shared)
            self._starting[n.node_id] = (n, typ, shared, h, h.info.remote(self.token))
        changed = self._take_started(wait)
        return self.book.gone({n.node_id for n in nodes}) or changed

    def _sampler(self, n: RayNode, typ: Optional[str], shared: bool) -> Any:
        nt = node_type_to_dict(self.node_types[typ]) if typ is not None else None
        return NodeSampler.options(
            name=sampler_name(n.node_id), namespace=NAMESPACE, lifetime="detached", get_if_exists=True, num_cpus=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(n.node_id, soft=False),
        ).remote(self.token, n.node_id, n.cpus, nt, shared, self._interval_s)

    def _take_started(self, wait: bool) -> bool:
        refs = {v[4]: k for k, v in self._starting.items()}
        if not refs:
            return False
        ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=60.0 if wait else 0.0)
        for ref in ready:
            n, typ, shared, h, _ = self._starting.pop(refs[ref])
            try:
                info = ray.get(ref)
            except Exception as e:  # noqa: BLE001 - the node could not describe itself
                log.warning("tao_ray: node %s has no sampler (%s); TAO neither places on nor meters it",
                            n.node_id[:12], e)
                self.book.untyped[n.node_id] = n
                continue
            if typ is None:
                nt = discovered_type(n, info)
                typ = self.node_types.setdefault(nt.name, nt).name
            self.book.join(TrackedNode(n.node_id, typ, cpus=n.cpus, present=True, shared=shared, handle=h,
                                       timeline=NodeTimeline(n.node_id, self.node_types[typ].idle_w)))
        return bool(ready)

    # ------------------------------------------------------------------ samplers
    def stop_sampler(self, rec: TrackedNode) -> None:
        """A last reading, collected once the spans of the tasks that ended surely reached the
        sampler; then the sampler goes for good (an actor there keeps Ray from seeing the
        node idle)."""
        time.sleep(max(0.0, self._last_end() + SPAN_LAG_S - time.time()))
        _quietly(lambda: ray.get(rec.handle.read_now.remote(self.token), timeout=5.0))
        self.collect()
        _quietly(lambda: ray.kill(rec.handle, no_restart=True))

    def resume(self, rec: TrackedNode) -> None:
        """A new sampler on a node whose sampler TAO stopped; its timeline continues across the gap."""
        wait_names_free([sampler_name(rec.node_id)], timeout_s=5.0)
        with self.book.lock:
            rec.timeline.renew()
            rec.handle = self._sampler(RayNode(rec.node_id, rec.cpus, 0.0), rec.node_type, rec.shared)
        self.book.resumed(rec)

    def kill_samplers(self) -> None:
        for rec in self.book.metered():
            _quietly(lambda r=rec: ray.kill(r.handle))
        wait_names_free([sampler_name(r.node_id) for r in self.book.metered()])

    # ------------------------------------------------------------------ telemetry
    def collect(self) -> list[TaskEnergy]:
        """New rows, spans and settled task energies of every live sampler (one caller at a
        time: each row is taken once)."""
        out: list[TaskEnergy] = []
        with self._collect_lock:
            live = self.book.live()
            refs = [r.handle.fetch.remote(self.token, r.timeline.next) for r in live]
            for rec, ref in zip(live, refs):
                try:
                    got = rec.timeline.take(ray.get(ref, timeout=self._timeout_s))
                    if got is None:  # a new sampler: read it from the start
                        got = rec.timeline.take(ray.get(rec.handle.fetch.remote(self.token), timeout=self._timeout_s))
                except Exception:  # noqa: BLE001 - node gone or sampler restarting: keep what we have
                    continue
                out.extend(got or ())
        return out

    def read_all_now(self) -> list[TaskEnergy]:
        """A reading on every live node now, then collect (timelines reach this instant)."""
        refs = [r.handle.read_now.remote(self.token) for r in self.book.live()]
        for ref in refs:
            _quietly(lambda r=ref: ray.get(r, timeout=5.0))
        return self.collect()


def _quietly(fn: Callable[[], Any]) -> None:
    try:
        fn()
    except Exception:  # noqa: BLE001 - the node or actor may be gone already
        pass


def wait_names_free(names: list[str], timeout_s: float = 10.0) -> None:
    """Wait until no actor holds these names in TAO's namespace (a later start is fresh)."""
    end = time.time() + timeout_s
    for name in names:
        while time.time() < end:
            try:
                ray.get_actor(name, namespace=NAMESPACE)
            except ValueError:
                break
            time.sleep(0.05)
