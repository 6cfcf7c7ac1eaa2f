"""Discrete-event simulator of a heterogeneous cluster driven by a placement/scaling policy.

The policy is any object with the controller interface (``tao_core.control.Controller`` or
a baseline of :mod:`tao_core.sim.policies`): ``add_node``, ``set_node_state``, ``decide``,
``task_started``, ``task_finished``, ``plan_scaling``, ``observe_cluster_power``. The
simulator keeps the ground truth (capacity, power states, energy) and checks every decision
against it: a PLACE on a node without room, or powering off a busy node, raises
:class:`SimulationError` (``strict=True``) or is refused and counted.

Waiting tasks are held in the core's :class:`~tao_core.control.admission.AdmissionQueue`
(first in, first out), the queue the Dask and Ray adapters use too: a task is offered when
some node that is on has room for it (or it has a deadline), again when capacity frees (a
task ends, a node finishes booting) or its DEFER's time comes; a DEFER for want of room or
headroom closes the queue to tasks at least as large until then.

Events, in order at equal times: task ends, boot completions, arrivals, retries of deferred
tasks, then one offer of the waiting tasks, then a scaling tick. Ticks come on a grid of
the policy's ``tick_interval_s`` (Ray's autoscaler: 5 s; Dask Adaptive: 1 s) while tasks
wait, at ``activity_horizons_s`` after each change (so an idle timeout is seen when it
expires), and at the policy's ``next_plan_s(now_s=...)`` when it has one (the
controller's own timer: idle timeouts that follow the workload, the forecast's next bin);
between those nothing can change, so no tick is simulated.

Energy: a node's power is constant between events, so energy is integrated exactly. An ON
(or draining) node draws ``power_curve(cpus_used / cpus)`` plus, per GPU, ``gpu_idle_w`` up
to the busy draw in proportion to the GPU share in use; a booting node draws its boot
power; an off node ``off_w``. Per node the simulator splits energy into dynamic (above the
node's idle draw), idle, boot and off joules. Per task it keeps two figures:

- ``energy_task_j``: the node's dynamic energy split by the CPUs (CPU part) and GPUs (GPU
  part) each task holds, so these sum to the dynamic energy;
- ``attributed_task_j``: the task's attributed energy as :mod:`tao_core.attribution` splits
  a node's energy (dynamic by CPU share, static = idle watts by share of the node's CPUs),
  the definition the adapters feed ``Controller.task_finished(energy_j=...)``; the
  simulator feeds it too.

GPU power limits (``gpu_limits``, :mod:`tao_core.sim.gpu_limits`): a GPU task starting on
a node type with measured profiles asks the policy for a limit
(``gpu_power_limit(group, node_id, now_s=...)``, when it has one; None or no such method:
the highest). Its run time and its GPUs' busy draw follow the measured profile of its
group at that limit, and when it ends the policy is told the time and GPU energy per
second of work at full speed (``observe_gpu_work``), as an adapter reports a unit of work.

Units: seconds, watts, joules.
"""
from __future__ import annotations

import heapq
import math
import sys
import time
from array import array
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np

from tao_core.control.admission import AdmissionQueue
from tao_core.control.types import Action, Decision, NodeState, NodeType, ScalePlan, TaskRequest
from tao_core.power.curve import segment
from tao_core.sim.gpu_limits import GpuLimitModel
from tao_core.sim.model import ClusterSpec, SimTask

EPS = 1e-9

# event priorities at equal times
_FINISH, _BOOT, _RETRY, _TICK = 0, 1, 3, 4


class SimulationError(RuntimeError):
    """A policy did something impossible (placed on a full node, powered off a busy one)."""


class _Node:
    __slots__ = (
        "idx", "node_id", "nt", "cpus", "gpus", "speed", "state", "cpus_used", "gpus_used", "running",
        "power", "last_t", "e_dyn", "e_idle", "e_boot", "e_off", "acc_cpu", "acc_gpu", "acc_attr", "idle_w",
        "pts", "gpu_idle_total", "gpu_dyn_per_gpu", "cpu_dyn", "gpu_dyn", "gpu_dyn_w", "boot_w", "off_w", "boots",
        "on_since",
    )

    def __init__(self, idx: int, node_id: str, nt: NodeType):
        self.idx = idx
        self.node_id = node_id
        self.nt = nt
        self.cpus = float(nt.cpus)
        self.gpus = float(nt.gpus)
        self.speed = float(nt.speed)
        self.state = NodeState.ON
        self.cpus_used = 0.0
        self.gpus_used = 0.0
        self.running: set[int] = set()
        self.pts = tuple(nt.power_curve.points_w)
        self.gpu_idle_total = nt.gpus * nt.gpu_idle_w
        self.gpu_dyn_per_gpu = nt.gpu_busy_w - nt.gpu_idle_w
        self.idle_w = self.pts[0] + self.gpu_idle_total
        self.boot_w = nt.boot_power_w
        self.off_w = nt.off_w
        self.power = self.idle_w
        self.cpu_dyn = 0.0
        self.gpu_dyn = 0.0
        self.gpu_dyn_w = 0.0  # GPU watts above idle of the tasks running (each at its power limit)
        self.last_t = 0.0
        self.e_dyn = self.e_idle = self.e_boot = self.e_off = 0.0
        self.acc_cpu = 0.0   # cumulative joules of CPU dynamic energy per CPU held
        self.acc_gpu = 0.0   # cumulative joules of GPU dynamic energy per GPU held
        self.acc_attr = 0.0  # cumulative attributed joules per CPU held (dynamic by CPU share + static share)
        self.boots = 0
        self.on_since = 0.0

    def advance(self, t: float) -> None:
        """Integrate energy from ``last_t`` to ``t`` at the current (constant) power."""
        dt = t - self.last_t
        if dt <= 0.0:
            return
        st = self.state
        if st is NodeState.ON or st is NodeState.DRAINING:
            self.e_idle += self.idle_w * dt
            self.acc_attr += self.idle_w / self.cpus * dt
            dyn = self.cpu_dyn + self.gpu_dyn
            if dyn:
                self.e_dyn += dyn * dt
                if self.cpus_used > EPS:
                    self.acc_cpu += self.cpu_dyn / self.cpus_used * dt
                    self.acc_attr += dyn / self.cpus_used * dt
                if self.gpus_used > EPS:
                    self.acc_gpu += self.gpu_dyn / self.gpus_used * dt
        elif st is NodeState.BOOTING:
            self.e_boot += self.power * dt
        else:
            self.e_off += self.power * dt
        self.last_t = t

    def recompute(self) -> float:
        """Set and return the node's watts for its state and load."""
        st = self.state
        if st is NodeState.ON or st is NodeState.DRAINING:
            p = self.pts
            j, f = segment(self.cpus_used / self.cpus * 10.0)
            self.cpu_dyn = p[j] + (p[j + 1] - p[j]) * f - p[0]
            self.gpu_dyn = self.gpu_dyn_w if self.running else 0.0
            self.power = self.idle_w + self.cpu_dyn + self.gpu_dyn
        elif st is NodeState.BOOTING:
            self.cpu_dyn = self.gpu_dyn = 0.0
            self.power = self.boot_w
        else:
            self.cpu_dyn = self.gpu_dyn = 0.0
            self.power = self.off_w
        return self.power

    def marks(self, cpus: float, gpus: float) -> tuple[float, float]:
        """(dynamic, attributed) accumulator readings for a task of ``cpus`` and ``gpus``:
        a task's energy is the reading at its end minus the reading at its start."""
        return cpus * self.acc_cpu + gpus * self.acc_gpu, cpus * self.acc_attr


@dataclass
class NodeEnergy:
    """Energy of one node over the run, joules."""

    node_id: str
    node_type: str
    dynamic_j: float
    idle_j: float
    boot_j: float
    off_j: float
    boots: int

    @property
    def it_j(self) -> float:
        return self.dynamic_j + self.idle_j + self.boot_j + self.off_j


@dataclass
class SimResult:
    """Everything one run produced. Times in seconds, power in watts, energy in joules.

    Per task (index as in the workload): ``start_s``, ``end_s`` (NaN if it never ran),
    ``node`` (node index, -1 if never ran), ``energy_task_j`` (its node's dynamic energy by
    the CPUs and GPUs it held), ``attributed_task_j`` (its attributed energy, dynamic by CPU
    share plus its CPU share of the node's idle watts, as :mod:`tao_core.attribution` splits
    it; what ``task_finished`` was fed). ``timeline_t``/``timeline_w``: cluster IT power, a
    step function (the value holds from each time to the next).
    """

    policy: str
    end_s: float
    nodes: list[NodeEnergy]
    start_s: array
    end_s_task: array
    node_of_task: array
    energy_task_j: array
    attributed_task_j: array
    timeline_t: array
    timeline_w: array
    peak_power_w: float
    budget_w: Optional[float]
    budget_violation_s: float
    budget_excess_j: float
    placements: int
    defers: int
    rejected: int
    ticks: int
    invalid: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    gpu_limited_tasks: int = 0  #: GPU tasks that ran at a power limit the policy set

    @property
    def it_energy_j(self) -> float:
        return sum(n.it_j for n in self.nodes)


class Simulator:
    """Run one policy over one workload on one cluster.

    ``policy``: the controller interface (see the module docstring); optional attributes
    ``tick_interval_s`` (None: never call ``plan_scaling``) and ``activity_horizons_s``.
    ``initial_state``: power state of every node at time 0 (the cluster as deployed: ON).
    ``duration_hints``: pass each task's run time to the policy as ``duration_hint_s``
    (default False: policies learn run times from finished tasks of the same group).
    ``progress``: show a tqdm bar on stderr (only when stderr is a terminal).
    ``budget_w``: IT watts (None: the cluster's own; ``inf``: none, even if the cluster has one).
    ``gpu_limits``: measured effect of GPU power limits (see the module docstring; None: none).
    """

    def __init__(self, cluster: ClusterSpec, tasks: Sequence[SimTask], policy: Any, *,
                 policy_name: str = "", budget_w: Optional[float] = None,
                 initial_state: NodeState = NodeState.ON, duration_hints: bool = False,
                 strict: bool = True, progress: bool = False, record_timeline: bool = True,
                 tick_interval_s: Optional[float] = None,
                 activity_horizons_s: Optional[Sequence[float]] = None,
                 gpu_limits: Optional[GpuLimitModel] = None) -> None:
        self.cluster = cluster
        self.tasks = tasks
        self.policy = policy
        self.policy_name = policy_name or type(policy).__name__
        b = budget_w if budget_w is not None else cluster.power_budget_w
        self.budget_w = None if b == math.inf else b  # an infinite budget is no budget
        self.initial_state = initial_state
        self.duration_hints = duration_hints
        self.strict = strict
        self.progress = progress
        self.record_timeline = record_timeline
        iv = tick_interval_s if tick_interval_s is not None else getattr(policy, "tick_interval_s", None)
        self.tick_iv: Optional[float] = float(iv) if iv else None
        hz = activity_horizons_s if activity_horizons_s is not None else getattr(policy, "activity_horizons_s", ())
        self.horizons = tuple(float(h) for h in hz)
        self.gpu_limits = gpu_limits if gpu_limits else None
        self._next_plan = getattr(policy, "next_plan_s", None)
        self._ask_limit = getattr(policy, "gpu_power_limit", None) if self.gpu_limits is not None else None

    # -- helpers -----------------------------------------------------------------------
    def _invalid(self, msg: str) -> None:
        if self.strict:
            raise SimulationError(f"{self.policy_name}: {msg}")
        if len(self._invalid_msgs) < 100:
            self._invalid_msgs.append(msg)
        self._n_invalid += 1

    def _power_changed(self, t: float, delta: float) -> None:
        if delta == 0.0:
            return
        total = self._total_w
        b = self.budget_w
        if b is not None and total > b + 1e-6:
            dt = t - self._last_change_t
            self._viol_s += dt
            self._excess_j += (total - b) * dt
        self._last_change_t = t
        total += delta
        self._total_w = total
        if total > self._peak_w:
            self._peak_w = total
        if self.record_timeline:
            tl_t = self._tl_t
            if tl_t and tl_t[-1] == t:
                self._tl_w[-1] = total
            else:
                tl_t.append(t)
                self._tl_w.append(total)

    def _set_state(self, n: _Node, state: NodeState, t: float) -> None:
        n.advance(t)
        old = n.power
        n.state = state
        self._on_mask[n.idx] = state is NodeState.ON
        self._power_changed(t, n.recompute() - old)

    def _push(self, t: float, kind: int, i: int, k: int) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, kind, self._seq, i, k))

    def _schedule_tick(self, t: float) -> None:
        iv = self.tick_iv
        if iv is None:
            return
        g = math.floor(t / iv + 1e-9) * iv
        if g < t - 1e-9:
            g += iv
        if g not in self._tick_times:
            self._tick_times.add(g)
            self._push(g, _TICK, -1, -1)

    def _schedule_retry(self, t: float) -> None:
        """An event at the earliest time a deferred task asks to be offered again."""
        r = self.queue.next_retry_s()
        if r is not None and r > t and r not in self._retry_times:
            self._retry_times.add(r)
            self._push(r, _RETRY, -1, -1)

    def _activity(self, t: float) -> None:
        """Something changed at ``t``: tick when timers can expire, and soon if tasks wait."""
        if self.tick_iv is None:
            return
        self._dirty = True
        for h in self.horizons:
            self._schedule_tick(t + h)
        if len(self.queue):
            self._schedule_tick(t + self.tick_iv * 0.5)
        self._timer(t)

    def _timer(self, t: float) -> None:
        """A tick when the policy says a plan may next change something by itself."""
        nxt = self._next_plan(now_s=t) if self._next_plan is not None else None
        if nxt is not None and nxt > t and nxt < math.inf:
            self._schedule_tick(nxt)

    def _request(self, i: int) -> TaskRequest:
        task = self.tasks[i]
        return TaskRequest(task_id=task.task_id, group=task.group, cpus=task.cpus, gpus=task.gpus,
                           duration_hint_s=task.duration_s if self.duration_hints else None,
                           deadline_s=task.deadline_s)

    def _observe(self, t: float) -> None:
        obs = getattr(self.policy, "observe_cluster_power", None)
        if obs is not None and not getattr(self.policy, "ignores_power", False):
            obs(now_s=t, power_w=self._total_w)

    # -- placement ---------------------------------------------------------------------
    def _room(self, cpus: float, gpus: float) -> bool:
        """Whether some node that is ON has ``cpus`` CPUs and ``gpus`` GPUs free (truth)."""
        return bool(np.any(self._on_mask & (self._cap_c - self._used_c >= cpus - EPS)
                           & (self._cap_g - self._used_g >= gpus - EPS)))

    def _gpu_run(self, i: int, n: _Node, t: float) -> tuple[float, float]:
        """(run-time factor, GPU watts above idle) of GPU task ``i`` starting on ``n`` now, at
        the power limit the policy sets (see the module docstring)."""
        task = self.tasks[i]
        nt = n.nt
        prof = self.gpu_limits.profile(nt.name, task.group) if self.gpu_limits is not None else None
        if prof is None:
            return 1.0, task.gpus * n.gpu_dyn_per_gpu
        limit = self._ask_limit(task.group, n.node_id, now_s=t) if self._ask_limit is not None else None
        tf, pf = prof.at(limit)
        busy = max(nt.gpu_idle_w, nt.gpu_max_w * pf)
        if limit is not None:
            self._limit[i] = limit
            self._limited += 1
        self._gtf[i] = tf
        return tf, task.gpus * (busy - nt.gpu_idle_w)

    def _start(self, i: int, n: _Node, t: float) -> None:
        task = self.tasks[i]
        n.advance(t)
        tf = 1.0
        if task.gpus > 0:
            tf, gdyn = self._gpu_run(i, n, t)
            self._gdyn[i] = gdyn
            n.gpu_dyn_w += gdyn
        n.cpus_used += task.cpus
        n.gpus_used += task.gpus
        self._used_c[n.idx] = n.cpus_used
        self._used_g[n.idx] = n.gpus_used
        n.running.add(i)
        old = n.power
        self._power_changed(t, n.recompute() - old)
        self._start_s[i] = t
        self._node_of[i] = n.idx
        self._e_task[i], self._a_task[i] = n.marks(task.cpus, task.gpus)  # start marks; the end subtracts
        self._push(t + task.duration_s / n.speed * tf, _FINISH, i, n.idx)
        self._placements += 1

    def _place_problem(self, i: int, d: Decision, t: float) -> Optional[str]:
        """Why the PLACE ``d`` of task ``i`` is impossible (None when it is possible)."""
        task = self.tasks[i]
        n = self._by_id.get(d.node_id) if d.node_id is not None else None
        if n is None:
            return f"t={t:g}: PLACE {task.task_id} on unknown node {d.node_id!r}"
        if n.state is not NodeState.ON:
            return f"t={t:g}: PLACE {task.task_id} on {n.node_id}, which is {n.state.value}"
        if n.cpus_used + task.cpus > n.cpus + EPS or n.gpus_used + task.gpus > n.gpus + EPS:
            return (f"t={t:g}: PLACE {task.task_id} ({task.cpus:g} CPU, {task.gpus:g} GPU) on {n.node_id} "
                    f"with {n.cpus - n.cpus_used:g} CPU, {n.gpus - n.gpus_used:g} GPU free")
        return None

    def _carry_out(self, req: TaskRequest, d: Decision, i: int) -> bool:
        """Carry out a PLACE or REJECT the queue got for task ``i``; True when done."""
        t = self._now
        if d.action is Action.REJECT or d.action == "reject":
            self._rejected += 1
            return True
        problem = self._place_problem(i, d, t)
        if problem is None:
            self._start(i, self._by_id[d.node_id], t)
            self.policy.task_started(req.task_id, now_s=t)
            return True
        self._invalid(problem)
        cancel = getattr(self.policy, "cancel", None)
        if cancel is not None:
            cancel(req.task_id, now_s=t)
        return False

    def _offer(self, t: float, *, new_only: bool) -> None:
        """Tell the policy the cluster's power, then offer the waiting tasks."""
        self._observe(t)
        self._now = t
        self.queue.offer(t, self._carry_out, new_only=new_only)

    # -- scaling -----------------------------------------------------------------------
    def _apply_drain(self, nid: str, t: float) -> bool:
        n = self._by_id.get(nid)
        if n is None or n.state is not NodeState.ON:
            self._invalid(f"t={t:g}: drain {nid}: node is {'unknown' if n is None else n.state.value}")
            return False
        self._set_state(n, NodeState.DRAINING, t)
        self.policy.set_node_state(nid, NodeState.DRAINING, now_s=t)
        return True

    def _apply_power_off(self, nid: str, t: float) -> bool:
        n = self._by_id.get(nid)
        if n is None or n.state not in (NodeState.ON, NodeState.DRAINING) or n.running:
            why = "unknown" if n is None else ("busy" if n.running else n.state.value)
            self._invalid(f"t={t:g}: power off {nid}: node is {why}")
            return False
        self._set_state(n, NodeState.OFF, t)
        self.policy.set_node_state(nid, NodeState.OFF, now_s=t)
        return True

    def _apply_power_on(self, nid: str, t: float) -> bool:
        n = self._by_id.get(nid)
        if n is None or n.state is not NodeState.OFF:
            self._invalid(f"t={t:g}: power on {nid}: node is {'unknown' if n is None else n.state.value}")
            return False
        self._set_state(n, NodeState.BOOTING, t)
        n.boots += 1
        self.policy.set_node_state(nid, NodeState.BOOTING, now_s=t)
        self._push(t + n.nt.boot_s, _BOOT, -1, n.idx)
        return True

    def _tick(self, t: float) -> bool:
        """Ask the policy for a scaling plan and apply it; True if something changed."""
        self._ticks += 1
        self._observe(t)
        plan: ScalePlan = self.policy.plan_scaling(now_s=t, pending=self.queue.pending())
        changed = False
        for nid in plan.drain:
            changed |= self._apply_drain(nid, t)
        for nid in plan.power_off:
            changed |= self._apply_power_off(nid, t)
        for nid in plan.power_on:
            changed |= self._apply_power_on(nid, t)
        if changed:
            self._activity(t)
        return changed

    # -- events ------------------------------------------------------------------------
    def _finish(self, i: int, k: int, t: float) -> None:
        """Task ``i`` ends on node ``k``: free its room, settle its energy, tell the policy."""
        n = self._nodes[k]
        task = self.tasks[i]
        n.advance(t)
        dyn, attr = n.marks(task.cpus, task.gpus)
        self._e_task[i] = dyn - self._e_task[i]
        self._a_task[i] = attr - self._a_task[i]
        n.running.discard(i)
        n.cpus_used -= task.cpus
        n.gpus_used -= task.gpus
        if task.gpus > 0:
            n.gpu_dyn_w -= self._gdyn[i]
        if not n.running:
            n.cpus_used = 0.0
            n.gpus_used = 0.0
            n.gpu_dyn_w = 0.0
        self._used_c[k] = n.cpus_used
        self._used_g[k] = n.gpus_used
        old = n.power
        self._power_changed(t, n.recompute() - old)
        self._end_s[i] = t
        self.policy.task_finished(task.task_id, now_s=t, energy_j=self._a_task[i], duration_s=t - self._start_s[i])
        lim = self._limit[i]
        if lim == lim:  # it ran at a limit the policy set: report one unit of work
            tf = self._gtf[i]
            busy = self._gdyn[i] / task.gpus + n.nt.gpu_idle_w
            obs = getattr(self.policy, "observe_gpu_work", None)
            if obs is not None:
                obs(task.group, n.node_id, limit_w=lim, time_s=tf, energy_j=busy * tf)
        self._done += 1
        if self._bar is not None and self._done % 5000 == 0:
            self._bar.update(5000)

    def _boot_done(self, k: int, t: float) -> bool:
        n = self._nodes[k]
        if n.state is not NodeState.BOOTING:
            return False
        self._set_state(n, NodeState.ON, t)
        n.on_since = t
        self.policy.set_node_state(n.node_id, NodeState.ON, now_s=t)
        return True

    def _pop_events(self, t: float) -> tuple[bool, bool, bool]:
        """Handle every event at time ``t``: (capacity freed, a retry is due, a tick is due)."""
        heap = self._heap
        freed = retry = tick = False
        while heap and heap[0][0] <= t:
            _, kind, _, i, k = heapq.heappop(heap)
            if kind == _FINISH:
                self._finish(i, k, t)
                freed = True
            elif kind == _BOOT:
                freed |= self._boot_done(k, t)
            elif kind == _RETRY:
                self._retry_times.discard(t)
                retry = True
            else:
                self._tick_times.discard(t)
                tick = True
        return freed, retry, tick

    def _arrivals(self, t: float) -> bool:
        """Queue the tasks submitted by ``t``; True if any."""
        tasks = self.tasks
        ai = self._ai
        while ai < len(tasks) and tasks[ai].submit_s <= t:
            self.queue.push(self._request(ai), item=ai)
            ai += 1
        new = ai > self._ai
        self._ai = ai
        return new

    def _step(self, t: float) -> None:
        """Every event at ``t``, the arrivals, one offer and a scaling tick."""
        freed, retry, tick = self._pop_events(t)
        new = self._arrivals(t)
        if freed or new or retry:
            self._activity(t)  # a retry time can make a waiting task demand again
        if freed:
            self.queue.reopen()
        if freed or retry or new:
            self._offer(t, new_only=not (freed or retry))
        self._schedule_retry(t)
        if tick:
            was_dirty = self._dirty
            self._dirty = False
            self._tick(t)  # a change calls _activity, which schedules the next ticks
            self._timer(t)
            if len(self.queue) and was_dirty:
                # tick again while waiting tasks might be helped; a tick that found
                # nothing new and changed nothing stops the ticking until the next change
                self._schedule_tick(t + self.tick_iv * 0.5)

    # -- main loop ---------------------------------------------------------------------
    def _setup(self) -> None:
        cl = self.cluster
        nodes = [_Node(k, sn.node_id, cl.node_types[sn.node_type]) for k, sn in enumerate(cl.nodes)]
        self._nodes = nodes
        self._by_id = {n.node_id: n for n in nodes}
        self._cap_c = np.array([n.cpus for n in nodes], dtype=float)
        self._cap_g = np.array([n.gpus for n in nodes], dtype=float)
        self._used_c = np.zeros(len(nodes))
        self._used_g = np.zeros(len(nodes))
        self._on_mask = np.zeros(len(nodes), dtype=bool)
        ntasks = len(self.tasks)
        nan = float("nan")
        self._start_s = array("d", [nan]) * ntasks
        self._end_s = array("d", [nan]) * ntasks
        self._node_of = array("l", [-1]) * ntasks
        self._e_task = array("d", [0.0]) * ntasks
        self._a_task = array("d", [0.0]) * ntasks
        self._gdyn = array("d", [0.0]) * ntasks  # GPU watts above idle of each task
        self._gtf = array("d", [1.0]) * ntasks   # its run-time factor at its GPU power limit
        self._limit = array("d", [nan]) * ntasks  # the limit the policy set (NaN: none)
        self._limited = 0
        self._heap: list = []
        self._seq = 0
        self._tick_times: set[float] = set()
        self._retry_times: set[float] = set()
        self.queue = AdmissionQueue(self.policy.decide, room=self._room)
        self._now = 0.0
        self._ai = 0
        self._done = 0
        self._total_w = self._peak_w = self._last_change_t = self._viol_s = self._excess_j = 0.0
        self._tl_t = array("d")
        self._tl_w = array("d")
        self._placements = self._rejected = self._ticks = 0
        self._invalid_msgs: list[str] = []
        self._n_invalid = 0
        self._dirty = True
        self._bar = None
        if self.progress and ntasks >= 20000 and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=ntasks, desc=self.policy_name, unit="task", file=sys.stderr, leave=False)

    def _add_nodes(self) -> None:
        """Every node in the initial state, told to the policy; a first tick at time 0."""
        st0 = self.initial_state
        for n in self._nodes:
            n.state = st0
            self._on_mask[n.idx] = st0 is NodeState.ON
            self._power_changed(0.0, n.recompute())
            self.policy.add_node(n.node_id, n.nt.name, state=st0, now_s=0.0)
            if st0 is NodeState.BOOTING:
                n.boots += 1
                self._push(n.nt.boot_s, _BOOT, -1, n.idx)
        self._activity(0.0)
        self._schedule_tick(0.0)  # a first plan at time 0 (e.g. to shed load over a power budget)

    def run(self) -> SimResult:
        """Simulate until the last task ended (or was rejected)."""
        wall0 = time.perf_counter()
        self._setup()
        self._add_nodes()
        tasks = self.tasks
        ntasks = len(tasks)
        heap = self._heap
        last_t = 0.0
        while True:
            next_arr = tasks[self._ai].submit_s if self._ai < ntasks else math.inf
            t = min(next_arr, heap[0][0] if heap else math.inf)
            if t == math.inf:
                break
            self._step(t)
            last_t = t
            if self._done + self._rejected >= ntasks and self._ai >= ntasks:
                break  # the run ends when the last task ends
        if self._bar is not None:
            self._bar.close()
        return self._result(last_t, time.perf_counter() - wall0)

    def _result(self, end_t: float, wall_s: float) -> SimResult:
        for n in self._nodes:
            n.advance(end_t)
        b = self.budget_w
        if b is not None and self._total_w > b + 1e-6 and end_t > self._last_change_t:
            self._viol_s += end_t - self._last_change_t
            self._excess_j += (self._total_w - b) * (end_t - self._last_change_t)
        if self.record_timeline and (not self._tl_t or self._tl_t[-1] < end_t):
            self._tl_t.append(end_t)
            self._tl_w.append(self._total_w)
        energies = [NodeEnergy(n.node_id, n.nt.name, n.e_dyn, n.e_idle, n.e_boot, n.e_off, n.boots)
                    for n in self._nodes]
        return SimResult(
            policy=self.policy_name, end_s=end_t, nodes=energies, start_s=self._start_s, end_s_task=self._end_s,
            node_of_task=self._node_of, energy_task_j=self._e_task, attributed_task_j=self._a_task,
            timeline_t=self._tl_t, timeline_w=self._tl_w, peak_power_w=self._peak_w, budget_w=self.budget_w,
            budget_violation_s=self._viol_s, budget_excess_j=self._excess_j, placements=self._placements,
            defers=self.queue.deferrals, rejected=self._rejected, ticks=self._ticks, invalid=self._invalid_msgs,
            wall_s=wall_s, gpu_limited_tasks=self._limited,
        )
