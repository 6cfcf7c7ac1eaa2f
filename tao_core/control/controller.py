"""The controller: one object that places, defers and rejects tasks and plans how many
nodes of each type are on, under power and energy budgets. Used unchanged by the
simulator and the Ray and Dask adapters (see ``docs/architecture.md``).

Capacity: a PLACE reserves the task's CPUs and GPUs on its node until ``task_finished``
or ``cancel``. A DEFER reserves nothing. Per-node state lives in numpy arrays
(:mod:`tao_core.control.state`) and each decision scores every node with
:class:`tao_core.control.penalty.Scorer`.

Units: seconds, joules, watts, kelvin.
"""
from __future__ import annotations

import heapq
import logging
import math
from collections import OrderedDict
from dataclasses import dataclass, fields
from typing import Any, Callable, Optional, Sequence

import numpy as np

from tao_core.carbon import CarbonSignal
from tao_core.control import scaling
from tao_core.control.budget import PowerLoop
from tao_core.control.carbon_shift import CarbonShifter
from tao_core.control.config import ControllerConfig
from tao_core.control.model import ModelSnapshot, NodeModel
from tao_core.control.penalty import Scorer
from tao_core.control.power_limits import PowerLimitLearner
from tao_core.control.predict import TaskPredictor
from tao_core.control.state import BOOTING, CODE_STATE, DRAINING, OFF, ON, STATE_CODE, NodeTable
from tao_core.control.types import (
    Action,
    Alternative,
    Decision,
    DecisionEvent,
    NodeState,
    NodeType,
    ScalePlan,
    TaskRequest,
)
from tao_core.errors import InputError

log = logging.getLogger(__name__)

#: seconds between asks of a task waiting for a booting node, once the predicted ends of
#: reserved work have all passed (it may run sooner on a node that is on when room frees up)
BOOT_RECHECK_S = 5.0
_INF = float("inf")

_DECISION_DEFAULTS = {f.name: f.default for f in fields(Decision)}


def _place_decision(task_id: str, node_id: str, cost: float, energy_j: float, duration_s: float,
                    alternatives: tuple, warning: Optional[str]) -> Decision:
    """A PLACE :class:`Decision`, built without the frozen dataclass's per-field
    ``object.__setattr__`` calls (about 2 us of the hot path); equal to
    ``Decision(task_id, Action.PLACE, node_id=..., ...)``."""
    d = object.__new__(Decision)
    vals = _DECISION_DEFAULTS.copy()  # fields added to Decision later keep their defaults
    vals["task_id"] = task_id
    vals["action"] = Action.PLACE
    vals["node_id"] = node_id
    vals["cost"] = cost
    vals["predicted_energy_j"] = energy_j
    vals["predicted_duration_s"] = duration_s
    vals["reason"] = "lowest penalty"
    vals["alternatives"] = alternatives
    vals["warning"] = warning
    object.__setattr__(d, "__dict__", vals)
    return d


@dataclass(slots=True)
class _Task:
    task_id: str
    group: str
    job: Optional[str]
    node_id: str
    ti: int
    cpus: float
    gpus: float
    placed_s: float
    pred_dur_s: float
    pred_energy_j: float  #: marginal energy predicted at placement (penalty's E), J
    model_attr_j: float   #: uncorrected model prediction of the task's attributed energy, J
    end_s: float          #: predicted end, s
    started_s: Optional[float] = None


class Controller:
    """Energy-aware placement, deferral, rejection and scaling. See the module docstring
    and ``README.md`` (section "The controller") for the penalty and every knob."""

    def __init__(self, node_types: Sequence[NodeType], config: Optional[ControllerConfig] = None,
                 event_sink: Optional[Callable[[DecisionEvent], None]] = None) -> None:
        if not node_types:
            raise InputError("node_types: give at least one NodeType")
        self.config = cfg = config if config is not None else ControllerConfig()
        self.event_sink = event_sink
        self.types: list[NodeType] = list(node_types)
        self.type_index: dict[str, int] = {}
        for k, t in enumerate(self.types):
            if t.name in self.type_index:
                raise InputError(f"node_types: name {t.name!r} appears twice; give each type a unique name")
            self.type_index[t.name] = k
        self.models = [NodeModel(t, prior=cfg.calibration_prior) for t in self.types]
        self._build_type_tables()
        self.nodes = NodeTable()
        self.scorer = Scorer(self.nodes, self._curves, allow_wake=cfg.wake_in_decide)
        self.predictor = TaskPredictor(self._speed_k, default_duration_s=cfg.default_duration_s,
                                       alpha=cfg.prediction_alpha, max_groups=cfg.max_groups)
        self.loop = PowerLoop(cfg.it_budget_w, kp=cfg.pi_kp, ki=cfg.pi_ki, target_headroom=cfg.target_headroom,
                              margin_max=cfg.margin_max, ratio_halflife_s=cfg.ratio_halflife_s)
        self._tasks: dict[str, _Task] = {}
        self._node_tasks: dict[str, set[str]] = {}
        self._ends: list[tuple[float, str]] = []  # heap of (predicted end, task id)
        self._p_model = 0.0  # modeled cluster IT watts (sum of nodes' p_node)
        self._p_static = 0.0  # its static part (sum of nodes' p_static)
        self._n_not_on = 0  # nodes not ON
        self._any_temp = False
        self._any_cap = False
        self.job_spent_j: dict[str, float] = {}
        self._job_inflight_j: dict[str, float] = {}
        self._deferred: "OrderedDict[str, float]" = OrderedDict()
        self._wake_requests: "OrderedDict[str, float]" = OrderedDict()
        #: task id -> when its wait for a node that is OFF or BOOTING runs out, s; a task asking
        #: again after that goes to a node that is on when one has room (no second wait)
        self._wake_waits: dict[str, float] = {}
        self._arr_rate_c = 0.0  # CPUs asked per second (exponentially weighted)
        self._arr_rate_g = 0.0
        self._arr_t = -_INF
        hl = cfg.arrival_halflife_s
        self._arr_tau = hl / math.log(2.0) if hl > 0 else 1e-9
        self._last_margin_event = 0.0
        self._last_fit_s = [-_INF] * len(self.types)
        self.counters = {"place": 0, "defer": 0, "reject": 0, "warn": 0}
        self.carbon: Optional[CarbonShifter] = None
        self.gpu_limits: dict[str, PowerLimitLearner] = {}  # by node type name

    def _build_type_tables(self) -> None:
        """Per-node-type arrays and lists the hot path reads (from ``types`` and ``models``)."""
        ts = self.types
        K = len(ts)
        self._speed_k = np.array([t.speed for t in ts], dtype=float)
        self._cpus_k = np.array([t.cpus for t in ts], dtype=float)
        self._gpus_k = np.array([t.gpus for t in ts], dtype=float)
        self._inv_gpus_k = np.where(self._gpus_k > 0, 1.0 / np.maximum(self._gpus_k, 1e-12), 0.0)
        self._boot_s_k = np.array([t.boot_s for t in ts], dtype=float)
        self._boot_w_k = np.array([t.boot_power_w for t in ts], dtype=float)
        self._off_w_k = np.array([t.off_w for t in ts], dtype=float)
        self._gpu_idle_k = np.array([t.gpu_idle_w for t in ts], dtype=float)
        self._gpu_dyn_k = np.array([t.gpu_busy_w - t.gpu_idle_w for t in ts], dtype=float)
        self._curves = np.array([m.cpu_curve_w for m in self.models], dtype=float).reshape(K, 11)
        self._curve_rows = [list(map(float, r)) for r in self._curves]
        self._boot_j_k = [t.boot_energy_j for t in ts]
        self._gpu_idle_total_k = [float(t.gpus * t.gpu_idle_w) for t in ts]
        self._boot_w_list = [float(t.boot_power_w) for t in ts]
        self._off_w_list = [float(t.off_w) for t in ts]

    def add_node_type(self, node_type: NodeType) -> None:
        """Declare a node type after construction (a worker or node of a new kind joined).
        Nodes, reservations and what was learned so far are kept."""
        if node_type.name in self.type_index:
            raise InputError(f"node_type: {node_type.name!r} is already declared; give each type a unique name")
        self.type_index[node_type.name] = len(self.types)
        self.types.append(node_type)
        self.models.append(NodeModel(node_type, prior=self.config.calibration_prior))
        self._last_fit_s.append(-_INF)
        self._build_type_tables()
        self.scorer.set_curves(self._curves)
        self.predictor.add_type(node_type.speed)

    # ------------------------------------------------------------------ helpers
    def _type_of(self, name: str) -> int:
        k = self.type_index.get(name)
        if k is None:
            raise InputError(f"node_type: unknown type {name!r}; known: {sorted(self.type_index)}")
        return k

    def _idx(self, node_id: str) -> int:
        i = self.nodes.index.get(node_id)
        if i is None:
            raise InputError(f"node_id: unknown node {node_id!r}; add it first with add_node")
        return i

    def _refresh_node(self, i: int, state_changed: bool = True) -> None:
        """Recompute the modeled watts of row ``i`` from its state and reserved load, and
        the scorer's cached rows."""
        nt = self.nodes
        k = nt.ti.item(i)
        st = nt.state.item(i)
        gd = nt.gpu_dyn.item(i)
        gs = self._gpu_idle_total_k[k] + nt.used_g.item(i) * gd
        inv10 = nt.inv10.item(i)
        used_c = nt.used_c.item(i)
        x = used_c * inv10
        if x < 0.0:
            x = 0.0
        j = int(x)
        if j > 9:
            j = 9
        curve = self._curve_rows[k]
        x -= j
        p_on = curve[j] + (curve[j + 1] - curve[j]) * (x if x < 1.0 else 1.0) + gs
        if st == ON or st == DRAINING:
            p = p_on
            ps = curve[0] + self._gpu_idle_total_k[k]
        elif st == BOOTING:
            p = ps = self._boot_w_list[k]
        else:
            p = ps = self._off_w_list[k]
        self._p_model += p - nt.p_node.item(i)
        self._p_static += ps - nt.p_static.item(i)
        nt.gpu_static[i] = gs
        nt.p_on[i] = p_on
        nt.p_node[i] = p
        nt.p_static[i] = ps
        if state_changed:
            if st == OFF:
                nt.wake_j[i] = self._boot_j_k[k]
                nt.boot_wait[i] = self._boot_s_k[k]
            else:
                nt.wake_j[i] = 0.0
                nt.boot_wait[i] = 0.0
        self.scorer.row_changed(i, st, used_c, nt.free_c.item(i), nt.free_g.item(i), inv10, k * 11, gs, gd, p_on, p)

    def _emit(self, ev: DecisionEvent) -> None:
        sink = self.event_sink
        if sink is None:
            return
        try:
            sink(ev)
        except Exception:  # a broken sink must not stop scheduling
            log.warning("controller event sink raised; event dropped", exc_info=True)

    def budget_state(self, job: Optional[str] = None) -> dict[str, Any]:
        """The budget state: predicted and measured cluster IT watts, budget, margin,
        measured/modeled ratio, and the job's energy spent and allowed (joules)."""
        lp = self.loop
        d: dict[str, Any] = {
            "power_w": float(self.predicted_power_w()),
            "measured_power_w": lp.measured_w,
            "power_budget_w": self.config.power_budget_w,
            "budget_scope": self.config.budget_scope,
            "it_budget_w": lp.budget_w,
            "admission_margin": float(lp.margin),
            "model_ratio": float(lp.ratio),
            "static_scale": float(lp.static_scale),
            "dynamic_scale": float(lp.dynamic_scale),
        }
        if job is not None:
            d["job"] = job
            d["job_spent_j"] = float(self.job_spent_j.get(job, 0.0) + self._job_inflight_j.get(job, 0.0))
            d["job_budget_j"] = self.config.job_budgets_j.get(job)
        return d

    # --------------------------------------------------------- membership
    def add_node(self, node_id: str, node_type: str, *, state: NodeState = NodeState.ON, now_s: float = 0.0) -> None:
        """Add a node of a declared type in ``state``."""
        if node_id in self.nodes.index:
            raise InputError(f"node_id: node {node_id!r} is already known; remove it first or use another id")
        k = self._type_of(node_type)
        state = NodeState(state)
        nt = self.nodes
        i = nt.append(node_id)
        t = self.types[k]
        nt.ti[i] = k
        nt.off11[i] = k * 11
        nt.cpus[i] = t.cpus
        nt.gpus[i] = t.gpus
        nt.inv10[i] = 10.0 / t.cpus
        nt.used_c[i] = 0.0
        nt.used_g[i] = 0.0
        nt.free_c[i] = t.cpus
        nt.free_g[i] = t.gpus
        nt.p_node[i] = 0.0
        nt.p_static[i] = 0.0
        nt.gpu_dyn[i] = self._gpu_dyn_k[k]
        nt.idle_w[i] = self.models[k].idle_w
        nt.state[i] = STATE_CODE[state]
        nt.ready_at[i] = now_s + t.boot_s if state == NodeState.BOOTING else -_INF
        nt.busy_until[i] = -_INF
        nt.temp_ratio[i] = 1.0
        cap = self.config.node_caps_w.get(node_id)
        nt.cap_w[i] = _INF if cap is None else float(cap)
        if cap is not None:
            self._any_cap = True
        nt.idle_since[i] = now_s
        nt.on_since[i] = now_s
        nt.measured_w[i] = np.nan
        nt.util_obs[i] = np.nan
        nt.n_tasks[i] = 0
        nt.cap_block[i] = 0
        self._node_tasks[node_id] = set()
        self.scorer.invalidate()
        self._refresh_node(i)
        if state != NodeState.ON:
            self._n_not_on += 1

    def remove_node(self, node_id: str, *, now_s: float) -> None:
        """Forget a node. Reservations on it are dropped (their tasks are gone with it)."""
        i = self._idx(node_id)
        for tid in list(self._node_tasks.get(node_id, ())):
            self._release(tid, train=False, now_s=now_s)
        self._p_model -= float(self.nodes.p_node[i])
        self._p_static -= float(self.nodes.p_static[i])
        if int(self.nodes.state[i]) != ON:
            self._n_not_on -= 1
        self.nodes.remove(node_id)
        self.scorer.invalidate()
        self._node_tasks.pop(node_id, None)
        self._wake_requests.pop(node_id, None)

    def set_node_state(self, node_id: str, state: NodeState, *, now_s: float) -> None:
        """Tell the controller a node's power state changed. A node set OFF loses its
        reservations (its tasks did not survive); a node set ON becomes placeable."""
        i = self._idx(node_id)
        nt = self.nodes
        new = STATE_CODE[NodeState(state)]
        old = int(nt.state[i])
        if new == old:
            return
        if new == OFF:
            for tid in list(self._node_tasks.get(node_id, ())):
                self._release(tid, train=False, now_s=now_s)
        nt.state[i] = new
        k = int(nt.ti[i])
        if new == BOOTING:
            nt.ready_at[i] = now_s + self._boot_s_k[k]
        else:
            nt.ready_at[i] = -_INF
        if new == ON and old in (OFF, BOOTING):
            nt.on_since[i] = now_s
            nt.idle_since[i] = now_s
        if new != OFF:
            self._wake_requests.pop(node_id, None)
        self._n_not_on += (new != ON) - (old != ON)
        self._refresh_node(i)

    def node_state(self, node_id: str) -> NodeState:
        return CODE_STATE[int(self.nodes.state[self._idx(node_id)])]

    # ----------------------------------------------------------- telemetry
    def observe_node(self, node_id: str, *, now_s: float, power_w: Optional[float] = None,
                     temperature_k: Optional[float] = None, utilization: Optional[float] = None) -> None:
        """One node's telemetry: wall watts, temperature (K), CPU utilization (0..1). Any
        subset; a missing temperature leaves the last one (initially T_ref)."""
        i = self.nodes.index.get(node_id)
        if i is None:
            return
        nt = self.nodes
        if temperature_k is not None and math.isfinite(temperature_k) and temperature_k > 0:
            nt.temp_ratio[i] = temperature_k / self.config.t_ref_k
            self._any_temp = True
        if utilization is not None and math.isfinite(utilization):
            nt.util_obs[i] = min(max(utilization, 0.0), 1.0)
        if power_w is not None and math.isfinite(power_w):
            nt.measured_w[i] = power_w
            if nt.cap_w[i] < _INF:
                nt.cap_block[i] = 1 if power_w >= nt.cap_w[i] else 0
            if self.config.calibrate and int(nt.state[i]) in (ON, DRAINING):
                k = int(nt.ti[i])
                u = nt.util_obs[i] if utilization is not None else nt.used_c[i] / nt.cpus[i]
                m = self.models[k]
                m.add_sample(float(u), float(power_w - nt.gpu_static[i]))
                if m.due(self.config.calibration_every) and (
                        now_s - self._last_fit_s[k] >= self.config.calibration_min_interval_s):
                    self._last_fit_s[k] = now_s
                    self._apply_fit(k)

    def _apply_fit(self, k: int) -> None:
        m = self.models[k]
        self._curves[k] = m.fit()
        self._curve_rows[k] = list(map(float, self._curves[k]))
        self.scorer.set_curves(self._curves)
        nt = self.nodes
        rows = np.flatnonzero(nt.ti == k)
        nt.idle_w[rows] = m.idle_w
        self._refresh_rows(rows)

    def _refresh_rows(self, rows: np.ndarray) -> None:
        """Vectorised :meth:`_refresh_node` for many rows (after a curve refit)."""
        nt = self.nodes
        if rows.size == 0:
            return
        k = nt.ti[rows]
        st = nt.state[rows]
        gidle = np.asarray(self._gpu_idle_total_k)[k]
        gs = gidle + nt.used_g[rows] * nt.gpu_dyn[rows]
        x = np.clip(nt.used_c[rows] * nt.inv10[rows], 0.0, 10.0)
        j = np.minimum(x.astype(np.int64), 9)
        f = np.minimum(x - j, 1.0)
        c = self._curves
        p_on = c[k, j] + (c[k, j + 1] - c[k, j]) * f + gs
        on = (st == ON) | (st == DRAINING)
        other = np.where(st == BOOTING, self._boot_w_k[k], self._off_w_k[k])
        nt.gpu_static[rows] = gs
        nt.p_on[rows] = p_on
        nt.p_node[rows] = np.where(on, p_on, other)
        nt.p_static[rows] = np.where(on, c[k, 0] + gidle, other)
        self._p_model = float(nt.p_node.sum())
        self._p_static = float(nt.p_static.sum())
        self.scorer.invalidate()

    def observe_cluster_power(self, *, now_s: float, power_w: float) -> None:
        """Measured cluster IT watts, for the closed loop."""
        if power_w is None or not math.isfinite(power_w):
            return
        before = self.loop.margin
        m = self.loop.observe(now_s, float(power_w), self._p_static, self._p_model - self._p_static)
        if self.event_sink is not None and self.config.emit_events and abs(m - self._last_margin_event) >= 0.01:
            self._last_margin_event = m
            self._emit(DecisionEvent(t_s=now_s, kind="budget-correction", subject="cluster",
                                     reason=f"admission margin {before:.3f} -> {m:.3f}",
                                     budget=self.budget_state()))

    def fitted_models(self) -> dict[str, ModelSnapshot]:
        """Declared and fitted CPU curves of every node type."""
        return {m.name: m.snapshot() for m in self.models}

    # --------------------------------------------------------------- tasks
    def arrival_rate(self, now_s: float) -> tuple[float, float]:
        """Recent demand: (CPUs asked per second, GPUs asked per second), an exponentially
        weighted rate with half-life ``arrival_halflife_s``."""
        if self._arr_t == -_INF:
            return 0.0, 0.0
        f = math.exp(-max(0.0, now_s - self._arr_t) / self._arr_tau)
        return self._arr_rate_c * f, self._arr_rate_g * f

    def decide(self, task: TaskRequest, *, now_s: float) -> Decision:
        """Place, defer or reject one task. See the class docs for the semantics."""
        cfg = self.config
        tid = task.task_id
        cpus = float(task.cpus)
        gpus = float(task.gpus)
        if not (cpus >= 0 and gpus >= 0):
            raise InputError(f"task {tid!r}: cpus and gpus must be >= 0")
        if tid in self._tasks:
            t = self._tasks[tid]
            return Decision(tid, Action.PLACE, node_id=t.node_id, predicted_energy_j=t.pred_energy_j,
                            predicted_duration_s=t.pred_dur_s, reason="already placed")
        if self.carbon is not None and task.deferrable and task.deadline_s is not None:
            # before the arrival-rate update: work planned for later is not demand now
            shifted = self._carbon_shift(task, now_s)
            if shifted is not None:
                return shifted
        if tid not in self._deferred:  # a new arrival (a deferred task asking again is not)
            tau = self._arr_tau
            at = self._arr_t
            if now_s > at:
                f = math.exp((at - now_s) / tau)
                self._arr_rate_c = self._arr_rate_c * f + cpus / tau
                self._arr_rate_g = self._arr_rate_g * f + gpus / tau
                self._arr_t = now_s
            else:
                self._arr_rate_c += cpus / tau
                self._arr_rate_g += gpus / tau
        job = task.job
        budgets = cfg.job_budgets_j
        if job is not None and job in budgets:
            spent = self.job_spent_j.get(job, 0.0) + self._job_inflight_j.get(job, 0.0)
            if spent >= budgets[job] and cfg.job_budget_mode == "deny":
                return self._reject(task, now_s, f"job {job!r} energy budget spent: {spent:.1f} J of {budgets[job]:.1f} J")
        nt = self.nodes
        if nt.n == 0:
            return self._defer(task, now_s, None, "no nodes", None)
        dur_k, edur_k = self.predictor.predict(task.group, task.duration_hint_s)
        lp = self.loop
        ratio = lp.dynamic_scale
        any_not_on = self._n_not_on > 0
        share_k = None
        if any_not_on:
            share_k = cpus / self._cpus_k
            if gpus > 0:
                share_k = np.maximum(share_k, gpus * self._inv_gpus_k)
        budget = lp.effective_budget_w
        p_now = lp.predict_w(self._p_static, self._p_model - self._p_static)
        scorer = self.scorer
        sc = scorer.score(cpus, gpus, dur_k, edur_k, share_k, now_s, cfg.lambda_j_per_s, cfg.mu, p_now, ratio,
                          budget, cfg.scale_down, any_not_on, self._any_temp, self._any_cap)
        if any_not_on and ((not task.deferrable) or (
                task.deadline_s is not None and task.deadline_s - now_s <= 2.0 * float(dur_k.max()))):
            sc.cost[nt.state != ON] = _INF  # urgent: only nodes that can start it now
        elif any_not_on and tid in self._wake_waits and now_s >= self._wake_waits[tid] - 1e-9:
            # it already waited once for a node to boot: an ON node with room now wins
            on_cost = np.where(nt.state == ON, sc.cost, _INF)
            if bool((on_cost < _INF).any()):
                sc.cost[nt.state != ON] = _INF
        j = scorer.choose(sc, power_now_w=p_now, ratio=ratio, budget_w=budget)
        cj = sc.cost.item(j) + sc.offset
        if cj == _INF:
            return self._defer(task, now_s, None, self._defer_reason(task, budget), None, sc=sc)
        st = nt.state.item(j)
        node_id = nt.ids[j]
        if st != ON:
            if st == OFF:
                self._wake_requests[node_id] = now_s
                self._wake_requests.move_to_end(node_id)
                until = now_s + float(self._boot_s_k[nt.ti[j]])
                reason = f"cheapest node {node_id} is off: waking it"
            else:
                until = float(nt.ready_at[j])
                reason = f"cheapest node {node_id} is booting"
            if tid not in self._wake_waits:
                if len(self._wake_waits) >= self.config.max_groups:
                    self._wake_waits.pop(next(iter(self._wake_waits)))
                self._wake_waits[tid] = until
            # reserved work ending before the boot may free room on a node that is on: ask
            # again at its next predicted end, or soon when the predicted ends have passed
            nxt = self._next_end()
            if nxt is not None:
                until = min(until, nxt if nxt > now_s else now_s + BOOT_RECHECK_S)
            return self._defer(task, now_s, until, reason, j, sc=sc)
        # job energy budget (warn mode, or deny when this task would overrun)
        energy = sc.energy_j.item(j)
        warning = None
        if job is not None and job in budgets:
            spent = self.job_spent_j.get(job, 0.0) + self._job_inflight_j.get(job, 0.0)
            if spent + energy > budgets[job]:
                msg = f"job {job!r} energy budget: {spent:.1f} J spent + {energy:.1f} J predicted > {budgets[job]:.1f} J"
                if cfg.job_budget_mode == "deny":
                    return self._reject(task, now_s, msg)
                warning = msg
        delay = sc.delay_s.item(j)  # on a node that is on: the run time
        return self._place(task, now_s, j, cpus, gpus, cj, energy, delay, sc.dp_w.item(j), ratio, delay, warning, sc)

    # ------------------------------------------------------------- carbon
    def set_carbon_signal(self, signal: Optional[CarbonSignal]) -> None:
        """Use ``signal`` (gCO2e/kWh on this controller's clock) to move deferrable tasks
        with a deadline to cleaner hours; None turns it off."""
        self.carbon = None if signal is None else CarbonShifter(
            signal, min_saving=self.config.carbon_min_saving, max_fill=self.config.carbon_max_fill)

    def _carbon_shift(self, task: TaskRequest, now_s: float) -> Optional[Decision]:
        """DEFER ``task`` to the cleanest start before its deadline when that start is
        ``carbon_min_saving`` cleaner than starting now; None to decide as usual.

        The run time used is the task's ``duration_hint_s``, else the longest run its group
        has had (after three finished), on the slowest node type; with neither the task is
        not shifted, since no deadline could be promised. The latest start leaves
        ``carbon_slack`` x that run time plus the longest boot time before the deadline."""
        cfg = self.config
        assert task.deadline_s is not None and self.carbon is not None
        ref = task.duration_hint_s if task.duration_hint_s and task.duration_hint_s > 0 else \
            self.predictor.longest_s(task.group)
        if ref is None:
            return None
        run_s = ref / float(self._speed_k.min())
        latest = task.deadline_s - run_s * (1.0 + cfg.carbon_slack) - float(self._boot_s_k.max(initial=0.0))
        nt = self.nodes
        plan = self.carbon.plan(task.task_id, now_s=now_s, latest_s=latest, run_s=run_s, cpus=float(task.cpus),
                                capacity_cpus=float(nt.cpus.sum()))
        if plan is None:
            return None
        start, mean, now_mean = plan
        return self._defer(task, now_s, start,
                           f"carbon: {mean:.0f} gCO2e/kWh from t={start:.0f} s against {now_mean:.0f} now", None)

    # -------------------------------------------------------- GPU power limits
    def enable_gpu_power_limits(self, node_type: str, limits_w: Sequence[float]) -> None:
        """Let the controller choose GPU power limits (watts, among ``limits_w``) for the
        GPUs of ``node_type``, learned per task group from measured time and energy."""
        self._type_of(node_type)
        self.gpu_limits[node_type] = PowerLimitLearner(limits_w, max_slowdown=self.config.gpu_max_slowdown,
                                                       lambda_j_per_s=self.config.lambda_j_per_s)

    def gpu_power_limit(self, group: str, node_id: str, *, now_s: float) -> Optional[float]:
        """The power limit in watts for the next unit of ``group``'s work on each GPU of
        ``node_id`` (None if limits are not enabled for its type). Under a power budget the
        limit's measured draw fits the headroom: idle watts plus the budget's free watts
        (and what the node's reserved GPUs are already counted for) shared by those GPUs."""
        i = self._idx(node_id)
        ntype = self.types[int(self.nodes.ti[i])]
        learner = self.gpu_limits.get(ntype.name)
        if learner is None:
            return None
        cap = None
        budget = self.loop.effective_budget_w
        if budget is not None and ntype.gpus > 0:
            # free watts under the budget, plus what the node's reserved GPUs are already
            # counted for above idle, shared by those GPUs (at least one)
            used = float(self.nodes.used_g[i])
            free = budget - self.loop.predict_w(self._p_static, self._p_model - self._p_static)
            counted = used * (ntype.gpu_busy_w - ntype.gpu_idle_w) * self.loop.dynamic_scale
            cap = ntype.gpu_idle_w + max(0.0, free + counted) / max(used, 1.0)
        limit = learner.next_limit(group, power_cap_w=cap)
        if self.event_sink is not None and self.config.emit_events:
            self._emit(DecisionEvent(t_s=now_s, kind="gpu-limit", subject=group, group=group, node_id=node_id,
                                     reason="exploring" if learner.exploring(group) else "least cost measured",
                                     budget=self.budget_state(None),
                                     detail={"limit_w": limit, "cap_w": cap, "node_type": ntype.name}))
        return limit

    def observe_gpu_work(self, group: str, node_id: str, *, limit_w: float, time_s: float, energy_j: float) -> None:
        """Report that one unit of ``group``'s work on a GPU of ``node_id`` took ``time_s``
        seconds and ``energy_j`` joules at ``limit_w`` watts."""
        ntype = self.types[int(self.nodes.ti[self._idx(node_id)])]
        learner = self.gpu_limits.get(ntype.name)
        if learner is not None:
            learner.observe(group, limit_w, time_s, energy_j)

    def _alternatives(self, sc: Any, exclude: int = -1) -> tuple[Alternative, ...]:
        k = self.config.alternatives
        if k <= 0 or sc is None:
            return ()
        cost = sc.cost
        n = cost.shape[0]
        if n > k:
            idx = np.argpartition(cost, k - 1)[:k]
            idx = idx[np.argsort(cost[idx])]
        else:
            idx = np.argsort(cost)
        ids = self.nodes.ids
        lp = self.loop
        b = lp.effective_budget_w
        p_now = lp.predict_w(self._p_static, self._p_model - self._p_static)
        out = []
        for i in idx.tolist():
            c = float(cost[i]) + sc.offset
            if b is not None and p_now + float(sc.dp_w[i]) * lp.dynamic_scale >= b:
                c = _INF
            if c < _INF:
                out.append(Alternative(ids[i], c, float(sc.energy_j[i]), float(sc.delay_s[i])))
        return tuple(out)

    def _place(self, task: TaskRequest, now_s: float, j: int, cpus: float, gpus: float, cost: float, energy: float,
               delay: float, dp_w: float, ratio: float, dur: float, warning: Optional[str], sc: Any) -> Decision:
        nt = self.nodes
        tid = task.task_id
        node_id = nt.ids[j]
        if self._wake_waits:
            self._wake_waits.pop(tid, None)
        cfg = self.config
        # before the reservation: sc.dp_w can be the scorer's cached row that it updates
        alts = self._alternatives(sc) if cfg.alternatives else ()
        node_cpus = nt.cpus.item(j)
        # uncorrected model prediction of the task's attributed energy: added watts plus its
        # capacity share of the node's idle watts, times the run time
        model_attr = (dp_w + nt.idle_w.item(j) * (cpus / node_cpus)) * dur
        end = now_s + dur
        self._tasks[tid] = _Task(tid, task.group, task.job, node_id, nt.ti.item(j), cpus, gpus, now_s, dur, energy,
                                 model_attr, end)
        self._node_tasks[node_id].add(tid)
        used = nt.used_c.item(j) + cpus
        nt.used_c[j] = used
        nt.free_c[j] = node_cpus - used
        if gpus:
            used = nt.used_g.item(j) + gpus
            nt.used_g[j] = used
            nt.free_g[j] = nt.gpus.item(j) - used
        nt.n_tasks[j] += 1
        if end > nt.busy_until.item(j):
            nt.busy_until[j] = end
        self._refresh_node(j, False)
        heapq.heappush(self._ends, (end, tid))
        if self._deferred:
            self._deferred.pop(tid, None)
        if task.job is not None:
            self._job_inflight_j[task.job] = self._job_inflight_j.get(task.job, 0.0) + energy
        self.counters["place"] += 1
        if self.event_sink is not None and cfg.emit_events:
            self._emit(DecisionEvent(t_s=now_s, kind="place", subject=tid, group=task.group, node_id=node_id,
                                     cost=cost, reason="lowest penalty", alternatives=alts,
                                     budget=self.budget_state(task.job),
                                     detail={"energy_j": energy, "delay_s": delay, "duration_s": dur,
                                             "added_w": dp_w * ratio, "cpus": cpus, "gpus": gpus,
                                             "job": task.job}))
            if warning is not None:
                self.counters["warn"] += 1
                self._emit(DecisionEvent(t_s=now_s, kind="warn", subject=task.job or tid, group=task.group,
                                         node_id=node_id, reason=warning, budget=self.budget_state(task.job)))
        elif warning is not None:
            self.counters["warn"] += 1
        return _place_decision(tid, node_id, cost, energy, dur, alts, warning)

    def _defer_reason(self, task: TaskRequest, budget: Optional[float]) -> str:
        nt = self.nodes
        room = (nt.free_c >= task.cpus - 1e-9) & (nt.free_g >= task.gpus - 1e-9) & (nt.state != DRAINING)
        if not self.config.wake_in_decide:
            room &= nt.state != OFF
        if not room.any():
            if not ((nt.cpus >= task.cpus) & (nt.gpus >= task.gpus)).any():
                return f"no node type has {task.cpus} CPUs and {task.gpus} GPUs"
            return "no free capacity"
        if budget is not None:
            return "power headroom short of the budget"
        return "every node with room would exceed its power cap"

    def _next_end(self) -> Optional[float]:
        h = self._ends
        tasks = self._tasks
        while h:
            end, tid = h[0]
            t = tasks.get(tid)
            if t is None or t.end_s != end:
                heapq.heappop(h)
                continue
            return end
        return None

    def _defer(self, task: TaskRequest, now_s: float, until: Optional[float], reason: str,
               j: Optional[int], sc: Any = None) -> Decision:
        if until is None:
            nxt = self._next_end()
            # retry when the earliest reserved work is predicted to end
            until = max(nxt, now_s) if nxt is not None else None
            if until is not None and until <= now_s:
                until = None
        self.counters["defer"] += 1
        dq = self._deferred
        if task.task_id in dq:
            dq.move_to_end(task.task_id)
        else:
            dq[task.task_id] = now_s
            if len(dq) > 100_000:
                dq.popitem(last=False)
        node_id = self.nodes.ids[j] if j is not None else None
        alts = self._alternatives(sc) if (self.config.alternatives and sc is not None) else ()
        if self.event_sink is not None and self.config.emit_events:
            self._emit(DecisionEvent(t_s=now_s, kind="defer", subject=task.task_id, group=task.group,
                                     node_id=node_id, reason=reason, alternatives=alts,
                                     budget=self.budget_state(task.job)))
        return Decision(task.task_id, Action.DEFER, node_id=node_id, defer_until_s=until, reason=reason,
                        alternatives=alts)

    def _reject(self, task: TaskRequest, now_s: float, reason: str) -> Decision:
        self.counters["reject"] += 1
        self._deferred.pop(task.task_id, None)
        self._wake_waits.pop(task.task_id, None)
        if self.event_sink is not None and self.config.emit_events:
            self._emit(DecisionEvent(t_s=now_s, kind="reject", subject=task.task_id, group=task.group,
                                     reason=reason, budget=self.budget_state(task.job)))
        return Decision(task.task_id, Action.REJECT, reason=reason)

    def task_started(self, task_id: str, *, now_s: float) -> None:
        """Confirms a PLACE: the task started running now."""
        t = self._tasks.get(task_id)
        if t is None or t.started_s is not None:
            return
        t.started_s = now_s
        end = now_s + t.pred_dur_s
        if end != t.end_s:
            t.end_s = end
            heapq.heappush(self._ends, (end, task_id))
            i = self.nodes.index.get(t.node_id)
            if i is not None and end > self.nodes.busy_until[i]:
                self.nodes.busy_until[i] = end

    def task_finished(self, task_id: str, *, now_s: float, energy_j: Optional[float] = None,
                      duration_s: Optional[float] = None) -> None:
        """Frees the task's capacity and trains the predictions. ``energy_j``: the task's
        attributed energy (its dynamic energy plus its share of the node's static power,
        as :mod:`tao_core.attribution` reports it), joules; ``duration_s``: its run time
        (default: now - start, or now - placement)."""
        t = self._tasks.get(task_id)
        if t is None:
            return
        if duration_s is None:
            duration_s = now_s - (t.started_s if t.started_s is not None else t.placed_s)
        ratio = None
        if energy_j is not None and math.isfinite(energy_j) and t.model_attr_j > 0:
            # compare like with like: scale the model's prediction to the measured run time
            pred = t.model_attr_j * (duration_s / t.pred_dur_s if t.pred_dur_s > 0 and duration_s > 0 else 1.0)
            ratio = energy_j / pred if pred > 0 else None
        self.predictor.observe(t.group, t.ti, duration_s=duration_s, energy_ratio=ratio)
        if t.job is not None:
            spent = energy_j if energy_j is not None and math.isfinite(energy_j) else t.pred_energy_j
            self.job_spent_j[t.job] = self.job_spent_j.get(t.job, 0.0) + float(spent)
        self._release(task_id, train=True, now_s=now_s)

    def cancel(self, task_id: str, *, now_s: float) -> None:
        """Frees a PLACE that never ran (or forgets a deferred task)."""
        self._deferred.pop(task_id, None)
        if task_id in self._tasks:
            self._release(task_id, train=False, now_s=now_s)

    def _release(self, task_id: str, *, train: bool, now_s: float) -> None:
        t = self._tasks.pop(task_id)
        h = self._ends
        if len(h) > 2 * len(self._tasks) + 64:  # drop stale heap entries, amortised O(1)
            tasks = self._tasks
            self._ends = [(x.end_s, x.task_id) for x in tasks.values()]
            heapq.heapify(self._ends)
        if t.job is not None:
            v = self._job_inflight_j.get(t.job, 0.0) - t.pred_energy_j
            if v <= 1e-9:
                self._job_inflight_j.pop(t.job, None)
            else:
                self._job_inflight_j[t.job] = v
        ts = self._node_tasks.get(t.node_id)
        if ts is not None:
            ts.discard(task_id)
        i = self.nodes.index.get(t.node_id)
        if i is None:
            return
        nt = self.nodes
        nt.used_c[i] = max(0.0, nt.used_c[i] - t.cpus)
        nt.used_g[i] = max(0.0, nt.used_g[i] - t.gpus)
        nt.free_c[i] = nt.cpus[i] - nt.used_c[i]
        nt.free_g[i] = nt.gpus[i] - nt.used_g[i]
        nt.n_tasks[i] -= 1
        if nt.n_tasks[i] <= 0:
            nt.n_tasks[i] = 0
            nt.used_c[i] = 0.0
            nt.used_g[i] = 0.0
            nt.free_c[i] = nt.cpus[i]
            nt.free_g[i] = nt.gpus[i]
            nt.busy_until[i] = -_INF
            nt.idle_since[i] = now_s
        elif t.end_s >= nt.busy_until.item(i):  # it held the latest end: find the next one
            tasks = self._tasks
            nt.busy_until[i] = max(tasks[x].end_s for x in ts) if ts else -_INF
        self._refresh_node(i, False)

    # ------------------------------------------------------------- scaling
    def plan_scaling(self, *, now_s: float, pending: Sequence[TaskRequest] = ()) -> ScalePlan:
        """Which nodes to boot, power off or drain now, given pending and running demand.
        The plan is applied to the controller's own view at once (power_on -> BOOTING,
        power_off -> OFF, drain -> DRAINING); the caller carries it out and calls
        ``set_node_state(node, ON)`` when a booted node is ready."""
        if self.carbon is not None and pending:
            pending = [t for t in pending if not self.carbon.waiting(t.task_id, now_s)]
        return scaling.plan(self, now_s, pending)

    # ------------------------------------------------------------ inspect
    @property
    def running(self) -> int:
        """Tasks holding a reservation."""
        return len(self._tasks)

    def reserved(self, node_id: str) -> tuple[float, float, int]:
        """(CPUs, GPUs, tasks) reserved on a node."""
        i = self._idx(node_id)
        nt = self.nodes
        return float(nt.used_c[i]), float(nt.used_g[i]), int(nt.n_tasks[i])

    def modeled_power_w(self) -> float:
        """Modeled cluster IT watts now (uncorrected)."""
        return self._p_model

    def predicted_power_w(self) -> float:
        """Cluster IT watts predicted by the calibrated model (static x a + dynamic x b)."""
        return self.loop.predict_w(self._p_static, self._p_model - self._p_static)
