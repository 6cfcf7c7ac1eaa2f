"""The controller as a Ray actor: a named, detached, restartable actor that holds one
:class:`tao_core.control.Controller` and turns batches from the driver into controller
calls. It holds no policy of its own.

Protocol (one ``sync`` call per batch, never one per task):

- the driver sends task starts and ends (``started``, ``finished``), grants it no longer
  needs (``cancel``), and its demand: tasks waiting in its admission queue, each with its
  TAO id, group, CPUs, GPUs and job (strict admission under a power budget), or a count of
  extra slots wanted per group (no budget);
- the actor answers with *grants*: ``Controller.decide`` PLACE decisions, each a reservation
  of one task's CPUs/GPUs on a node, keyed by grant id; the scaling plan
  (``Controller.plan_scaling``), at most every ``scale_every_s`` seconds; and the budget state.

Node samplers push power and utilization with ``observe`` (fire and forget). Times are
wall-clock seconds. On restart the actor starts with an empty controller and a new
``epoch``; the driver then re-registers its nodes and drops its old grants.

Every method takes the session token first and refuses any caller without it (another job
on the cluster, a second driver): :func:`tao_ray.records.check_token`. Ray records no task
events for this actor's calls (``enable_task_events=False``).
"""
from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections import deque
from typing import Any, Optional

import ray

from tao_core.control.config import ControllerConfig
from tao_core.control.controller import Controller
from tao_core.control.types import Action, NodeState, NodeType, TaskRequest
from tao_core.power.curve import PowerCurve
from tao_ray.records import Grant, check_token

log = logging.getLogger("tao_ray")


def node_type_to_dict(t: NodeType) -> dict[str, Any]:
    """A NodeType as plain data (for actor arguments that survive a restart)."""
    d = dict(t.__dict__)
    d["power_curve"] = tuple(t.power_curve.points_w)
    return d


def node_type_from_dict(d: dict[str, Any]) -> NodeType:
    d = dict(d)
    d["power_curve"] = PowerCurve(tuple(d["power_curve"]))
    return NodeType(**d)


def config_to_dict(cfg: ControllerConfig) -> dict[str, Any]:
    """A ControllerConfig as plain data (mappings copied)."""
    return {f.name: (dict(v) if isinstance(v := getattr(cfg, f.name), dict) else v)
            for f in dataclasses.fields(cfg)}


@ray.remote(num_cpus=0, max_restarts=-1, enable_task_events=False)
class ControllerActor:
    """Holds the Controller; see the module doc for the protocol."""

    def __init__(self, token: str, node_types: list[dict[str, Any]], config: dict[str, Any],
                 scale_every_s: float = 0.5, max_events: int = 200_000) -> None:
        self._token = token
        self.epoch = uuid.uuid4().hex[:12]
        self.types = [node_type_from_dict(d) for d in node_types]
        self.node_types = list(node_types)
        self.config = ControllerConfig(**config)
        self.events: deque = deque(maxlen=max_events)
        self.n_events = 0
        self.ctl = Controller(self.types, self.config, event_sink=self._sink)
        self.scale_every_s = scale_every_s
        self._last_scale = 0.0
        self._power: dict[str, tuple[float, float]] = {}  # node -> (t, watts)
        self._grants: set[str] = set()
        self._seq = 0
        self._gauges = _Gauges()
        self._observe_failed = False
        self.refused = 0
        self._nodes: list[tuple] = []

    def _sink(self, ev) -> None:
        self.events.append(ev.to_dict())
        self.n_events += 1

    def _gid(self) -> str:
        self._seq += 1
        return f"{self.epoch}-{self._seq}"

    def _check(self, token: Any) -> None:
        try:
            check_token("tao-controller", self._token, token)
        except PermissionError:
            self.refused += 1
            raise

    # ------------------------------------------------------------------ API (token first)
    def ping(self, token: str) -> str:
        self._check(token)
        return self.epoch

    def add_node_type(self, token: str, node_type: dict[str, Any]) -> None:
        """A node type found on a node that joined (hardware discovery)."""
        self._check(token)
        self.ctl.add_node_type(node_type_from_dict(node_type))
        self.node_types.append(node_type)

    def sync_nodes(self, token: str, nodes: list[tuple[str, str, str]]) -> str:
        """Make the controller's node set equal to ``nodes`` [(node id, type, state)]:
        add new ones, update states, remove the rest. Returns the epoch."""
        self._check(token)
        self._nodes = [tuple(n) for n in nodes]
        now = time.time()
        known = set(self.ctl.nodes.index)
        want = {nid: (typ, NodeState(st)) for nid, typ, st in nodes}
        for nid, (typ, st) in want.items():
            if nid not in known:
                self.ctl.add_node(nid, typ, state=st, now_s=now)
            elif self.ctl.node_state(nid) != st:
                self.ctl.set_node_state(nid, st, now_s=now)
        for nid in known - set(want):
            self.ctl.remove_node(nid, now_s=now)
            self._power.pop(nid, None)
        return self.epoch

    def reset(self, token: str) -> str:
        """Cancel every grant (the driver lost track of them)."""
        self._check(token)
        now = time.time()
        for gid in self._grants:
            self.ctl.cancel(gid, now_s=now)
        self._grants.clear()
        return self.epoch

    def observe(self, token: str, node_id: str, t_s: float, power_w: Optional[float],
                utilization: Optional[float], temperature_k: Optional[float] = None) -> None:
        """A sampler's latest reading of its node (watts, CPU utilization 0..1, kelvin)."""
        self._check(token)
        now = time.time()
        try:
            self.ctl.observe_node(node_id, now_s=now, power_w=power_w, utilization=utilization,
                                  temperature_k=temperature_k)
            if power_w is not None and node_id in self.ctl.nodes.index:
                self._power[node_id] = (t_s, float(power_w))
                fresh = [w for (t, w) in self._power.values() if now - t < 5.0]
                if fresh and len(fresh) == len(self._power):
                    total = float(sum(fresh))
                    self.ctl.observe_cluster_power(now_s=now, power_w=total)
                    self._gauges.set_cluster(total, self.config.power_budget_w)
        except Exception as e:  # noqa: BLE001 - telemetry must not break placement
            if not self._observe_failed:
                log.warning("tao controller: observe failed (%s: %s); telemetry ignored", type(e).__name__, e)
            self._observe_failed = True

    def decide_one(self, token: str, group: str, cpus: float, gpus: float, job: Optional[str]) -> Optional[Grant]:
        """One PLACE for a long-lived thing (actor, placement-group bundle); the
        reservation lasts until ``sync(... finished=...)``. None: no room now."""
        self._check(token)
        now = time.time()
        gid = self._gid()
        d = self.ctl.decide(TaskRequest(gid, group, cpus=cpus, gpus=gpus, job=job), now_s=now)
        if d.action != Action.PLACE:
            self.ctl.cancel(gid, now_s=now)
            return None
        self.ctl.task_started(gid, now_s=now)
        self._grants.add(gid)
        return Grant(gid, d.node_id, group)

    def sync(self, token: str, batch: dict[str, Any]) -> dict[str, Any]:
        """Apply one batch from the driver and answer with grants and the scaling plan."""
        self._check(token)
        now = time.time()
        ctl = self.ctl
        for gid in batch.get("started", ()):
            ctl.task_started(gid, now_s=now)
        for gid, dur in batch.get("finished", ()):
            ctl.task_finished(gid, now_s=now, duration_s=dur)
            self._grants.discard(gid)
        for gid in batch.get("cancel", ()):
            ctl.cancel(gid, now_s=now)
            self._grants.discard(gid)
        grants: list[tuple[str, Optional[Grant]]] = []  # (queued task id or "", grant; None: rejected)
        pending: list[TaskRequest] = []
        # strict admission: the queued tasks themselves, by their TAO ids
        for tid, group, cpus, gpus, job in batch.get("queued", ()):
            req = TaskRequest(tid, group, cpus=cpus, gpus=gpus, job=job)
            d = ctl.decide(req, now_s=now)
            if d.action == Action.PLACE:
                grants.append((tid, Grant(tid, d.node_id, group)))
                self._grants.add(tid)
            elif d.action == Action.REJECT:
                grants.append((tid, None))  # the driver runs it unmanaged and logs the reason
            else:
                pending.append(req)
        # open admission: extra slots per group
        for group, cpus, gpus, job, n in batch.get("slots", ()):
            for _ in range(int(n)):
                gid = self._gid()
                req = TaskRequest(gid, group, cpus=cpus, gpus=gpus, job=job)
                d = ctl.decide(req, now_s=now)
                if d.action != Action.PLACE:
                    ctl.cancel(gid, now_s=now)
                    pending.append(req)
                    break
                grants.append(("", Grant(gid, d.node_id, group, slot=True)))
                self._grants.add(gid)
        deferred = len(pending) + int(batch.get("deferred_total", 0)) - len(batch.get("queued", ()))
        scale = None
        if now - self._last_scale >= self.scale_every_s:
            self._last_scale = now
            plan = ctl.plan_scaling(now_s=now, pending=pending)
            if plan:
                scale = {"power_on": list(plan.power_on), "power_off": list(plan.power_off),
                         "drain": list(plan.drain), "reason": plan.reason}
        self._gauges.set_deferred(max(deferred, 0))
        return {"epoch": self.epoch, "grants": grants, "scale": scale,
                "budget": ctl.budget_state(), "n_events": self.n_events}

    def set_node_state(self, token: str, node_id: str, state: str) -> None:
        self._check(token)
        if node_id in self.ctl.nodes.index:
            self.ctl.set_node_state(node_id, NodeState(state), now_s=time.time())

    def decision_events(self, token: str, since: int = 0) -> tuple[int, list[dict[str, Any]]]:
        """Decision events numbered from ``since`` (oldest ones may have been dropped)."""
        self._check(token)
        first = self.n_events - len(self.events)
        start = max(since, first)
        return self.n_events, list(self.events)[start - first:]

    def stats(self, token: str) -> dict[str, Any]:
        self._check(token)
        return {"epoch": self.epoch, "counters": dict(self.ctl.counters), "running": self.ctl.running,
                "budget": self.ctl.budget_state(), "refused_calls": self.refused,
                "nodes": {nid: str(self.ctl.node_state(nid)) for nid in self.ctl.nodes.index}}

    def session(self, token: str) -> dict[str, Any]:
        """What a reader outside the driver needs (``tao ray report``): node types and config."""
        self._check(token)
        return {"node_types": self.node_types, "config": config_to_dict(self.config), "epoch": self.epoch,
                "nodes": list(self._nodes)}


class _Gauges:
    """Ray metrics of the controller actor (``tao_`` names); absent, with a logged warning,
    when Ray's metrics cannot be created."""

    def __init__(self) -> None:
        try:
            from ray.util.metrics import Gauge

            self.cluster = Gauge("tao_cluster_power_watts", description="Cluster IT power (W), sum of node samplers")
            self.budget = Gauge("tao_power_budget_watts", description="Cluster power budget (W)")
            self.deferred = Gauge("tao_deferred_tasks", description="Tasks waiting in TAO's admission queue")
        except Exception as e:  # noqa: BLE001 - metrics are optional
            log.warning("tao controller: Ray metrics unavailable (%s); no tao_ gauges", e)
            self.cluster = self.budget = self.deferred = None

    def set_cluster(self, watts: float, budget: Optional[float]) -> None:
        try:
            if self.cluster is not None:
                self.cluster.set(watts)
                if budget is not None:
                    self.budget.set(budget)
        except Exception:  # noqa: BLE001
            pass

    def set_deferred(self, n: int) -> None:
        try:
            if self.deferred is not None:
                self.deferred.set(n)
        except Exception:  # noqa: BLE001
            pass
