"""The controller: one object that places, defers and rejects tasks and plans how many
nodes of each type are on, under power and energy budgets. Used unchanged, with one
configuration, by the simulator and the Ray and Dask adapters (see ``docs/architecture.md``).

Capacity: a PLACE reserves the task's CPUs and GPUs on its node until ``task_finished``
or ``cancel``. A DEFER reserves nothing. What the controller knows of the nodes lives in
a :class:`~tao_core.control.cluster.ClusterView` (``ctl.cluster``, public and read-only to
others); placed tasks in :class:`~tao_core.control.reservations.Reservations`; each
decision scores every node with :class:`tao_core.control.penalty.Scorer`.

A decision, in order: the admission rules (carbon shift, the job's energy budget, no
nodes), then scoring, restricting urgent tasks and tasks that already waited out a boot to
nodes that are on, choosing the cheapest node within the power budget, and one of the
constructors :meth:`Controller._place`, :meth:`Controller._defer`, :meth:`Controller._reject`.

Units: seconds, joules, watts, kelvin.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from collections import OrderedDict
from dataclasses import fields
from typing import Any, Callable, Optional, Sequence

import numpy as np

from tao_core.carbon import CarbonSignal
from tao_core.control import scaling
from tao_core.control.budget import PowerLoop
from tao_core.control.carbon_shift import CarbonShifter
from tao_core.control.cluster import ClusterView
from tao_core.control.config import ControllerConfig
from tao_core.control.forecast import ArrivalForecast
from tao_core.control.model import ModelSnapshot, NodeModel
from tao_core.control.penalty import Scores
from tao_core.control.power_limits import PowerLimitLearner
from tao_core.control.predict import TaskPredictor
from tao_core.control.reservations import Reservation, Reservations
from tao_core.control.state import DRAINING, OFF, ON, STATE_CODE, NodeTable
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
#: tasks that may wait for their settled energy at once (``task_finished(energy_pending=True)``)
MAX_SETTLING = 100_000
#: a task fits a node's window when at most this share of its run lies beyond the window
_WINDOW_SLACK = 0.05
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


class Controller:
    """Energy-aware placement, deferral, rejection and scaling. See the module docstring
    and ``README.md`` (section "The controller") for the penalty and every knob."""

    def __init__(self, node_types: Sequence[NodeType], config: Optional[ControllerConfig] = None,
                 event_sink: Optional[Callable[[DecisionEvent], None]] = None) -> None:
        if not node_types:
            raise InputError("node_types: give at least one NodeType")
        self.config = cfg = config if config is not None else ControllerConfig()
        self.event_sink = event_sink
        #: nodes and node types as the controller sees them (read them, do not change them)
        self.cluster = ClusterView(node_types, calibration_prior=cfg.calibration_prior,
                                   allow_wake=cfg.wake_in_decide, node_caps_w=cfg.node_caps_w,
                                   idle_timeout_s=cfg.idle_timeout_s if cfg.scale_down else math.inf,
                                   min_idle_timeout_s=cfg.min_idle_timeout_s, wake_tail_cap_s=cfg.boot_amortize_s)
        self.scorer = self.cluster.scorer
        self.reservations = Reservations()
        self.predictor = TaskPredictor(self.cluster.type_speed, default_duration_s=cfg.default_duration_s,
                                       alpha=cfg.prediction_alpha, max_groups=cfg.max_groups)
        self.loop = PowerLoop(cfg.it_budget_w, kp=cfg.pi_kp, ki=cfg.pi_ki, target_headroom=cfg.target_headroom,
                              margin_max=cfg.margin_max, ratio_halflife_s=cfg.ratio_halflife_s)
        self._deferred: "OrderedDict[str, float]" = OrderedDict()
        #: tasks finished with their energy still to settle (``energy_pending``), oldest first
        self._settling: "OrderedDict[str, tuple[Reservation, float]]" = OrderedDict()
        #: task id -> when its wait for a node that is OFF or BOOTING runs out, s; a task asking
        #: again after that goes to a node that is on when one has room (no second wait)
        self._wake_waits: dict[str, float] = {}
        #: task id -> latest start of a deferrable task waiting for a node that is on anyway
        self._window_waits: dict[str, float] = {}
        self._arr_rate_c = 0.0  # CPUs asked per second (exponentially weighted)
        self._arr_rate_g = 0.0
        self._arr_t = -_INF
        hl = cfg.arrival_halflife_s
        self._arr_tau = hl / math.log(2.0) if hl > 0 else 1e-9
        self._last_margin_event = 0.0
        self._last_fit_s = [-_INF] * len(self.cluster.types)
        self.counters = {"place": 0, "defer": 0, "reject": 0, "warn": 0}
        self.forecast = ArrivalForecast(bin_s=cfg.forecast_bin_s,
                                        history_s=max(cfg.forecast_history_s, cfg.forecast_bin_s),
                                        eval_window_s=cfg.forecast_bin_s)
        self._forecast_holds = False  #: the last plan kept idle nodes on for forecast arrivals
        self._early_off = scaling.EarlyOffRecord(len(self.cluster.types))
        self.carbon: Optional[CarbonShifter] = None
        self.gpu_limits: dict[str, PowerLimitLearner] = {}  # by node type name

    # ------------------------------------------------- read-only views (compatible names)
    @property
    def nodes(self) -> NodeTable:
        """The node columns (``ctl.cluster.nodes``); read-only."""
        return self.cluster.nodes

    @property
    def types(self) -> list[NodeType]:
        """Declared node types (``ctl.cluster.types``); read-only."""
        return self.cluster.types

    @property
    def type_index(self) -> dict[str, int]:
        """Node type name -> row (``ctl.cluster.type_index``); read-only."""
        return self.cluster.type_index

    @property
    def models(self) -> list[NodeModel]:
        """Calibrated power model per node type (``ctl.cluster.models``); read-only."""
        return self.cluster.models

    @property
    def job_spent_j(self) -> dict[str, float]:
        """Joules of each job's finished tasks (measured, else predicted)."""
        return self.reservations.job_spent_j

    def add_node_type(self, node_type: NodeType) -> None:
        """Declare a node type after construction (a worker or node of a new kind joined).
        Nodes, reservations and what was learned so far are kept."""
        self.cluster.add_type(node_type)
        self._last_fit_s.append(-_INF)
        self.predictor.add_type(node_type.speed)
        self._early_off.add_type()

    def _emit(self, ev: DecisionEvent) -> None:
        sink = self.event_sink
        if sink is None:
            return
        try:
            sink(ev)
        except Exception:  # a broken sink must not stop scheduling
            log.warning("controller event sink raised; event dropped", exc_info=True)

    @property
    def _events_on(self) -> bool:
        return self.event_sink is not None and self.config.emit_events

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
            d["job_spent_j"] = float(self.reservations.job_energy_j(job))
            d["job_budget_j"] = self.config.job_budgets_j.get(job)
        return d

    # --------------------------------------------------------- membership
    def add_node(self, node_id: str, node_type: str, *, state: NodeState = NodeState.ON, now_s: float = 0.0) -> None:
        """Add a node of a declared type in ``state``."""
        self.cluster.add_node(node_id, node_type, NodeState(state), now_s)
        self.reservations.add_node(node_id)

    def remove_node(self, node_id: str, *, now_s: float) -> None:
        """Forget a node. Reservations on it are dropped (their tasks are gone with it)."""
        self.cluster.index_of(node_id)
        for tid in self.reservations.on_node(node_id):
            self._release(tid, now_s=now_s)
        self.cluster.remove_node(node_id)
        self.reservations.drop_node(node_id)

    def set_node_state(self, node_id: str, state: NodeState, *, now_s: float) -> None:
        """Tell the controller a node's power state changed. A node set OFF loses its
        reservations (its tasks did not survive); a node set ON becomes placeable."""
        i = self.cluster.index_of(node_id)
        new = STATE_CODE[NodeState(state)]
        if new == self.cluster.nodes.state.item(i):
            return
        if new == OFF:
            for tid in self.reservations.on_node(node_id):
                self._release(tid, now_s=now_s)
        self.cluster.set_state(i, new, now_s)

    def node_state(self, node_id: str) -> NodeState:
        return self.cluster.state_of(node_id)

    # ----------------------------------------------------------- telemetry
    def observe_node(self, node_id: str, *, now_s: float, power_w: Optional[float] = None,
                     temperature_k: Optional[float] = None, utilization: Optional[float] = None) -> None:
        """One node's telemetry: wall watts, temperature (K), CPU utilization (0..1). Any
        subset; a missing temperature leaves the last one (initially T_ref)."""
        cv = self.cluster
        i = cv.nodes.index.get(node_id)
        if i is None:
            return
        nt = cv.nodes
        if temperature_k is not None and math.isfinite(temperature_k) and temperature_k > 0:
            cv.set_temperature(i, temperature_k / self.config.t_ref_k)
        if utilization is not None and math.isfinite(utilization):
            nt.util_obs[i] = min(max(utilization, 0.0), 1.0)
        if power_w is not None and math.isfinite(power_w):
            nt.measured_w[i] = power_w
            if nt.cap_w[i] < _INF:
                nt.cap_block[i] = 1 if power_w >= nt.cap_w[i] else 0
            if self.config.calibrate and int(nt.state[i]) in (ON, DRAINING):
                u = nt.util_obs[i] if utilization is not None else nt.used_c[i] / nt.cpus[i]
                self._calibrate(int(nt.ti[i]), float(u), float(power_w - nt.gpu_static[i]), now_s)

    def _calibrate(self, k: int, utilization: float, cpu_power_w: float, now_s: float) -> None:
        """Add one sample to node type ``k``'s curve fit; refit when due."""
        m = self.cluster.models[k]
        m.add_sample(utilization, cpu_power_w)
        cfg = self.config
        if m.due(cfg.calibration_every) and now_s - self._last_fit_s[k] >= cfg.calibration_min_interval_s:
            self._last_fit_s[k] = now_s
            self.cluster.set_curve(k, m.fit())

    def observe_cluster_power(self, *, now_s: float, power_w: float) -> None:
        """Measured cluster IT watts, for the closed loop."""
        if power_w is None or not math.isfinite(power_w):
            return
        before = self.loop.margin
        cv = self.cluster
        m = self.loop.observe(now_s, float(power_w), cv.modeled_static_w, cv.modeled_w - cv.modeled_static_w)
        if self._events_on and abs(m - self._last_margin_event) >= 0.01:
            self._last_margin_event = m
            self._emit(DecisionEvent(t_s=now_s, kind="budget-correction", subject="cluster",
                                     reason=f"admission margin {before:.3f} -> {m:.3f}",
                                     budget=self.budget_state()))

    def fitted_models(self) -> dict[str, ModelSnapshot]:
        """Declared and fitted CPU curves of every node type (``snapshot.fitted_curve`` is
        the fitted one as a :class:`~tao_core.power.curve.PowerCurve`)."""
        return {m.name: m.snapshot() for m in self.cluster.models}

    # --------------------------------------------------------------- tasks
    def arrival_rate(self, now_s: float) -> tuple[float, float]:
        """Recent demand: (CPUs asked per second, GPUs asked per second), an exponentially
        weighted rate with half-life ``arrival_halflife_s``."""
        if self._arr_t == -_INF:
            return 0.0, 0.0
        f = math.exp(-max(0.0, now_s - self._arr_t) / self._arr_tau)
        return self._arr_rate_c * f, self._arr_rate_g * f

    def _note_arrival(self, now_s: float, cpus: float, gpus: float) -> None:
        self.forecast.note(now_s, cpus, gpus)
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

    def decide(self, task: TaskRequest, *, now_s: float) -> Decision:
        """Place, defer or reject one task. See the class docs for the semantics."""
        cpus = float(task.cpus)
        gpus = float(task.gpus)
        if not (0.0 <= cpus < _INF and 0.0 <= gpus < _INF):
            raise InputError(f"task {task.task_id!r}: cpus and gpus must be finite numbers >= 0")
        placed = self.reservations.get(task.task_id)
        if placed is not None:
            return Decision(task.task_id, Action.PLACE, node_id=placed.node_id, predicted_energy_j=placed.pred_energy_j,
                            predicted_duration_s=placed.pred_dur_s, reason="already placed")
        ruled = self._admission_rules(task, now_s, cpus, gpus)
        if ruled is not None:
            return ruled
        return self._choose(task, now_s, cpus, gpus)

    # ---------------------------------------------------------- admission rules
    def _admission_rules(self, task: TaskRequest, now_s: float, cpus: float, gpus: float) -> Optional[Decision]:
        """The decision when a rule settles it before any node is scored: a carbon shift, a
        job whose energy budget is spent (deny mode), no nodes at all. Also counts a new
        arrival in the arrival rate (work shifted for later is not demand now)."""
        if self.carbon is not None and task.deferrable and task.deadline_s is not None:
            shifted = self._carbon_shift(task, now_s)
            if shifted is not None:
                return shifted
        if task.task_id not in self._deferred:  # a new arrival (a deferred task asking again is not)
            self._note_arrival(now_s, cpus, gpus)
        job = task.job
        budgets = self.config.job_budgets_j
        if job is not None and job in budgets and self.config.job_budget_mode == "deny":
            spent = self.reservations.job_energy_j(job)
            if spent >= budgets[job]:
                return self._reject(task, now_s, f"job {job!r} energy budget spent: {spent:.1f} J of {budgets[job]:.1f} J")
        if self.cluster.nodes.n == 0:
            return self._defer(task, now_s, None, "no nodes", None)
        return None

    def _job_overrun(self, task: TaskRequest, energy_j: float) -> Optional[str]:
        """Why placing ``task`` at ``energy_j`` predicted joules overruns its job's energy
        budget (None when the job has none or stays within it)."""
        job = task.job
        budgets = self.config.job_budgets_j
        if job is None or job not in budgets:
            return None
        spent = self.reservations.job_energy_j(job)
        if spent + energy_j <= budgets[job]:
            return None
        return f"job {job!r} energy budget: {spent:.1f} J spent + {energy_j:.1f} J predicted > {budgets[job]:.1f} J"

    def _urgent(self, task: TaskRequest, now_s: float, dur_k: np.ndarray) -> bool:
        """Not deferrable, or a deadline closer than twice the predicted run time."""
        if not task.deferrable:
            return True
        return task.deadline_s is not None and task.deadline_s - now_s <= 2.0 * float(dur_k.max())

    def _restrict(self, task: TaskRequest, now_s: float, sc: Scores, dur_k: np.ndarray) -> None:
        """Urgent tasks, and tasks that already waited out a boot when a node that is on
        has room, go only to nodes that are on: the others' cost becomes inf."""
        if self.cluster.not_on == 0:
            return
        st = self.cluster.nodes.state
        if self._urgent(task, now_s, dur_k):
            sc.cost[st != ON] = _INF
            return
        until = self._wake_waits.get(task.task_id)
        if until is not None and now_s >= until - 1e-9 and bool((np.where(st == ON, sc.cost, _INF) < _INF).any()):
            sc.cost[st != ON] = _INF

    # ---------------------------------------------------------- choosing a node
    def _score(self, task: TaskRequest, now_s: float, cpus: float, gpus: float) -> tuple[Scores, np.ndarray, float]:
        """Score every node for ``task``: (scores, run time per node type, predicted watts now)."""
        cfg = self.config
        cv = self.cluster
        dur_k, edur_k = self.predictor.predict(task.group, task.duration_hint_s)
        lp = self.loop
        any_not_on = cv.not_on > 0
        p_now = lp.predict_w(cv.modeled_static_w, cv.modeled_w - cv.modeled_static_w)
        sc = self.scorer.score(cpus, gpus, dur_k, edur_k, now_s, cfg.lambda_j_per_s, cfg.mu, p_now,
                               lp.dynamic_scale, lp.effective_budget_w, cfg.scale_down, any_not_on, cv.any_temp,
                               cv.any_cap)
        return sc, dur_k, p_now

    def _choose(self, task: TaskRequest, now_s: float, cpus: float, gpus: float) -> Decision:
        """Score, restrict, choose the cheapest node within the budget, and decide."""
        sc, dur_k, p_now = self._score(task, now_s, cpus, gpus)
        self._restrict(task, now_s, sc, dur_k)
        lp = self.loop
        budget = lp.effective_budget_w
        j = self.scorer.choose(sc, power_now_w=p_now, ratio=lp.dynamic_scale, budget_w=budget)
        cost = sc.cost.item(j)
        if not cost < _INF:  # inf, or NaN from a degenerate input: nothing feasible
            return self._defer(task, now_s, None, self._defer_reason(task, budget), None, sc=sc)
        if task.deadline_s is not None and task.deferrable and self.config.defer_to_on_windows:
            waits = self._window_wait(task, now_s, j, dur_k)
            if waits is not None:
                return waits
        if self.cluster.nodes.state.item(j) != ON:
            return self._defer_for_boot(task, now_s, j, sc)
        energy = sc.energy_j.item(j)
        warning = self._job_overrun(task, energy)
        if warning is not None and self.config.job_budget_mode == "deny":
            return self._reject(task, now_s, warning)
        return self._place(task, now_s, j, cost + sc.offset, energy, sc.dp_w.item(j), sc.delay_s.item(j), warning, sc)

    def _defer_for_boot(self, task: TaskRequest, now_s: float, j: int, sc: Scores) -> Decision:
        """The cheapest node is off (ask the next plan to wake it) or booting: wait for it,
        or until reserved work is predicted to end sooner (room on a node that is on)."""
        cv = self.cluster
        nt = cv.nodes
        node_id = nt.ids[j]
        tid = task.task_id
        if nt.state.item(j) == OFF:
            cv.request_wake(node_id, now_s)
            until = now_s + cv.type_boot_s.item(nt.ti.item(j))
            reason = f"cheapest node {node_id} is off: waking it"
        else:
            until = nt.ready_at.item(j)
            reason = f"cheapest node {node_id} is booting"
        if tid not in self._wake_waits:
            if len(self._wake_waits) >= self.config.max_groups:
                self._wake_waits.pop(next(iter(self._wake_waits)))
            self._wake_waits[tid] = until
        nxt = self.reservations.next_end()
        if nxt is not None:
            until = min(until, nxt if nxt > now_s else now_s + BOOT_RECHECK_S)
        return self._defer(task, now_s, until, reason, j, sc=sc)

    # ------------------------------------------------------------- on windows
    def _latest_start(self, task: TaskRequest) -> Optional[float]:
        """The latest start that still meets ``task``'s deadline: the deadline less its run
        time on the slowest node type x (1 + ``carbon_slack``) and the longest boot time.
        The run time is the task's ``duration_hint_s``, else the longest its group has had
        (after three finished); None without either (no deadline can be promised)."""
        hint = task.duration_hint_s
        ref = hint if hint is not None and 0 < hint < _INF else self.predictor.longest_s(task.group)
        if ref is None or task.deadline_s is None or not math.isfinite(task.deadline_s):
            return None
        cv = self.cluster
        run_s = ref / float(cv.type_speed.min())
        return task.deadline_s - run_s * (1.0 + self.config.carbon_slack) - cv.max_boot_s()

    def _window_wait(self, task: TaskRequest, now_s: float, j: int, dur_k: np.ndarray) -> Optional[Decision]:
        """``defer_to_on_windows``: a deferrable task with a deadline whose cheapest node
        would have to stay on (or be woken) for it waits, until its latest start, for a
        node that is on anyway for other work: one whose reserved work outlasts the task's
        run. It is asked again whenever capacity changes; None: decide as usual."""
        tid = task.task_id
        if self.carbon is not None and self.carbon.planned(tid):
            return None  # its start was chosen for cleaner power: that is its window
        latest = self._latest_start(task)
        if latest is None or latest <= now_s:
            self._window_waits.pop(tid, None)
            return None
        nt = self.cluster.nodes
        run = float(dur_k[nt.ti.item(j)])
        st = nt.state.item(j)
        end = max(nt.busy_until.item(j), 2.0 * now_s - nt.busy_from.item(j))
        window = max(0.0, end - now_s) if st == ON or st == DRAINING else 0.0
        if run - window <= _WINDOW_SLACK * run:
            self._window_waits.pop(tid, None)
            return None  # it fits in a window the node is on for anyway
        self._window_waits[tid] = latest
        return self._defer(task, now_s, latest, f"waiting until t={latest:.0f} s at the latest for a node that is "
                           "on anyway", None)

    def window_waiting(self, task_id: str, now_s: float) -> bool:
        """Whether ``task_id`` waits for a node that is on anyway (not demand to boot for)."""
        latest = self._window_waits.get(task_id)
        return latest is not None and latest > now_s

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
        hint = task.duration_hint_s
        ref = hint if hint is not None and 0 < hint < _INF else self.predictor.longest_s(task.group)
        if ref is None or not math.isfinite(task.deadline_s):
            return None
        cv = self.cluster
        run_s = ref / float(cv.type_speed.min())
        latest = task.deadline_s - run_s * (1.0 + cfg.carbon_slack) - cv.max_boot_s()
        plan = self.carbon.plan(task.task_id, now_s=now_s, latest_s=latest, run_s=run_s, cpus=float(task.cpus),
                                capacity_cpus=float(cv.nodes.cpus.sum()))
        if plan is None:
            return None
        start, mean, now_mean = plan
        return self._defer(task, now_s, start,
                           f"carbon: {mean:.0f} gCO2e/kWh from t={start:.0f} s against {now_mean:.0f} now", None)

    # -------------------------------------------------------- GPU power limits
    def enable_gpu_power_limits(self, node_type: str, limits_w: Sequence[float]) -> None:
        """Let the controller choose GPU power limits (watts, among ``limits_w``) for the
        GPUs of ``node_type``, learned per task group from measured time and energy.

        A unit of work is judged by its GPU energy plus ``lambda`` and the node's idle draw
        per GPU times its run time: a slower unit keeps its share of the node's static draw
        on for longer, which a GPU's own energy figure leaves out."""
        k = self.cluster.type_of(node_type)
        t = self.cluster.types[k]
        static = float(self.cluster.type_idle_w[k]) / t.gpus if t.gpus else 0.0
        self.gpu_limits[node_type] = PowerLimitLearner(limits_w, max_slowdown=self.config.gpu_max_slowdown,
                                                       lambda_j_per_s=self.config.lambda_j_per_s + static)

    def gpu_power_limit(self, group: str, node_id: str, *, now_s: float) -> Optional[float]:
        """The power limit in watts for the next unit of ``group``'s work on each GPU of
        ``node_id`` (None if limits are not enabled for its type, or ``gpu_power_limits`` is
        off). Under a power budget the
        limit's measured draw fits the headroom: idle watts plus the budget's free watts
        (and what the node's reserved GPUs are already counted for) shared by those GPUs."""
        ntype = self.cluster.node_type(node_id)
        learner = self.gpu_limits.get(ntype.name)
        if learner is None or not self.config.gpu_power_limits:
            return None
        cap = None
        budget = self.loop.effective_budget_w
        if budget is not None and ntype.gpus > 0:
            # free watts under the budget, plus what the node's reserved GPUs are already
            # counted for above idle, shared by those GPUs (at least one)
            used = self.cluster.reserved(node_id)[1]
            free = budget - self.predicted_power_w()
            counted = used * (ntype.gpu_busy_w - ntype.gpu_idle_w) * self.loop.dynamic_scale
            cap = ntype.gpu_idle_w + max(0.0, free + counted) / max(used, 1.0)
        limit = learner.next_limit(group, power_cap_w=cap)
        if self._events_on:
            self._emit(DecisionEvent(t_s=now_s, kind="gpu-limit", subject=group, group=group, node_id=node_id,
                                     reason="exploring" if learner.exploring(group) else "least cost measured",
                                     budget=self.budget_state(None),
                                     detail={"limit_w": limit, "cap_w": cap, "node_type": ntype.name}))
        return limit

    def observe_gpu_work(self, group: str, node_id: str, *, limit_w: float, time_s: float, energy_j: float) -> None:
        """Report that one unit of ``group``'s work on a GPU of ``node_id`` took ``time_s``
        seconds and ``energy_j`` joules at ``limit_w`` watts."""
        learner = self.gpu_limits.get(self.cluster.node_type(node_id).name)
        if learner is not None:
            learner.observe(group, limit_w, time_s, energy_j)

    # ------------------------------------------------------------ the three decisions
    def _alternatives(self, sc: Optional[Scores]) -> tuple[Alternative, ...]:
        """The ``alternatives`` cheapest candidates of a scoring pass, over-budget ones left out."""
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
        ids = self.cluster.nodes.ids
        lp = self.loop
        b = lp.effective_budget_w
        p_now = self.predicted_power_w()
        out = []
        for i in idx.tolist():
            c = float(cost[i]) + sc.offset
            if b is not None and p_now + float(sc.dp_w[i]) * lp.dynamic_scale >= b:
                c = _INF
            if c < _INF:
                out.append(Alternative(ids[i], c, float(sc.energy_j[i]), float(sc.delay_s[i])))
        return tuple(out)

    def _place(self, task: TaskRequest, now_s: float, j: int, cost: float, energy: float, dp_w: float, dur: float,
               warning: Optional[str], sc: Scores) -> Decision:
        """PLACE ``task`` on row ``j``: reserve its CPUs and GPUs until it ends (``dur``
        seconds predicted; ``dp_w`` modeled watts added; ``energy`` the penalty's E)."""
        cv = self.cluster
        nt = cv.nodes
        tid = task.task_id
        node_id = nt.ids[j]
        if self._wake_waits:
            self._wake_waits.pop(tid, None)
        if self._window_waits:
            self._window_waits.pop(tid, None)
        # before the reservation: sc.dp_w can be the scorer's cached row that it updates
        alts = self._alternatives(sc) if self.config.alternatives else ()
        cpus = float(task.cpus)
        gpus = float(task.gpus)
        # uncorrected model prediction of the task's attributed energy: added watts plus its
        # capacity share of the node's idle watts, times the run time
        model_attr = (dp_w + nt.idle_w.item(j) * (cpus / nt.cpus.item(j))) * dur
        end = now_s + dur
        self.reservations.add(Reservation(tid, task.group, task.job, node_id, nt.ti.item(j), cpus, gpus, now_s, dur,
                                          energy, model_attr, end))
        cv.reserve(j, cpus, gpus, end, now_s)
        if self._deferred:
            self._deferred.pop(tid, None)
        self.counters["place"] += 1
        if warning is not None:
            self.counters["warn"] += 1
        if self.event_sink is not None and self.config.emit_events:
            self._emit_place(task, now_s, node_id, cost, energy, dur, dp_w, alts, warning)
        return _place_decision(tid, node_id, cost, energy, dur, alts, warning)

    def _emit_place(self, task: TaskRequest, now_s: float, node_id: str, cost: float, energy: float, dur: float,
                    dp_w: float, alts: tuple, warning: Optional[str]) -> None:
        self._emit(DecisionEvent(t_s=now_s, kind="place", subject=task.task_id, group=task.group, node_id=node_id,
                                 cost=cost, reason="lowest penalty", alternatives=alts,
                                 budget=self.budget_state(task.job),
                                 detail={"energy_j": energy, "delay_s": dur, "duration_s": dur,
                                         "added_w": dp_w * self.loop.dynamic_scale, "cpus": float(task.cpus),
                                         "gpus": float(task.gpus), "job": task.job}))
        if warning is not None:
            self._emit(DecisionEvent(t_s=now_s, kind="warn", subject=task.job or task.task_id, group=task.group,
                                     node_id=node_id, reason=warning, budget=self.budget_state(task.job)))

    def _defer_reason(self, task: TaskRequest, budget: Optional[float]) -> str:
        nt = self.cluster.nodes
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

    def _defer(self, task: TaskRequest, now_s: float, until: Optional[float], reason: str,
               j: Optional[int], sc: Optional[Scores] = None) -> Decision:
        """DEFER ``task`` until ``until`` (None: the predicted end of the earliest reserved
        work, or when capacity changes); ``j``: the row of the node it waits for, if any."""
        if until is None:
            nxt = self.reservations.next_end()
            until = nxt if nxt is not None and nxt > now_s else None
        self.counters["defer"] += 1
        dq = self._deferred
        if task.task_id in dq:
            dq.move_to_end(task.task_id)
        else:
            dq[task.task_id] = now_s
            if len(dq) > 100_000:
                dq.popitem(last=False)
        node_id = self.cluster.nodes.ids[j] if j is not None else None
        alts = self._alternatives(sc) if (self.config.alternatives and sc is not None) else ()
        if self._events_on:
            self._emit(DecisionEvent(t_s=now_s, kind="defer", subject=task.task_id, group=task.group,
                                     node_id=node_id, reason=reason, alternatives=alts,
                                     budget=self.budget_state(task.job)))
        return Decision(task.task_id, Action.DEFER, node_id=node_id, defer_until_s=until, reason=reason,
                        alternatives=alts)

    def _reject(self, task: TaskRequest, now_s: float, reason: str) -> Decision:
        self.counters["reject"] += 1
        self._deferred.pop(task.task_id, None)
        self._wake_waits.pop(task.task_id, None)
        self._window_waits.pop(task.task_id, None)
        if self._events_on:
            self._emit(DecisionEvent(t_s=now_s, kind="reject", subject=task.task_id, group=task.group,
                                     reason=reason, budget=self.budget_state(task.job)))
        return Decision(task.task_id, Action.REJECT, reason=reason)

    # ------------------------------------------------------------- task lifecycle
    def task_started(self, task_id: str, *, now_s: float) -> None:
        """Confirms a PLACE: the task started running now."""
        r = self.reservations.started(task_id, now_s)
        if r is not None:
            i = self.cluster.nodes.index.get(r.node_id)
            if i is not None:
                self.cluster.extend_busy(i, r.end_s)

    def task_finished(self, task_id: str, *, now_s: float, energy_j: Optional[float] = None,
                      duration_s: Optional[float] = None, energy_pending: bool = False,
                      run_learned: bool = False) -> None:
        """Frees the task's capacity and trains the predictions.

        ``energy_j``: the task's attributed energy in joules, as :mod:`tao_core.attribution`
        splits a node's energy: its share of the dynamic energy (by CPU share) plus its
        share of the node's static power (by its share of the node's CPUs), over its run.
        The simulator, the Ray and the Dask adapters all feed this definition (None when not
        measured: the prediction is kept). It trains the per-group energy correction against
        the model's prediction of the same quantity and counts against the task's job budget.
        ``duration_s``: its run time (default: now - start, or now - placement).
        ``energy_pending``: a live adapter knows the energy only once the node's timeline has
        settled past the task's end: the capacity is freed and the run time learned now, the
        job charged its prediction, and :meth:`task_energy` brings the attributed energy
        (at most ``MAX_SETTLING`` tasks wait; the oldest keep their prediction).
        ``run_learned``: :meth:`task_ran` already taught the run times of the work under this
        reservation; ``duration_s`` only scales the energy learned."""
        r = self.reservations.get(task_id)
        if r is None:
            return
        if duration_s is None:
            duration_s = now_s - (r.started_s if r.started_s is not None else r.placed_s)
        if energy_pending and energy_j is None:
            # run time and the predicted energy now; the measured energy corrects both later
            if not run_learned:
                self.predictor.observe(r.group, r.ti, duration_s=duration_s)
            if r.job is not None:
                self.reservations.job_finished(r.job, r.pred_energy_j)
            self._settling[task_id] = (r, duration_s)
            while len(self._settling) > MAX_SETTLING:
                self._settling.popitem(last=False)
        else:
            self._learn(r, duration_s, energy_j, run_learned)
        self._release(task_id, now_s=now_s)

    def task_ran(self, task_id: str, duration_s: float) -> None:
        """One run of work under a reservation that stays (an open-admission slot its group
        reuses, :mod:`tao_core.live.grants`): its run time (s) trains the run-time
        predictions now, not only when the slot ends."""
        r = self.reservations.get(task_id)
        if r is not None and math.isfinite(duration_s) and duration_s >= 0:
            self.predictor.observe(r.group, r.ti, duration_s=duration_s)

    def task_energy(self, task_id: str, energy_j: Optional[float]) -> bool:
        """The settled attributed energy (J, as for :meth:`task_finished`) of a task that
        finished with ``energy_pending``: it trains the energy correction and replaces the
        prediction counted against the task's job. None: it will not be known (the
        prediction stands). False when no such task waits."""
        got = self._settling.pop(task_id, None)
        if got is None:
            return False
        r, duration_s = got
        if energy_j is not None and math.isfinite(energy_j):
            self.predictor.observe(r.group, r.ti, energy_ratio=self._energy_ratio(r, duration_s, energy_j))
            if r.job is not None:
                self.reservations.job_finished(r.job, energy_j - r.pred_energy_j)
        return True

    @staticmethod
    def _energy_ratio(r: Reservation, duration_s: float, energy_j: float) -> Optional[float]:
        """Measured / predicted attributed energy, the prediction scaled to the measured run time."""
        if r.model_attr_j <= 0:
            return None
        pred = r.model_attr_j * (duration_s / r.pred_dur_s if r.pred_dur_s > 0 and duration_s > 0 else 1.0)
        return energy_j / pred if pred > 0 else None

    def _learn(self, r: Reservation, duration_s: float, energy_j: Optional[float], run_learned: bool = False) -> None:
        measured = energy_j is not None and math.isfinite(energy_j)
        ratio = self._energy_ratio(r, duration_s, energy_j) if measured else None
        self.predictor.observe(r.group, r.ti, duration_s=None if run_learned else duration_s, energy_ratio=ratio)
        if r.job is not None:
            self.reservations.job_finished(r.job, energy_j if measured else r.pred_energy_j)

    def cancel(self, task_id: str, *, now_s: float) -> None:
        """Frees a PLACE that never ran (or forgets a deferred task)."""
        self._deferred.pop(task_id, None)
        self._window_waits.pop(task_id, None)
        if self.reservations.get(task_id) is not None:
            self._release(task_id, now_s=now_s)

    def _release(self, task_id: str, *, now_s: float) -> None:
        r = self.reservations.pop(task_id)
        cv = self.cluster
        i = cv.nodes.index.get(r.node_id)
        if i is None:
            return
        busy = self.reservations.latest_end(r.node_id) if r.end_s >= cv.nodes.busy_until.item(i) else None
        cv.unreserve(i, r.cpus, r.gpus, now_s, busy)

    # ------------------------------------------------------------- scaling
    def plan_scaling(self, *, now_s: float, pending: Sequence[TaskRequest] = ()) -> ScalePlan:
        """Which nodes to boot, power off or drain now, given pending and running demand.
        The plan is applied to the controller's own view at once (power_on -> BOOTING,
        power_off -> OFF, drain -> DRAINING); the caller carries it out and calls
        ``set_node_state(node, ON)`` when a booted node is ready."""
        if self.carbon is not None and pending:
            pending = [t for t in pending if not self.carbon.waiting(t.task_id, now_s)]
        if self._window_waits and pending:
            pending = [t for t in pending if not self.window_waiting(t.task_id, now_s)]
        plan = scaling.plan(self.cluster, self.config, self.loop, now_s=now_s, pending=pending,
                            demand=self._demand(now_s, for_plan=True))
        self._forecast_holds = plan.reason.find(scaling.HELD_BY_FORECAST) >= 0
        # wake requests are hints for this plan only: a task still waiting asks again
        self.cluster.clear_wake_requests()
        for nid in plan.power_on:
            self.set_node_state(nid, NodeState.BOOTING, now_s=now_s)
        for nid in plan.power_off:
            self.set_node_state(nid, NodeState.OFF, now_s=now_s)
        for nid in plan.drain:
            self.set_node_state(nid, NodeState.DRAINING, now_s=now_s)
        if self._events_on and plan:
            budget_state = self.budget_state()
            for kind, ids in (("scale-up", plan.power_on), ("scale-down", plan.power_off), ("drain", plan.drain)):
                for nid in ids:
                    self._emit(DecisionEvent(t_s=now_s, kind=kind, subject=nid, node_id=nid, reason=plan.reason,
                                             budget=budget_state))
        return plan

    def _demand(self, now_s: float, *, for_plan: bool = False) -> scaling.Demand:
        """What the planner knows of demand to come; ``for_plan``: with the track record of
        early power-offs, which the plan reads and adds to (the idle timeouts and the
        planning timer need neither)."""
        fc = self.forecast
        d = scaling.Demand(arrival_rate=self.arrival_rate(now_s), forecast=fc, mean_cpus=fc.mean_cpus,
                           mean_gpus=fc.gpus_asked / fc.tasks if fc.tasks else 0.0,
                           mean_run_s=self.predictor.overall_mean_s(), held_s=self.predictor.held_s)
        if not (for_plan and self.config.predictive_scaling):
            return d
        cv = self.cluster
        ok = self._early_off.ok(now_s, cv.idle_timeouts_s(None, self.config.min_idle_timeout_s),
                                scaling.early_off_thresholds(cv, self.config, d))
        return dataclasses.replace(d, early_off_ok=ok, early_off_record=self._early_off)

    def idle_timeouts_s(self, now_s: float = 0.0) -> dict[str, float]:
        """Seconds of idleness before a node of each type is powered off, by type name: the
        configured timeout, or the break-even of a later boot and the waits it costs at
        lambda (:func:`tao_core.control.scaling.idle_timeouts`; it follows the mean task
        size seen so far)."""
        tos = scaling.idle_timeouts(self.cluster, self.config, self._demand(now_s))
        return {t.name: float(x) for t, x in zip(self.cluster.types, tos.tolist())}

    def next_plan_s(self, *, now_s: float) -> Optional[float]:
        """The earliest time after ``now_s`` at which :meth:`plan_scaling` may change
        something although no task, node or telemetry event came: an idle node's timeout
        running out, or (predictive scaling) the arrival forecast moving on to its next bin
        while it holds idle nodes on. None: nothing is due. For a caller's timer (the
        simulator ticks then)."""
        cv = self.cluster
        nt = cv.nodes
        idle = (nt.n_tasks == 0) & ((nt.state == ON) | (nt.state == DRAINING))
        if not idle.any():
            return None
        tos = scaling.idle_timeouts(cv, self.config, self._demand(now_s))[nt.ti[idle]]
        due = np.maximum(nt.idle_since[idle] + tos, nt.on_since[idle] + self.config.min_on_s)
        later = due[due > now_s + 1e-9]
        t = float(later.min()) if later.size else None
        if self._forecast_holds:
            b = self.forecast.bin_s
            nxt = (math.floor(now_s / b + 1e-9) + 1) * b
            t = nxt if t is None else min(t, nxt)
        return t

    # ------------------------------------------------------------ inspect
    @property
    def running(self) -> int:
        """Tasks holding a reservation."""
        return len(self.reservations)

    def reserved(self, node_id: str) -> tuple[float, float, int]:
        """(CPUs, GPUs, tasks) reserved on a node."""
        return self.cluster.reserved(node_id)

    def has_room(self, cpus: float, gpus: float = 0.0) -> bool:
        """Whether a node that is on has ``cpus`` CPUs and ``gpus`` GPUs free now (a PLACE
        of such a task is possible); the admission queue asks this before offering a task."""
        return self.cluster.has_room(cpus, gpus)

    def modeled_power_w(self) -> float:
        """Modeled cluster IT watts now (uncorrected)."""
        return self.cluster.modeled_w

    def predicted_power_w(self) -> float:
        """Cluster IT watts predicted by the calibrated model (static x a + dynamic x b)."""
        cv = self.cluster
        return self.loop.predict_w(cv.modeled_static_w, cv.modeled_w - cv.modeled_static_w)
