"""Baseline policies with the controller interface, reproducing the engines' defaults.

Every baseline implements the methods of ``tao_core.control.Controller`` the simulator
calls (``add_node``, ``set_node_state``, ``decide``, ``task_started``, ``task_finished``,
``cancel``, ``plan_scaling``, ``observe_*``), so the simulator has one code path for all.
A task that fits nowhere now is DEFERred and waits in the simulator's FIFO queue; the real
engines queue it at a node instead (Ray's raylet) or on the scheduler/worker (Dask). Sources:

- ``ray-default``: Ray's hybrid scheduling policy
  (``src/ray/raylet/scheduling/policy/hybrid_scheduling_policy.cc``). A node's score is its
  critical resource utilization (the largest used/total over CPU and GPU), counted as 0 below
  ``scheduler_spread_threshold`` (0.5). The local node (the driver's: the first node of the
  cluster) is taken while its score is the lowest; otherwise one of the
  ``max(scheduler_top_k_absolute=1, int(scheduler_top_k_fraction=0.2 x nodes))`` best nodes
  (nodes ordered by node id, here a fixed seeded permutation, then by score) is drawn at
  random. Tasks without GPUs try nodes without GPUs first (``scheduler_avoid_gpu_nodes``).
  Static cluster.
- ``ray-default-autoscale``: the same placement with the Ray autoscaler's behaviour: every
  5 s (``AUTOSCALER_UPDATE_INTERVAL_S``) the demand of waiting tasks that does not fit on the
  free room of running and booting nodes is bin-packed onto new nodes (node type fitting the
  most waiting demand, GPU types only for GPU demand); at most ``max(5, upscaling_speed (1.0)
  x running nodes)`` nodes boot at once; a node idle for ``idle_timeout_minutes`` (5) is
  terminated (powered off here). The head node (first node) never is.
- ``dask-default``: Dask's placement (``distributed.scheduler.decide_worker`` with
  ``worker_objective``): the worker where the task is expected to start earliest, i.e. the
  lowest occupancy per thread, occupancy being the summed expected run times of the tasks it
  processes (expected run time: the mean observed run time of the task's group, 0.5 s before
  any observation, Dask's ``unknown-task-duration``). One worker per node, nthreads = CPUs,
  GPUs as a worker resource. Static cluster.
- ``dask-adaptive``: the same with ``distributed.deploy.Adaptive`` defaults: every 1 s
  (``interval``) the target is ``Scheduler.adaptive_target``: ceil((occupancy of processing
  and waiting tasks) / ``target_duration`` (5 s)) threads, at most the number of ready tasks,
  turned into workers by the mean threads per worker; more workers are booted at once when
  the target is above the current count (the off nodes in cluster order, nodes that fit a
  waiting task first); a worker proposed for closing in ``wait_count`` (3) consecutive
  intervals is closed (idle workers only, last nodes first). ``minimum`` 0.
- ``spread``: the least-loaded node (lowest critical utilization after placing). Static.
- ``pack``: best fit: the node left with the least free capacity (CPU share plus GPU share)
  after placing. Static.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence

from tao_core.control.types import (
    Action, Decision, DecisionEvent, NodeState, NodeType, ScalePlan, TaskRequest,
)

EPS = 1e-9


class _PNode:
    __slots__ = ("node_id", "nt", "idx", "order", "state", "cpus", "gpus", "cpus_used", "gpus_used",
                 "running", "occupancy", "idle_since")

    def __init__(self, node_id: str, nt: NodeType, idx: int, state: NodeState, now_s: float):
        self.node_id = node_id
        self.nt = nt
        self.idx = idx
        self.order = idx
        self.state = state
        self.cpus = float(nt.cpus)
        self.gpus = float(nt.gpus)
        self.cpus_used = 0.0
        self.gpus_used = 0.0
        self.running: dict[str, tuple[float, float, float]] = {}
        self.occupancy = 0.0
        self.idle_since = now_s

    def fits(self, cpus: float, gpus: float) -> bool:
        return self.cpus_used + cpus <= self.cpus + EPS and self.gpus_used + gpus <= self.gpus + EPS

    def critical_util(self) -> float:
        u = self.cpus_used / self.cpus
        if self.gpus > 0:
            g = self.gpus_used / self.gpus
            if g > u:
                u = g
        return u


class BasePolicy:
    """Node bookkeeping shared by the baselines: reservations, idle times, events.

    Subclasses choose a node in :meth:`choose`, and may override :meth:`plan_scaling`.
    ``tick_interval_s`` None means a static cluster (the simulator never asks for a plan).
    """

    name = "base"
    tick_interval_s: Optional[float] = None
    activity_horizons_s: tuple[float, ...] = ()

    def __init__(self, node_types: Mapping[str, NodeType] | Sequence[NodeType], *, seed: int = 0,
                 event_sink: Optional[Callable[[DecisionEvent], None]] = None) -> None:
        if not isinstance(node_types, Mapping):
            node_types = {nt.name: nt for nt in node_types}
        self.node_types = dict(node_types)
        self.nodes: dict[str, _PNode] = {}
        self.order: list[_PNode] = []
        self.rng = random.Random(seed)
        self.event_sink = event_sink
        self.tasks: dict[str, tuple[_PNode, float, float]] = {}
        self._durations: dict[str, tuple[float, int]] = {}

    # -- membership --------------------------------------------------------------------
    def add_node(self, node_id: str, node_type: str, *, state: NodeState = NodeState.ON, now_s: float = 0.0) -> None:
        n = _PNode(node_id, self.node_types[node_type], len(self.order), NodeState(state), now_s)
        self.nodes[node_id] = n
        self.order.append(n)
        self._on_add(n)

    def _on_add(self, n: _PNode) -> None:
        pass

    def remove_node(self, node_id: str, *, now_s: float) -> None:
        n = self.nodes.pop(node_id)
        self.order.remove(n)

    def set_node_state(self, node_id: str, state: NodeState, *, now_s: float) -> None:
        n = self.nodes[node_id]
        n.state = NodeState(state)
        if n.state is NodeState.ON and not n.running:
            n.idle_since = now_s

    def observe_node(self, node_id: str, *, now_s: float, power_w=None, temperature_k=None, utilization=None) -> None:
        pass

    def observe_cluster_power(self, *, now_s: float, power_w: float) -> None:
        pass

    ignores_power = True

    # -- tasks -------------------------------------------------------------------------
    def expected_duration_s(self, task: TaskRequest) -> float:
        """Mean observed run time of the task's group at speed 1.0 (0.5 s before any)."""
        if task.duration_hint_s is not None:
            return task.duration_hint_s
        m = self._durations.get(task.group)
        return m[0] if m else 0.5

    def choose(self, task: TaskRequest, now_s: float) -> Optional[_PNode]:
        raise NotImplementedError

    def decide(self, task: TaskRequest, *, now_s: float) -> Decision:
        n = self.choose(task, now_s)
        if n is None:
            return Decision(task.task_id, Action.DEFER, reason="no node has free capacity")
        est = self.expected_duration_s(task) / n.nt.speed
        n.cpus_used += task.cpus
        n.gpus_used += task.gpus
        n.occupancy += est
        n.running[task.task_id] = (task.cpus, task.gpus, est)
        self.tasks[task.task_id] = (n, task.cpus, task.gpus)
        if self.event_sink is not None:
            self.event_sink(DecisionEvent(t_s=now_s, kind="place", subject=task.task_id, group=task.group,
                                          node_id=n.node_id, reason=self.name))
        return Decision(task.task_id, Action.PLACE, node_id=n.node_id, reason=self.name)

    def task_started(self, task_id: str, *, now_s: float) -> None:
        pass

    def _free(self, task_id: str, now_s: float) -> Optional[_PNode]:
        rec = self.tasks.pop(task_id, None)
        if rec is None:
            return None
        n, c, g = rec
        _, _, est = n.running.pop(task_id)
        n.occupancy -= est
        if n.running:
            n.cpus_used -= c
            n.gpus_used -= g
        else:
            n.cpus_used = n.gpus_used = n.occupancy = 0.0
            n.idle_since = now_s
        return n

    def task_finished(self, task_id: str, *, now_s: float, energy_j: Optional[float] = None,
                      duration_s: Optional[float] = None, group: Optional[str] = None) -> None:
        n = self._free(task_id, now_s)
        if n is not None and duration_s is not None and self._group_of is not None:
            grp = self._group_of.pop(task_id, None)
            if grp is not None:
                mean, k = self._durations.get(grp, (0.0, 0))
                x = duration_s * n.nt.speed
                self._durations[grp] = (mean + (x - mean) / (k + 1), k + 1)

    _group_of: Optional[dict[str, str]] = None

    def cancel(self, task_id: str, *, now_s: float) -> None:
        self._free(task_id, now_s)

    def plan_scaling(self, *, now_s: float, pending: Sequence[TaskRequest] = ()) -> ScalePlan:
        return ScalePlan()

    # -- helpers -----------------------------------------------------------------------
    def _emit(self, now_s: float, kind: str, subject: str, reason: str) -> None:
        if self.event_sink is not None:
            self.event_sink(DecisionEvent(t_s=now_s, kind=kind, subject=subject, node_id=subject, reason=reason))

    def _available(self, task: TaskRequest) -> list[_PNode]:
        c, g = task.cpus, task.gpus
        return [n for n in self.order if n.state is NodeState.ON and n.fits(c, g)]


class SpreadPolicy(BasePolicy):
    """Least loaded: the node with the lowest critical utilization after placing."""

    name = "spread"

    def choose(self, task: TaskRequest, now_s: float) -> Optional[_PNode]:
        best, best_u = None, math.inf
        c, g = task.cpus, task.gpus
        for n in self.order:
            if n.state is not NodeState.ON or not n.fits(c, g):
                continue
            u = (n.cpus_used + c) / n.cpus
            if n.gpus > 0:
                u = max(u, (n.gpus_used + g) / n.gpus)
            if u < best_u - EPS:
                best, best_u = n, u
        return best


class PackPolicy(BasePolicy):
    """Best fit: the node left with the least free capacity (CPU share + GPU share)."""

    name = "pack"

    def choose(self, task: TaskRequest, now_s: float) -> Optional[_PNode]:
        best, best_s = None, math.inf
        c, g = task.cpus, task.gpus
        for n in self.order:
            if n.state is not NodeState.ON or not n.fits(c, g):
                continue
            s = (n.cpus - n.cpus_used - c) / n.cpus
            if n.gpus > 0:
                s += (n.gpus - n.gpus_used - g) / n.gpus
            if s < best_s - EPS:
                best, best_s = n, s
        return best


class RayHybridPolicy(BasePolicy):
    """Ray's default hybrid scheduling policy (see the module docstring)."""

    name = "ray-default"
    spread_threshold = 0.5
    top_k_fraction = 0.2
    top_k_absolute = 1
    avoid_gpu_nodes = True

    def _on_add(self, n: _PNode) -> None:
        # node ids in Ray are random: tie order is a fixed seeded permutation
        n.order = self.rng.random()

    def _schedule(self, task: TaskRequest, nodes: list[_PNode], require_available: bool) -> Optional[_PNode]:
        c, g = task.cpus, task.gpus
        thr = self.spread_threshold
        avail: list[tuple[float, float, _PNode]] = []
        for n in nodes:
            if n.state is not NodeState.ON or n.cpus < c - EPS or n.gpus < g - EPS:
                continue
            if n.fits(c, g):
                u = n.critical_util()
                avail.append((0.0 if u < thr else u, n.order, n))
        if not avail:
            return None  # the simulator queues it (Ray would queue at a feasible node)
        alive = sum(1 for n in self.order if n.state is not NodeState.OFF)
        k = max(self.top_k_absolute, int(alive * self.top_k_fraction))
        best = min(a[0] for a in avail)
        local = self.order[0]
        if local.state is NodeState.ON and local in nodes and local.fits(c, g):
            u = local.critical_util()
            if (0.0 if u < thr else u) <= best:
                return local
        avail.sort(key=lambda a: (a[0], a[1]))
        return avail[self.rng.randrange(min(k, len(avail)))][2]

    def choose(self, task: TaskRequest, now_s: float) -> Optional[_PNode]:
        if self.avoid_gpu_nodes and task.gpus <= 0:
            cpu_nodes = [n for n in self.order if n.gpus == 0]
            n = self._schedule(task, cpu_nodes, True) if cpu_nodes else None
            if n is not None:
                return n
        return self._schedule(task, self.order, False)


def _type_score(nt: NodeType, demands: Sequence[tuple[float, float]]) -> tuple[int, float]:
    """How many of ``demands`` one node of type ``nt`` takes (first fit) and the share of its
    CPUs they use; a GPU type for CPU-only demand scores lowest (Ray's utilization scorer
    keeps GPU nodes for GPU work)."""
    cf, gf = nt.cpus, float(nt.gpus)
    took = 0
    used = 0.0
    gpu_demand = False
    for c, g in demands:
        if c <= cf + EPS and g <= gf + EPS:
            cf -= c
            gf -= g
            used += c
            took += 1
            gpu_demand = gpu_demand or g > 0
    if took == 0:
        return (-1, 0.0)
    if nt.gpus > 0 and not gpu_demand:
        return (0, used / nt.cpus)
    return (took, used / nt.cpus)


class RayAutoscalePolicy(RayHybridPolicy):
    """Ray placement plus the Ray autoscaler (see the module docstring)."""

    name = "ray-default-autoscale"
    tick_interval_s = 5.0
    idle_timeout_s = 300.0
    upscaling_speed = 1.0
    activity_horizons_s = (300.0,)

    def plan_scaling(self, *, now_s: float, pending: Sequence[TaskRequest] = ()) -> ScalePlan:
        off: list[str] = []
        head = self.order[0] if self.order else None
        for n in self.order:
            if n is head:
                continue
            if n.state is NodeState.ON and not n.running and now_s - n.idle_since >= self.idle_timeout_s - EPS:
                off.append(n.node_id)
        on: list[str] = []
        if pending:
            # residual demand after the free room of running and booting nodes (first fit)
            free = [[n.cpus - n.cpus_used, n.gpus - n.gpus_used] for n in self.order
                    if n.state in (NodeState.ON, NodeState.BOOTING)]
            residual: list[tuple[float, float]] = []
            for t in sorted(pending, key=lambda r: (-r.gpus, -r.cpus)):
                for f in free:
                    if t.cpus <= f[0] + EPS and t.gpus <= f[1] + EPS:
                        f[0] -= t.cpus
                        f[1] -= t.gpus
                        break
                else:
                    residual.append((t.cpus, t.gpus))
            booting = sum(1 for n in self.order if n.state is NodeState.BOOTING)
            running = sum(1 for n in self.order if n.state is NodeState.ON)
            budget = max(5, math.ceil(self.upscaling_speed * running)) - booting
            offs = {n.node_id: n for n in self.order if n.state is NodeState.OFF and n.node_id not in off}
            by_type: dict[str, list[_PNode]] = {}
            for n in sorted(offs.values(), key=lambda n: n.idx):
                by_type.setdefault(n.nt.name, []).append(n)
            while residual and budget > 0:
                best, best_s = None, (-1, 0.0)
                for name, lst in by_type.items():
                    if not lst:
                        continue
                    s = _type_score(lst[0].nt, residual)
                    if s > best_s:
                        best, best_s = name, s
                if best is None or best_s[0] < 0:
                    break
                n = by_type[best].pop(0)
                on.append(n.node_id)
                budget -= 1
                cf, gf = n.cpus, n.gpus
                rest = []
                for c, g in residual:
                    if c <= cf + EPS and g <= gf + EPS:
                        cf -= c
                        gf -= g
                    else:
                        rest.append((c, g))
                residual = rest
        for nid in off:
            self._emit(now_s, "scale-down", nid, f"idle for {self.idle_timeout_s:g} s (idle_timeout_minutes)")
        for nid in on:
            self._emit(now_s, "scale-up", nid, "pending demand does not fit the running nodes")
        return ScalePlan(power_on=tuple(on), power_off=tuple(off), reason=self.name)


class DaskPolicy(BasePolicy):
    """Dask's decide_worker: lowest occupancy per thread among workers with room."""

    name = "dask-default"

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self._group_of = {}

    def decide(self, task: TaskRequest, *, now_s: float) -> Decision:
        d = super().decide(task, now_s=now_s)
        if d.action is Action.PLACE:
            self._group_of[task.task_id] = task.group
        return d

    def choose(self, task: TaskRequest, now_s: float) -> Optional[_PNode]:
        best, best_s = None, math.inf
        c, g = task.cpus, task.gpus
        for n in self.order:
            if n.state is not NodeState.ON or not n.fits(c, g):
                continue
            s = n.occupancy / n.cpus
            if s < best_s - EPS:
                best, best_s = n, s
        return best


class DaskAdaptivePolicy(DaskPolicy):
    """Dask placement plus ``distributed.deploy.Adaptive`` (see the module docstring)."""

    name = "dask-adaptive"
    tick_interval_s = 1.0
    target_duration_s = 5.0
    wait_count = 3
    activity_horizons_s = (1.0, 2.0, 3.0)

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self._close_since: dict[str, float] = {}

    def target(self, pending: Sequence[TaskRequest]) -> int:
        workers = [n for n in self.order if n.state is NodeState.ON]
        occ = sum(n.occupancy for n in workers)
        sample = pending[:100]
        q = sum(self.expected_duration_s(t) for t in sample)
        if len(pending) > 100:
            q *= len(pending) / 100
        cpu = math.ceil((occ + q) / self.target_duration_s - 1e-9)
        ready = len(pending) + sum(len(n.running) for n in workers)
        cpu = min(ready, cpu)
        if workers:
            nthreads = sum(n.cpus for n in workers)
            cpu = math.ceil(cpu / nthreads * len(workers) - 1e-9)
        elif pending:
            cpu = max(1, cpu)
        return max(0, min(len(self.order), cpu))

    def plan_scaling(self, *, now_s: float, pending: Sequence[TaskRequest] = ()) -> ScalePlan:
        target = self.target(pending)
        plan = [n for n in self.order if n.state in (NodeState.ON, NodeState.BOOTING)]
        on: list[str] = []
        off: list[str] = []
        if target > len(plan):
            self._close_since.clear()
            offs = [n for n in self.order if n.state is NodeState.OFF]
            # nodes that fit a waiting task first, then cluster order
            need = [(t.cpus, t.gpus) for t in pending]

            def fits_any(n: _PNode) -> bool:
                return any(c <= n.cpus + EPS and g <= n.gpus + EPS for c, g in need[:100])

            offs.sort(key=lambda n: (not fits_any(n), n.idx))
            on = [n.node_id for n in offs[: target - len(plan)]]
        elif target < len(plan):
            idle = [n for n in reversed(self.order) if n.state is NodeState.ON and not n.running]
            to_close = {n.node_id for n in idle[: len(plan) - target]}
            for nid in list(self._close_since):
                if nid not in to_close:
                    del self._close_since[nid]
            for nid in to_close:
                first = self._close_since.setdefault(nid, now_s)
                if now_s - first >= (self.wait_count - 1) * self.tick_interval_s - EPS:
                    off.append(nid)
                    del self._close_since[nid]
        else:
            self._close_since.clear()
        for nid in off:
            self._emit(now_s, "scale-down", nid, f"adaptive target {target} below workers for {self.wait_count} intervals")
        for nid in on:
            self._emit(now_s, "scale-up", nid, f"adaptive target {target}")
        return ScalePlan(power_on=tuple(on), power_off=tuple(sorted(off)), reason=self.name)


BASELINES: dict[str, type[BasePolicy]] = {
    "ray-default": RayHybridPolicy,
    "ray-default-autoscale": RayAutoscalePolicy,
    "dask-default": DaskPolicy,
    "dask-adaptive": DaskAdaptivePolicy,
    "spread": SpreadPolicy,
    "pack": PackPolicy,
}
