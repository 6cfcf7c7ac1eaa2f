"""Knobs of the controller (:class:`ControllerConfig`).

Units: seconds, joules, watts, kelvin. Every knob has a default that works on a
cluster with no budget: pure energy minimisation with a small weight on delay.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Mapping, Optional

from tao_core.errors import InputError


@dataclass
class ControllerConfig:
    """Knobs of :class:`tao_core.control.Controller`.

    Penalty ``cost = E * T_n/T_ref + mu * barrier(P + dP, P_budget) + lambda * D``:

    - ``lambda_j_per_s``: joules one second of predicted delay is worth (J/s). 0 = energy only.
    - ``mu``: weight of the power-budget barrier, joules.
    - ``t_ref_k``: reference temperature, kelvin; a node without a reading counts as this.

    Budgets:

    - ``power_budget_w``: cluster power budget in watts (None = no budget; ``inf`` is taken
      as None).
    - ``budget_scope``: ``"it"`` (budget is IT watts) or ``"facility"`` (budget is
      facility watts = IT watts x ``pue``).
    - ``pue``: power usage effectiveness (>= 1.0).
    - ``node_caps_w``: per-node power caps in watts, by node id.
    - ``job_budgets_j``: per-job energy budgets in joules, by job name.
    - ``job_budget_mode``: ``"warn"`` (place and attach a warning) or ``"deny"`` (REJECT).

    Closed loop (admission margin, a fraction of the budget held back):

    - ``pi_kp``, ``pi_ki`` (per second): gains of the PI term on the relative error
      ``(measured - setpoint) / budget``.
    - ``target_headroom``: admission and the loop aim measured power at
      ``budget * (1 - target_headroom)``.
    - ``margin_max``: upper clamp of the admission margin (fraction of budget).
    - ``ratio_halflife_s``: half-life of the measured/modeled cluster power ratio (s).

    Predictions:

    - ``default_duration_s``: run time at speed 1.0 assumed for a group never seen and
      without ``duration_hint_s``.
    - ``prediction_alpha``: EWMA weight of a new measurement (0..1].
    - ``max_groups``: task groups remembered (least recently used ones are forgotten).

    Model calibration:

    - ``calibrate``: fit node power curves to ``observe_node`` samples.
    - ``calibration_prior``: weight of the declared curve in the fit, in samples per breakpoint.
    - ``calibration_every``: refit a node type's curve after this many new samples.
    - ``calibration_min_interval_s``: and at most once per this many seconds.

    Scaling:

    - ``idle_timeout_s``: seconds a node must sit idle before it is powered off. None = per
      node type break-even time ``boot energy / (idle W - off W)`` (at least
      ``min_idle_timeout_s``).
    - ``min_idle_timeout_s``: floor of the idle timeout, seconds.
    - ``min_on_s``: a node that came on stays on at least this long (anti-flapping).
    - ``spare_cpus``: free CPUs kept on (or booting) beyond demand, at least.
    - ``spare_horizon_s``: also keep free the CPUs that recent arrivals ask for in this many
      seconds (EWMA arrival rate x the mean of min(run time, horizon) over the latest 256
      finished tasks: a task holds its CPUs no longer than it runs; the whole horizon before
      any task finished). None = the longest boot time of any node type.
    - ``arrival_halflife_s``: half-life of the arrival-rate estimate, seconds.
    - ``scale_down_band``: hysteresis: a node is powered off only while the rest covers
      demand x (1 + band); it is booted as soon as supply falls below demand.
    - ``boot_amortize_s``: seconds a booted node is expected to stay useful; its boot energy
      is spread over them when ranking nodes to boot.
    - ``scale_down``: allow powering nodes off at all (False = static cluster).
    - ``consolidate``: drain lightly loaded inefficient nodes when the rest can hold their work.
    - ``wake_in_decide``: let ``decide`` consider nodes that are off (answering DEFER and
      asking ``plan_scaling`` to boot the chosen one).

    Levers (each can be switched off to measure it on its own):

    - ``predictive_scaling``: hold and boot capacity for the arrivals the forecast
      (:mod:`tao_core.control.forecast`) expects, a newsvendor choice per node type, and
      power idle nodes off at once when the forecast says the quiet outlasts their
      break-even time (see :mod:`tao_core.control.scaling`); before the forecast has
      history, the idle timeout and the arrival rate as without it.
    - ``size_boots``: boot for a queue of CPU-only tasks only the nodes whose saved waits,
      at ``lambda_j_per_s``, outweigh what waking them costs (a fluid model of the queue),
      instead of one node for every task that fits nowhere.
    - ``pack_efficient``: choose the nodes kept on by the watts they would draw at the load
      they would carry (each type's curve, not its full-load efficiency alone), and drain
      the busy node whose load the others carry on fewer watts (not only nodes under 50 %).
    - ``gpu_power_limits``: choose a GPU power limit per task group where limits are
      enabled (``Controller.enable_gpu_power_limits``); False: every GPU at its highest.
    - ``defer_to_on_windows``: a deferrable task with a deadline whose cheapest node would
      stay on (or be woken) for it waits, until its latest start (the deadline less its
      run time x (1 + ``carbon_slack``) and the longest boot), for a node that is on anyway
      for other work; it is not demand to boot for meanwhile.
    - ``forecast_bin_s``, ``forecast_history_s``: the forecast's bin width and memory, s.

    Carbon (used once a signal is given with ``Controller.set_carbon_signal``):

    - ``carbon_min_saving``: a deferrable task with a deadline waits for a cleaner start only
      if the mean grid intensity over its predicted run drops by at least this fraction.
    - ``carbon_slack``: the latest start leaves this fraction of the predicted run time, plus
      the longest boot time, before the deadline.
    - ``carbon_max_fill``: shifted runs planned into one window may hold at most this share
      of the cluster's CPUs, so they do not pile onto the cleanest hour.

    GPU power limits (used once ``Controller.enable_gpu_power_limits`` is called):

    - ``gpu_max_slowdown``: a lower limit is chosen only if a unit of work slows by at most
      this fraction against the highest limit.

    Events:

    - ``emit_events``: send a :class:`DecisionEvent` per decision to the sink.
    - ``alternatives``: how many best other candidates to report (0 = none, fastest).
    """

    lambda_j_per_s: float = 20.0
    mu: float = 100.0
    t_ref_k: float = 298.15

    power_budget_w: Optional[float] = None
    budget_scope: str = "it"
    pue: float = 1.0
    node_caps_w: Mapping[str, float] = field(default_factory=dict)
    job_budgets_j: Mapping[str, float] = field(default_factory=dict)
    job_budget_mode: str = "warn"

    pi_kp: float = 0.5
    pi_ki: float = 0.05
    target_headroom: float = 0.02
    margin_max: float = 0.6
    ratio_halflife_s: float = 5.0

    default_duration_s: float = 10.0
    prediction_alpha: float = 0.3
    max_groups: int = 10_000

    calibrate: bool = True
    calibration_prior: float = 5.0
    calibration_every: int = 20
    calibration_min_interval_s: float = 10.0

    idle_timeout_s: Optional[float] = None
    min_idle_timeout_s: float = 1.0
    min_on_s: float = 0.0
    spare_cpus: float = 0.0
    spare_horizon_s: Optional[float] = None
    arrival_halflife_s: float = 30.0
    scale_down_band: float = 0.25
    boot_amortize_s: float = 300.0
    scale_down: bool = True
    consolidate: bool = True
    wake_in_decide: bool = True

    predictive_scaling: bool = True
    size_boots: bool = True
    pack_efficient: bool = True
    gpu_power_limits: bool = True
    defer_to_on_windows: bool = True
    forecast_bin_s: float = 60.0
    forecast_history_s: float = 8 * 86400.0

    carbon_min_saving: float = 0.10
    carbon_slack: float = 0.25
    carbon_max_fill: float = 0.8

    gpu_max_slowdown: float = 0.10

    emit_events: bool = True
    alternatives: int = 3

    def __post_init__(self) -> None:
        if self.power_budget_w is not None and self.power_budget_w == math.inf:
            self.power_budget_w = None  # an infinite budget is no budget (its barrier term is 0)
        for names, ok, why in _RULES:
            for name in names:
                if not ok(getattr(self, name)):
                    raise InputError(f"ControllerConfig.{name}: {why}")
        for name, lo in (("node_caps_w", 0.0), ("job_budgets_j", None)):
            for k, v in dict(getattr(self, name)).items():
                if not (_num(v) and (v > 0 if lo is not None else v >= 0)):
                    raise InputError(f"ControllerConfig.{name}: value for {k!r} must be a number "
                                     f"{'> 0 (watts)' if lo is not None else '>= 0 (joules)'}; inf means no limit")
        if self.target_headroom + self.margin_max >= 1.0:
            raise InputError("ControllerConfig.target_headroom/margin_max: their sum must be < 1, or the admission "
                             "budget reaches 0 W")

    @property
    def it_budget_w(self) -> Optional[float]:
        """The power budget in IT watts (a facility budget divided by the PUE)."""
        if self.power_budget_w is None:
            return None
        if self.budget_scope == "facility":
            return self.power_budget_w / self.pue
        return float(self.power_budget_w)

    def to_dict(self) -> dict[str, Any]:
        """Every knob as plain data (mappings copied), for actor arguments, ledger records
        and reports; ``ControllerConfig(**cfg.to_dict())`` gives the same configuration."""
        return {f.name: (dict(v) if isinstance(v := getattr(self, f.name), Mapping) else v)
                for f in fields(self)}


def _num(v: object) -> bool:
    """A real number (not NaN; bools are not numbers here)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)


def _finite(v: object) -> bool:
    return _num(v) and math.isfinite(v)  # type: ignore[arg-type]


def _whole(v: object) -> bool:
    return _finite(v) and float(v).is_integer()  # type: ignore[arg-type]


#: largest penalty weight (J/s for lambda, J for mu): beyond it a second of delay or the
#: barrier outweighs any energy a cluster can use, and products overflow to inf
_MAX_WEIGHT = 1e12

#: (fields, check, message): every field named must pass the check. Infinite values are
#: refused wherever they would make a penalty or a demand infinite or NaN; they are allowed
#: where they mean "never" (idle timeouts, minimum on time, half-lives, boot amortisation).
_RULES: tuple[tuple[tuple[str, ...], Callable[[Any], bool], str], ...] = (
    (("lambda_j_per_s",), lambda v: _num(v) and 0 <= v <= _MAX_WEIGHT,
     f"must be a number of joules per second in [0, {_MAX_WEIGHT:g}]"),
    (("mu",), lambda v: _num(v) and 0 <= v <= _MAX_WEIGHT, f"must be a number of joules in [0, {_MAX_WEIGHT:g}]"),
    (("t_ref_k",), lambda v: _finite(v) and v > 0, "must be a finite positive temperature in kelvin (298.15 is 25 degC)"),
    (("power_budget_w",), lambda v: v is None or (_finite(v) and v > 0),
     "must be a positive number of watts, or None (or inf) for no budget"),
    (("budget_scope",), lambda v: v in ("it", "facility"), 'must be "it" or "facility"'),
    (("pue",), lambda v: _finite(v) and v >= 1.0, "must be a finite number >= 1.0 (facility watts over IT watts)"),
    (("job_budget_mode",), lambda v: v in ("warn", "deny"), 'must be "warn" or "deny"'),
    (("pi_kp", "pi_ki"), lambda v: _finite(v) and v >= 0, "gains must be finite and >= 0"),
    (("target_headroom", "margin_max"), lambda v: _num(v) and 0 <= v < 1, "must be a fraction in [0, 1)"),
    (("ratio_halflife_s",), lambda v: _num(v) and v > 0, "must be a half-life in seconds > 0"),
    (("arrival_halflife_s",), lambda v: _num(v) and v >= 0, "must be a half-life in seconds >= 0"),
    (("default_duration_s",), lambda v: _finite(v) and v > 0, "must be a finite positive number of seconds"),
    (("prediction_alpha",), lambda v: _num(v) and 0 < v <= 1, "must be in (0, 1]"),
    (("max_groups", "calibration_every"), lambda v: _whole(v) and v >= 1, "must be a whole number >= 1"),
    (("alternatives",), lambda v: _whole(v) and v >= 0, "must be a whole number >= 0"),
    (("calibration_prior",), lambda v: _finite(v) and v >= 0, "must be a finite number of samples >= 0"),
    (("calibration_min_interval_s", "min_on_s", "min_idle_timeout_s"), lambda v: _num(v) and v >= 0,
     "must be seconds >= 0"),
    (("idle_timeout_s",), lambda v: v is None or (_num(v) and v >= 0),
     "must be seconds >= 0, or None for the break-even time"),
    (("spare_cpus",), lambda v: _finite(v) and v >= 0, "must be a finite number of CPUs >= 0"),
    (("spare_horizon_s",), lambda v: v is None or (_finite(v) and v >= 0),
     "must be finite seconds >= 0, or None for the longest boot time"),
    (("scale_down_band",), lambda v: _finite(v) and v >= 0,
     "must be a finite fraction >= 0 (0.25 keeps 25 % above demand)"),
    (("boot_amortize_s",), lambda v: _num(v) and v > 0, "must be a positive number of seconds"),
    (("forecast_bin_s",), lambda v: _finite(v) and v > 0, "must be a finite positive number of seconds"),
    (("forecast_history_s",), lambda v: _finite(v) and v > 0, "must be a finite positive number of seconds"),
    (("carbon_min_saving",), lambda v: _num(v) and 0 <= v < 1,
     "must be a fraction in [0, 1) (0.10 = wait only for 10 % cleaner power)"),
    (("carbon_max_fill",), lambda v: _num(v) and 0 < v <= 1, "must be a fraction in (0, 1]"),
    (("carbon_slack",), lambda v: _finite(v) and v >= 0, "must be a finite fraction >= 0 of the predicted run time"),
    (("gpu_max_slowdown",), lambda v: _finite(v) and v >= 0,
     "must be a finite fraction >= 0 (0.10 allows 10 % slower work)"),
)
