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
  x running nodes)`` nodes boot at once; a node idle for ``idle_timeout_minutes`` (5, the
  documented default) is terminated (powered off here). The head node (first node) never is.
- ``ray-autoscale-1min``: the same with ``idle_timeout_minutes: 1``, the short setting an
  operator who pays for idle nodes would choose.
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
- ``dask-adaptive-tuned``: the same with three knobs set as Dask's docs describe them
  (``distributed.deploy.Adaptive``; config ``distributed.adaptive``): ``target_duration``
  ("amount of time we want a computation to take; this affects how aggressively we scale
  up") 1 s instead of 5 s, so short tasks get workers too; ``wait_count`` ("number of
  consecutive times that a worker should be suggested for removal before we remove it")
  such that ``wait_count x interval`` is the longest boot time of the cluster: booting
  draws about the idle watts, so a worker is kept through a gap as long as its boot (the
  break-even of keeping it on against rebooting it) instead of 3 s; ``minimum`` 1, so
  a trickle of work never waits for a boot.
- ``spread``: the least-loaded node (lowest critical utilization after placing). Static.
- ``pack``: best fit: the node left with the least free capacity (CPU share plus GPU share)
  after placing. Static.
"""
from __future__ import annotations

import math
import random

import numpy as np
from typing import Callable, Mapping, Optional, Sequence

from tao_core.control.types import (
    Action, Decision, DecisionEvent, NodeState, NodeType, ScalePlan, TaskRequest,
)

EPS = 1e-9
OFF, BOOTING, ON, DRAINING = 0, 1, 2, 3
_CODE = {NodeState.OFF: OFF, NodeState.BOOTING: BOOTING, NodeState.ON: ON, NodeState.DRAINING: DRAINING}


class BasePolicy:
    """Node bookkeeping shared by the baselines (numpy arrays, one row per node):
    reservations, occupancy, idle times, events.

    Subclasses choose a node row in :meth:`choose`, and may override :meth:`plan_scaling`.
    ``tick_interval_s`` None means a static cluster (the simulator never asks for a plan).
    """

    name = "base"
    tick_interval_s: Optional[float] = None
    activity_horizons_s: tuple[float, ...] = ()
    learn_durations = False

    def __init__(self, node_types: Mapping[str, NodeType] | Sequence[NodeType], *, seed: int = 0,
                 event_sink: Optional[Callable[[DecisionEvent], None]] = None) -> None:
        if not isinstance(node_types, Mapping):
            node_types = {nt.name: nt for nt in node_types}
        self.node_types = dict(node_types)
        self.ids: list[str] = []
        self.types: list[NodeType] = []
        self.index: dict[str, int] = {}
        self.rng = random.Random(seed)
        self.event_sink = event_sink
        self.tasks: dict[str, tuple[int, float, float, float, str]] = {}
        self._durations: dict[str, tuple[float, int]] = {}
        self._cap = 0
        self.n = 0
        self._alloc(64)

    def _alloc(self, cap: int) -> None:
        def grow(a, fill, dtype):
            b = np.full(cap, fill, dtype=dtype)
            if a is not None:
                b[: self.n] = a[: self.n]
            return b

        g = lambda name, fill, dtype: grow(getattr(self, name, None), fill, dtype)  # noqa: E731
        self.cap_c = g("cap_c", 1.0, float)
        self.cap_g = g("cap_g", 0.0, float)
        self.used_c = g("used_c", 0.0, float)
        self.used_g = g("used_g", 0.0, float)
        self.occ = g("occ", 0.0, float)
        self.n_run = g("n_run", 0, np.int64)
        self.state = g("state", OFF, np.int8)
        self.idle_since = g("idle_since", 0.0, float)
        self.speed = g("speed", 1.0, float)
        self.order_key = g("order_key", 0.0, float)
        self._cap = cap

    # -- membership --------------------------------------------------------------------
    def add_node(self, node_id: str, node_type: str, *, state: NodeState = NodeState.ON, now_s: float = 0.0) -> None:
        if self.n >= self._cap:
            self._alloc(self._cap * 2)
        i = self.n
        nt = self.node_types[node_type]
        self.ids.append(node_id)
        self.types.append(nt)
        self.index[node_id] = i
        self.cap_c[i] = nt.cpus
        self.cap_g[i] = nt.gpus
        self.used_c[i] = self.used_g[i] = self.occ[i] = 0.0
        self.n_run[i] = 0
        self.state[i] = _CODE[NodeState(state)]
        self.idle_since[i] = now_s
        self.speed[i] = nt.speed
        self.order_key[i] = self._order_key(i)
        self.n += 1

    def _order_key(self, i: int) -> float:
        return float(i)

    def set_node_state(self, node_id: str, state: NodeState, *, now_s: float) -> None:
        i = self.index[node_id]
        code = _CODE[NodeState(state)]
        if code == ON and self.state[i] != ON and self.n_run[i] == 0:
            self.idle_since[i] = now_s
        self.state[i] = code

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

    def _fits(self, c: float, g: float) -> np.ndarray:
        n = self.n
        return ((self.state[:n] == ON) & (self.used_c[:n] + c <= self.cap_c[:n] + EPS)
                & (self.used_g[:n] + g <= self.cap_g[:n] + EPS))

    def choose(self, task: TaskRequest, now_s: float) -> Optional[int]:
        raise NotImplementedError

    def decide(self, task: TaskRequest, *, now_s: float) -> Decision:
        i = self.choose(task, now_s)
        if i is None:
            return Decision(task.task_id, Action.DEFER, reason="no node has free capacity")
        est = self.expected_duration_s(task) / self.speed[i]
        self.used_c[i] += task.cpus
        self.used_g[i] += task.gpus
        self.occ[i] += est
        self.n_run[i] += 1
        self.tasks[task.task_id] = (i, task.cpus, task.gpus, est, task.group)
        node_id = self.ids[i]
        if self.event_sink is not None:
            self.event_sink(DecisionEvent(t_s=now_s, kind="place", subject=task.task_id, group=task.group,
                                          node_id=node_id, reason=self.name))
        return Decision(task.task_id, Action.PLACE, node_id=node_id, reason=self.name)

    def task_started(self, task_id: str, *, now_s: float) -> None:
        pass

    def _free(self, task_id: str, now_s: float):
        rec = self.tasks.pop(task_id, None)
        if rec is None:
            return None
        i, c, g, est, grp = rec
        self.n_run[i] -= 1
        if self.n_run[i] > 0:
            self.used_c[i] -= c
            self.used_g[i] -= g
            self.occ[i] -= est
        else:
            self.used_c[i] = self.used_g[i] = self.occ[i] = 0.0
            self.idle_since[i] = now_s
        return rec

    def task_finished(self, task_id: str, *, now_s: float, energy_j: Optional[float] = None,
                      duration_s: Optional[float] = None) -> None:
        rec = self._free(task_id, now_s)
        if rec is not None and duration_s is not None and self.learn_durations:
            i, grp = rec[0], rec[4]
            mean, k = self._durations.get(grp, (0.0, 0))
            x = duration_s * self.speed[i]
            self._durations[grp] = (mean + (x - mean) / (k + 1), k + 1)

    def cancel(self, task_id: str, *, now_s: float) -> None:
        self._free(task_id, now_s)

    def plan_scaling(self, *, now_s: float, pending: Sequence[TaskRequest] = ()) -> ScalePlan:
        return ScalePlan()

    def _emit(self, now_s: float, kind: str, subject: str, reason: str) -> None:
        if self.event_sink is not None:
            self.event_sink(DecisionEvent(t_s=now_s, kind=kind, subject=subject, node_id=subject, reason=reason))

    def _critical_util(self) -> np.ndarray:
        n = self.n
        u = self.used_c[:n] / self.cap_c[:n]
        gu = np.divide(self.used_g[:n], self.cap_g[:n], out=np.zeros(n), where=self.cap_g[:n] > 0)
        return np.maximum(u, gu)


def _first_min(score: np.ndarray, mask: np.ndarray) -> Optional[int]:
    """Row of the lowest score among ``mask`` (first row on ties), or None."""
    if not mask.any():
        return None
    s = np.where(mask, score, np.inf)
    return int(s.argmin())


class SpreadPolicy(BasePolicy):
    """Least loaded: the node with the lowest critical utilization after placing."""

    name = "spread"

    def choose(self, task: TaskRequest, now_s: float) -> Optional[int]:
        n = self.n
        c, g = task.cpus, task.gpus
        u = (self.used_c[:n] + c) / self.cap_c[:n]
        gu = np.divide(self.used_g[:n] + g, self.cap_g[:n], out=np.zeros(n), where=self.cap_g[:n] > 0)
        return _first_min(np.maximum(u, gu), self._fits(c, g))


class PackPolicy(BasePolicy):
    """Best fit: the node left with the least free capacity (CPU share + GPU share)."""

    name = "pack"

    def choose(self, task: TaskRequest, now_s: float) -> Optional[int]:
        n = self.n
        c, g = task.cpus, task.gpus
        s = (self.cap_c[:n] - self.used_c[:n] - c) / self.cap_c[:n]
        s = s + np.divide(self.cap_g[:n] - self.used_g[:n] - g, self.cap_g[:n], out=np.zeros(n), where=self.cap_g[:n] > 0)
        return _first_min(s, self._fits(c, g))


class RayHybridPolicy(BasePolicy):
    """Ray's default hybrid scheduling policy (see the module docstring)."""

    name = "ray-default"
    spread_threshold = 0.5
    top_k_fraction = 0.2
    top_k_absolute = 1
    avoid_gpu_nodes = True

    def _order_key(self, i: int) -> float:
        # node ids in Ray are random: tie order is a fixed seeded permutation
        return self.rng.random()

    def _schedule(self, avail: np.ndarray) -> Optional[int]:
        idx = np.flatnonzero(avail)
        if idx.size == 0:
            return None  # the simulator queues it (Ray would queue at a feasible node)
        n = self.n
        alive = int(np.count_nonzero(self.state[:n] != OFF))
        k = max(self.top_k_absolute, int(alive * self.top_k_fraction))
        u = self._critical_util()[idx]
        score = np.where(u < self.spread_threshold, 0.0, u)
        if avail[0] and score[0] <= score.min():  # the local (driver's) node is row 0
            return 0
        order = np.lexsort((self.order_key[idx], score))
        pick = self.rng.randrange(min(k, idx.size))
        return int(idx[order[pick]])

    def choose(self, task: TaskRequest, now_s: float) -> Optional[int]:
        fits = self._fits(task.cpus, task.gpus)
        if self.avoid_gpu_nodes and task.gpus <= 0:
            cpu_only = fits & (self.cap_g[: self.n] == 0)
            if cpu_only.any():
                return self._schedule(cpu_only)
        return self._schedule(fits)


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
    idle_timeout_s = 300.0  #: idle_timeout_minutes 5, the documented default
    upscaling_speed = 1.0
    activity_horizons_s = (300.0,)

    def plan_scaling(self, *, now_s: float, pending: Sequence[TaskRequest] = ()) -> ScalePlan:
        n = self.n
        st = self.state[:n]
        idle = (st == ON) & (self.n_run[:n] == 0) & (now_s - self.idle_since[:n] >= self.idle_timeout_s - EPS)
        idle[0] = False  # the head node stays
        off = [self.ids[i] for i in np.flatnonzero(idle).tolist()]
        on = self._launch(self._residual(pending)) if pending else []
        for nid in off:
            self._emit(now_s, "scale-down", nid, f"idle for {self.idle_timeout_s:g} s (idle_timeout_minutes)")
        for nid in on:
            self._emit(now_s, "scale-up", nid, "pending demand does not fit the running nodes")
        return ScalePlan(power_on=tuple(on), power_off=tuple(off), reason=self.name)

    def _residual(self, pending: Sequence[TaskRequest]) -> list[tuple[float, float]]:
        """(CPUs, GPUs) of the pending tasks that fit no running or booting node's free room
        (first fit, biggest first)."""
        n = self.n
        st = self.state[:n]
        live = (st == ON) | (st == BOOTING)
        free_c = np.where(live, self.cap_c[:n] - self.used_c[:n], -1.0)
        free_g = np.where(live, self.cap_g[:n] - self.used_g[:n], -1.0)
        residual: list[tuple[float, float]] = []
        for t in sorted(pending, key=lambda r: (-r.gpus, -r.cpus)):
            ok = (free_c >= t.cpus - EPS) & (free_g >= t.gpus - EPS)
            j = int(ok.argmax())
            if ok[j]:
                free_c[j] -= t.cpus
                free_g[j] -= t.gpus
            else:
                residual.append((t.cpus, t.gpus))
        return residual

    def _launch(self, residual: list[tuple[float, float]]) -> list[str]:
        """Nodes to launch for ``residual`` demand: the type that takes the most of it
        each time, at most ``max(5, upscaling_speed x running)`` booting at once."""
        st = self.state[:self.n]
        booting = int(np.count_nonzero(st == BOOTING))
        running = int(np.count_nonzero(st == ON))
        budget = max(5, math.ceil(self.upscaling_speed * running)) - booting
        on: list[str] = []
        if not residual or budget <= 0:
            return on
        by_type: dict[str, list[int]] = {}
        for i in np.flatnonzero(st == OFF).tolist():
            by_type.setdefault(self.types[i].name, []).append(i)
        while residual and budget > 0:
            best = self._best_type(by_type, residual)
            if best is None:
                break
            i = by_type[best].pop(0)
            on.append(self.ids[i])
            budget -= 1
            residual = _left_over(residual, float(self.cap_c[i]), float(self.cap_g[i]))
        return on

    def _best_type(self, by_type: dict[str, list[int]], residual: list[tuple[float, float]]) -> Optional[str]:
        best, best_s = None, (-1, 0.0)
        for name, lst in by_type.items():
            if not lst:
                continue
            sc = _type_score(self.types[lst[0]], residual)
            if sc > best_s:
                best, best_s = name, sc
        return best if best is not None and best_s[0] >= 0 else None


class RayAutoscale1MinPolicy(RayAutoscalePolicy):
    """The Ray autoscaler with ``idle_timeout_minutes: 1``."""

    name = "ray-autoscale-1min"
    idle_timeout_s = 60.0
    activity_horizons_s = (60.0,)


def _left_over(demands: list[tuple[float, float]], cpus: float, gpus: float) -> list[tuple[float, float]]:
    """The demands a new node of ``cpus`` and ``gpus`` does not take (first fit)."""
    rest = []
    for c, g in demands:
        if c <= cpus + EPS and g <= gpus + EPS:
            cpus -= c
            gpus -= g
        else:
            rest.append((c, g))
    return rest


class DaskPolicy(BasePolicy):
    """Dask's decide_worker: lowest occupancy per thread among workers with room."""

    name = "dask-default"
    learn_durations = True

    def choose(self, task: TaskRequest, now_s: float) -> Optional[int]:
        n = self.n
        return _first_min(self.occ[:n] / self.cap_c[:n], self._fits(task.cpus, task.gpus))


class DaskAdaptivePolicy(DaskPolicy):
    """Dask placement plus ``distributed.deploy.Adaptive`` (see the module docstring)."""

    name = "dask-adaptive"
    tick_interval_s = 1.0  #: interval
    target_duration_s = 5.0
    wait_count = 3
    minimum = 0
    activity_horizons_s = (1.0, 2.0, 3.0)

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self._close_since: dict[int, float] = {}

    def target(self, pending: Sequence[TaskRequest]) -> int:
        n = self.n
        workers = self.state[:n] == ON
        occ = float(self.occ[:n][workers].sum())
        sample = pending[:100]
        durs = self._durations
        q = 0.0
        for t in sample:
            if t.duration_hint_s is not None:
                q += t.duration_hint_s
            else:
                m = durs.get(t.group)
                q += m[0] if m else 0.5
        if len(pending) > 100:
            q *= len(pending) / 100
        cpu = math.ceil((occ + q) / self.target_duration_s - 1e-9)
        ready = len(pending) + int(self.n_run[:n][workers].sum())
        cpu = min(ready, cpu)
        nw = int(workers.sum())
        if nw:
            nthreads = float(self.cap_c[:n][workers].sum())
            cpu = math.ceil(cpu / nthreads * nw - 1e-9)
        elif pending:
            cpu = max(1, cpu)
        return max(self.minimum, min(n, cpu))

    def plan_scaling(self, *, now_s: float, pending: Sequence[TaskRequest] = ()) -> ScalePlan:
        n = self.n
        st = self.state[:n]
        target = self.target(pending)
        planned = int(np.count_nonzero((st == ON) | (st == BOOTING)))
        on: list[str] = []
        off: list[str] = []
        if target > planned:
            self._close_since.clear()
            offs = np.flatnonzero(st == OFF)
            need = [(t.cpus, t.gpus) for t in pending[:100]]
            # nodes that fit a waiting task first, then cluster order
            fit = np.zeros(offs.size, dtype=bool)
            for c, g in need:
                fit |= (self.cap_c[offs] + EPS >= c) & (self.cap_g[offs] + EPS >= g)
            order = offs[np.lexsort((offs, ~fit))]
            on = [self.ids[i] for i in order[: target - planned].tolist()]
        elif target < planned:
            idle = np.flatnonzero((st == ON) & (self.n_run[:n] == 0))[::-1]
            to_close = set(idle[: planned - target].tolist())
            for i in list(self._close_since):
                if i not in to_close:
                    del self._close_since[i]
            for i in sorted(to_close):
                first = self._close_since.setdefault(i, now_s)
                if now_s - first >= (self.wait_count - 1) * self.tick_interval_s - EPS:
                    off.append(self.ids[i])
                    del self._close_since[i]
        else:
            self._close_since.clear()
        for nid in off:
            self._emit(now_s, "scale-down", nid, f"adaptive target {target} below workers for {self.wait_count} intervals")
        for nid in on:
            self._emit(now_s, "scale-up", nid, f"adaptive target {target}")
        return ScalePlan(power_on=tuple(on), power_off=tuple(off), reason=self.name)


class DaskAdaptiveTunedPolicy(DaskAdaptivePolicy):
    """``Adaptive`` with ``target_duration`` 1 s, ``minimum`` 1 and ``wait_count`` such that
    a worker proposed for closing is kept for the longest boot time of the cluster (see the
    module docstring)."""

    name = "dask-adaptive-tuned"
    target_duration_s = 1.0
    minimum = 1

    def __init__(self, node_types, *a, **kw) -> None:
        super().__init__(node_types, *a, **kw)
        boot = max((t.boot_s for t in self.node_types.values()), default=0.0)
        self.wait_count = max(3, math.ceil(boot / self.tick_interval_s - 1e-9))
        self.activity_horizons_s = tuple(float(k) for k in range(1, 4)) + (float(self.wait_count),)


BASELINES: dict[str, type[BasePolicy]] = {
    "ray-default": RayHybridPolicy,
    "ray-default-autoscale": RayAutoscalePolicy,
    "ray-autoscale-1min": RayAutoscale1MinPolicy,
    "dask-default": DaskPolicy,
    "dask-adaptive": DaskAdaptivePolicy,
    "dask-adaptive-tuned": DaskAdaptiveTunedPolicy,
    "spread": SpreadPolicy,
    "pack": PackPolicy,
}
