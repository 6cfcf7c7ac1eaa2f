"""The controller side of a live session: one :class:`~tao_core.control.Controller` and its
:class:`~tao_core.control.AdmissionQueue`, driven by batches from the engine's driver (an
engine actor wraps it; here it runs without any engine). It holds no policy of its own.

Protocol (one :meth:`ControllerSession.sync` per batch, never one call per task):

- the driver sends task starts and ends (``started``, ``ended``: each with its run time and
  its attributed energy once known, for ``Controller.task_finished``), grants it no longer
  needs (``cancel``), each strictly admitted task once (``queued``: it waits in the
  admission queue until placed or rejected) and how many more slots each group wants
  (``slots``: open admission, a slot is a grant its group reuses);
- the session applies starts and ends, reopens the queue when any ended or was cancelled,
  offers the queue (each PLACE a grant ``(task id, Grant)``, each REJECT ``(task id,
  None)``), grants slots, passes the queue's pending tasks to ``plan_scaling`` at most every
  ``scale_every_s`` and answers with a :class:`SyncReply`.

Times are the session's clock (wall-clock seconds). A new session has a new ``epoch``:
the driver then re-registers its nodes and sends its waiting tasks again.
"""
from __future__ import annotations

import itertools
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from tao_core.control.admission import AdmissionQueue
from tao_core.control.config import ControllerConfig
from tao_core.control.controller import Controller
from tao_core.control.types import Action, Decision, NodeState, NodeType, TaskRequest
from tao_core.live.runs import MAX_EVENTS, DecisionLog
from tao_core.live.values import Grant
from tao_core.power.node_json import node_type_from_dict, node_type_to_dict

#: seconds a node's power reading counts toward the cluster's
FRESH_S = 5.0


@dataclass(frozen=True)
class SlotWant:
    """``n`` more slots for a group whose tasks reserve ``cpus``/``gpus``."""

    group: str
    cpus: float
    gpus: float
    job: Optional[str]
    n: int


@dataclass(frozen=True)
class Ended:
    """A grant whose work ended: run time (s) and attributed energy (J), each None when unknown.
    ``run_learned``: the run times of its tasks went to the controller as they ended
    (``SyncBatch.runs``), so ``duration_s`` (their mean) only scales the energy learned."""

    gid: str
    duration_s: Optional[float] = None
    energy_j: Optional[float] = None
    run_learned: bool = False


@dataclass
class SyncBatch:
    started: list[str] = field(default_factory=list)
    ended: list[Ended] = field(default_factory=list)
    cancel: list[str] = field(default_factory=list)
    queued: list[TaskRequest] = field(default_factory=list)
    slots: list[SlotWant] = field(default_factory=list)
    runs: list[tuple[str, float]] = field(default_factory=list)  #: (slot grant id, run time s) of tasks ended on slots


@dataclass(frozen=True)
class SyncReply:
    epoch: str
    slots: list[Grant]
    admitted: list[tuple[str, Optional[Grant]]]
    scale: Optional[dict[str, Any]]
    budget: dict[str, Any]
    queued: int


class Gauges:
    """Live gauges of the session (cluster watts, budget, tasks waiting); these drop them."""

    def cluster(self, watts: float, budget_w: Optional[float]) -> None: ...

    def waiting(self, n: int) -> None: ...


NULL_GAUGES = Gauges()


class ControllerSession:
    """See the module doc. ``node_types`` may be empty: the controller starts with the
    first type (a node that described itself)."""

    def __init__(self, node_types: Sequence[NodeType], config: ControllerConfig, *, gauges: Gauges = NULL_GAUGES,
                 scale_every_s: float = 0.5, max_events: int = MAX_EVENTS,
                 clock: Callable[[], float] = time.time) -> None:
        self.epoch = uuid.uuid4().hex[:12]
        self.config = config
        self.gauges = gauges
        self.scale_every_s = scale_every_s
        self.clock = clock
        self.events = DecisionLog(max_events)  #: decision events as dicts
        self.types: list[NodeType] = []
        self.ctl: Optional[Controller] = None
        self.queue: Optional[AdmissionQueue] = None
        self.nodes: list[tuple[str, str, str]] = []
        self._grants: set[str] = set()
        self._power: dict[str, tuple[float, float]] = {}  # node -> (t, watts)
        self._seq = 0
        self._last_scale = -1e18
        self._early: list[TaskRequest] = []  # tasks sent before there was a controller
        for t in node_types:
            self.add_node_type(t)

    def _sink(self, ev: Any) -> None:
        self.events.append(ev.to_dict())

    def _gid(self) -> str:
        self._seq += 1
        return f"{self.epoch}-{self._seq}"

    # ------------------------------------------------------------------ membership
    def add_node_type(self, node_type: NodeType) -> None:
        if any(t.name == node_type.name for t in self.types):
            return
        self.types.append(node_type)
        if self.ctl is None:
            self.ctl = Controller([node_type], self.config, event_sink=self._sink)
            self.queue = AdmissionQueue(self.ctl.decide, room=self.ctl.has_room)
            for req in self._early:
                self.queue.push(req, item=req.task_id)
            self._early = []
        else:
            self.ctl.add_node_type(node_type)

    def sync_nodes(self, nodes: Sequence[tuple[str, str, str]]) -> str:
        """Make the controller's nodes ``nodes`` [(node id, type, state)]: add new ones,
        update states, remove the rest. Returns the epoch."""
        self.nodes = [tuple(n) for n in nodes]
        ctl, now = self.ctl, self.clock()
        if ctl is None:
            return self.epoch
        want = {nid: (typ, NodeState(st)) for nid, typ, st in nodes}
        for nid, (typ, st) in want.items():
            if not ctl.cluster.has_node(nid):
                ctl.add_node(nid, typ, state=st, now_s=now)
            elif ctl.node_state(nid) != st:
                ctl.set_node_state(nid, st, now_s=now)
        for nid in set(ctl.cluster.node_ids) - set(want):
            ctl.remove_node(nid, now_s=now)
            self._power.pop(nid, None)
        self.queue.reopen()
        return self.epoch

    def set_node_state(self, node_id: str, state: NodeState) -> None:
        if self.ctl is not None and self.ctl.cluster.has_node(node_id):
            self.ctl.set_node_state(node_id, NodeState(state), now_s=self.clock())
            self.queue.reopen()

    def reset(self) -> str:
        """Cancel every grant and forget every waiting task (the driver lost track of them)."""
        now = self.clock()
        if self.ctl is not None:
            for gid in self._grants:
                self.ctl.cancel(gid, now_s=now)
            for req in list(self.queue.pending()):
                self.queue.discard(req.task_id)
                self.ctl.cancel(req.task_id, now_s=now)
        self._grants.clear()
        return self.epoch

    # ------------------------------------------------------------------ telemetry
    def observe(self, node_id: str, t_s: float, power_w: Optional[float], utilization: Optional[float],
                temperature_k: Optional[float] = None) -> None:
        """A sampler's latest reading (W, CPU utilization 0..1, K); the cluster's power once
        every node that is on has a fresh one."""
        ctl = self.ctl
        if ctl is None or not ctl.cluster.has_node(node_id):
            return
        now = self.clock()
        ctl.observe_node(node_id, now_s=now, power_w=power_w, utilization=utilization, temperature_k=temperature_k)
        if power_w is None:
            return
        self._power[node_id] = (t_s, float(power_w))
        on = [nid for nid, _typ, st in self.nodes if st in ("on", "draining")]
        fresh = [self._power[n][1] for n in on if n in self._power and now - self._power[n][0] < FRESH_S]
        if on and len(fresh) == len(on):
            ctl.observe_cluster_power(now_s=now, power_w=float(sum(fresh)))
            self.gauges.cluster(float(sum(fresh)), self.config.power_budget_w)

    # ------------------------------------------------------------------ decisions
    def decide_one(self, group: str, cpus: float, gpus: float, job: Optional[str]) -> Optional[Grant]:
        """One PLACE for something long-lived (actor, bundle) until it ends; None: no room now."""
        d = self._slot(TaskRequest(self._gid(), group, cpus=cpus, gpus=gpus, job=job))
        return None if d is None else Grant(d.task_id, d.node_id, group)

    def _slot(self, req: TaskRequest) -> Optional[Decision]:
        """A PLACE for ``req`` now, started, or None (a DEFER or REJECT is cancelled)."""
        if self.ctl is None:
            return None
        now = self.clock()
        d = self.ctl.decide(req, now_s=now)
        if d.action != Action.PLACE:
            self.ctl.cancel(req.task_id, now_s=now)
            return None
        self.ctl.task_started(req.task_id, now_s=now)
        self._grants.add(req.task_id)
        return d

    def sync(self, batch: SyncBatch) -> SyncReply:
        """Apply one batch from the driver (see the module doc)."""
        ctl, q, now = self.ctl, self.queue, self.clock()
        if ctl is None:
            self._early.extend(batch.queued)
            return SyncReply(self.epoch, [], [], None, {}, len(self._early))
        for gid in batch.started:
            ctl.task_started(gid, now_s=now)
        for gid, run_s in batch.runs:  # the run times of a slot's tasks, as they end
            ctl.task_ran(gid, run_s)
        for e in batch.ended:
            ctl.task_finished(e.gid, now_s=now, energy_j=e.energy_j, duration_s=e.duration_s,
                              run_learned=e.run_learned)
            self._grants.discard(e.gid)
        for gid in batch.cancel:
            ctl.cancel(gid, now_s=now)
            q.discard(gid)
            self._grants.discard(gid)
        if batch.ended or batch.cancel:
            q.reopen()
        for req in batch.queued:
            if req.task_id not in q:
                q.push(req, item=req.task_id)
        admitted: list[tuple[str, Optional[Grant]]] = []
        q.offer(now, lambda req, d, _tid: self._admit(req, d, admitted))
        slots, unplaced = self._slots(batch.slots)
        self.gauges.waiting(len(q))
        return SyncReply(self.epoch, slots, admitted, self._scale(now, list(q.pending()) + unplaced),
                         ctl.budget_state(), len(q))

    def _admit(self, req: TaskRequest, d: Decision, out: list) -> bool:
        if d.action == Action.PLACE:
            self._grants.add(req.task_id)
            out.append((req.task_id, Grant(req.task_id, d.node_id, req.group)))
        else:  # REJECT: the driver runs it unmanaged and says why
            out.append((req.task_id, None))
        return True

    def _slots(self, wants: Sequence[SlotWant]) -> tuple[list[Grant], list[TaskRequest]]:
        """Slots granted now, and the first request of each group that got none."""
        got, unplaced = [], []
        for w in wants:
            for _ in range(int(w.n)):
                req = TaskRequest(self._gid(), w.group, cpus=w.cpus, gpus=w.gpus, job=w.job)
                d = self._slot(req)
                if d is None:
                    unplaced.append(req)
                    break
                got.append(Grant(req.task_id, d.node_id, w.group, slot=True))
        return got, unplaced

    def _scale(self, now: float, pending: list[TaskRequest]) -> Optional[dict[str, Any]]:
        if now - self._last_scale < self.scale_every_s:
            return None
        self._last_scale = now
        plan = self.ctl.plan_scaling(now_s=now, pending=pending)
        if not plan:
            return None
        return {"power_on": list(plan.power_on), "power_off": list(plan.power_off), "drain": list(plan.drain),
                "reason": plan.reason}

    # ------------------------------------------------------------------ reading
    def decision_events(self, since: int = 0) -> tuple[int, list[dict[str, Any]]]:
        """Decision events numbered from ``since`` (the oldest may have been dropped)."""
        ev = self.events
        return ev.total, list(itertools.islice(ev.buffer, max(since - ev.dropped, 0), None))

    def energy_correction(self, group: str) -> dict[str, float]:
        """The controller's learned measured / predicted energy ratio of ``group``, per node
        type (1.0 where nothing was learned)."""
        if self.ctl is None:
            return {}
        ratios = self.ctl.predictor.correction(group)
        return {t.name: float(r) for t, r in zip(self.ctl.cluster.types, ratios)}

    def fitted_models(self) -> dict[str, Any]:
        return {} if self.ctl is None else self.ctl.fitted_models()

    def stats(self) -> dict[str, Any]:
        ctl = self.ctl
        if ctl is None:
            return {"epoch": self.epoch, "counters": {}, "running": 0, "queued": 0, "budget": {}, "nodes": {}}
        return {"epoch": self.epoch, "counters": dict(ctl.counters), "running": ctl.running, "queued": len(self.queue),
                "budget": ctl.budget_state(), "nodes": {n: str(ctl.node_state(n)) for n in ctl.cluster.node_ids}}

    def describe(self) -> dict[str, Any]:
        """What a reader outside the driver needs: node types, configuration, nodes, epoch."""
        return {"node_types": [node_type_to_dict(t) for t in self.types], "config": self.config.to_dict(),
                "nodes": list(self.nodes), "epoch": self.epoch}


def node_types_of(dicts: Sequence[dict[str, Any]]) -> list[NodeType]:
    """Node types from their JSON form (:mod:`tao_core.power.node_json`)."""
    return [node_type_from_dict(d) for d in dicts]
