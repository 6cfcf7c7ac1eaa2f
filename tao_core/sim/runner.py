"""Build a policy by name and run several policies over the same inputs.

Policy names: the baselines of :mod:`tao_core.sim.policies` and ``tao`` (the controller,
``tao_core.control.Controller``, unchanged, with its own scaling).

When ``tao`` runs beside baselines, :func:`run_all` also judges it against each one
(:mod:`tao_core.sim.verdict`): a baseline TAO's run does not beat at equal or better p95
wait is tried against TAO at the other lambdas of ``sweep`` (energy-delay trades), one
after the other until every baseline is settled (``sweep_all``: every lambda, for a full
front). The sweep's runs are in ``tao_sweep``; they send no decision events.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional, Sequence

from tao_core.carbon import CarbonSignal
from tao_core.control.types import DecisionEvent, NodeState
from tao_core.errors import InputError
from tao_core.sim.engine import SimResult, Simulator
from tao_core.sim.gpu_limits import GpuLimitModel
from tao_core.sim.metrics import lower_bound_j, summarize
from tao_core.sim.model import ClusterSpec, Workload
from tao_core.sim.policies import BASELINES
from tao_core.sim.verdict import undecided, verdicts

POLICY_NAMES = ("ray-default", "ray-default-autoscale", "ray-autoscale-1min", "dask-default", "dask-adaptive",
                "dask-adaptive-tuned", "spread", "pack", "tao")

#: seconds between scaling ticks of the controller while tasks wait
TAO_TICK_S = 1.0
#: lambdas (J/s) TAO is run at when its own run does not settle every baseline
SWEEP_LAMBDAS = (200.0, 2000.0, 2.0, 0.0, 20000.0)


@dataclass
class PolicySetup:
    """A policy object and how the simulator should tick it."""

    name: str
    policy: Any
    tick_interval_s: Optional[float]
    activity_horizons_s: tuple[float, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)


def build_policy(name: str, cluster: ClusterSpec, *, lambda_j_per_s: Optional[float] = None,
                 budget_w: Optional[float] = None, seed: int = 0,
                 event_sink: Optional[Callable[[DecisionEvent], None]] = None,
                 controller_options: Optional[dict[str, Any]] = None,
                 carbon: Optional[CarbonSignal] = None) -> PolicySetup:
    """The named policy for ``cluster``. ``budget_w``: IT watts (None: the cluster's own).
    ``carbon``: a carbon-intensity signal the controller uses to move deferrable tasks with
    deadlines to cleaner hours (the baselines ignore it, as the engines do)."""
    if name in BASELINES:
        cls = BASELINES[name]
        pol = cls(cluster.node_types, seed=seed, event_sink=event_sink)
        return PolicySetup(name, pol, pol.tick_interval_s, tuple(pol.activity_horizons_s),
                           {"policy": name, "seed": seed})
    if name != "tao":
        raise InputError(f"--policy: unknown policy {name!r}; choose from {', '.join(POLICY_NAMES)}")
    from tao_core.control import Controller, ControllerConfig

    budget = budget_w if budget_w is not None else cluster.power_budget_w
    # the adapters' configuration: only the budget (inf is none), its scope and the PUE come from the run
    opts: dict[str, Any] = dict(power_budget_w=budget, budget_scope="it", pue=cluster.pue)
    if lambda_j_per_s is not None:
        opts["lambda_j_per_s"] = lambda_j_per_s
    if event_sink is None:
        opts["emit_events"] = False
        opts["alternatives"] = 0
    opts.update(controller_options or {})
    try:
        cfg = ControllerConfig(**opts)
    except TypeError as exc:
        raise InputError(f"controller options: {exc}") from None
    used = sorted({n.node_type for n in cluster.nodes})
    ctl = Controller([cluster.node_types[t] for t in used], cfg, event_sink=event_sink)
    ctl.set_carbon_signal(carbon)
    model = GpuLimitModel(cluster.node_types)
    for t in used:  # the limits the simulator models, offered as an NVML actuator would
        lims = model.limits_w(t)
        if lims is not None:
            ctl.enable_gpu_power_limits(t, lims)
    # ticks: the next grid tick after any change; the controller's own timer (next_plan_s)
    # says when an idle timeout runs out or the forecast moves on
    conf = {k: (v if isinstance(v, (int, float, str, bool, type(None))) else dict(v)) for k, v in vars(cfg).items()}
    return PolicySetup("tao", ctl, TAO_TICK_S, (TAO_TICK_S,), conf)


def run_policy(setup: PolicySetup, cluster: ClusterSpec, workload: Workload, *, budget_w: Optional[float] = None,
               progress: bool = False, strict: bool = True, record_timeline: bool = True,
               duration_hints: bool = False, gpu_limits: bool = True) -> SimResult:
    """Simulate one policy. ``gpu_limits``: model the measured effect of GPU power limits
    on the node types :mod:`tao_core.sim.gpu_limits` has profiles for (every policy runs on
    the same model; only one that sets limits changes anything)."""
    sim = Simulator(cluster, workload.tasks, setup.policy, policy_name=setup.name, budget_w=budget_w,
                    initial_state=NodeState.ON, duration_hints=duration_hints, strict=strict, progress=progress,
                    record_timeline=record_timeline, tick_interval_s=setup.tick_interval_s,
                    activity_horizons_s=setup.activity_horizons_s,
                    gpu_limits=GpuLimitModel(cluster.node_types) if gpu_limits else None)
    return sim.run()


def run_all(cluster: ClusterSpec, workload: Workload, policies: Sequence[str] = POLICY_NAMES, *,
            budget_w: Optional[float] = None, lambda_j_per_s: Optional[float] = None, seed: int = 0,
            progress: bool = False, sink_factory: Optional[Callable[[str], Optional[Callable]]] = None,
            controller_options: Optional[dict[str, Any]] = None, strict: bool = True,
            on_result: Optional[Callable[[str, PolicySetup, SimResult], None]] = None,
            carbon: Optional[CarbonSignal] = None, sweep: Sequence[float] = SWEEP_LAMBDAS,
            sweep_all: bool = False) -> dict[str, Any]:
    """Run every named policy on the same inputs; the ``tao simulate --json`` document
    (``results`` holds the SimResult objects, not serialised), with ``verdicts`` and
    ``tao_sweep`` when TAO ran beside baselines (see the module docstring)."""
    bound = lower_bound_j(cluster, workload)
    budget = budget_w if budget_w is not None else cluster.power_budget_w
    out: dict[str, Any] = {"lower_bound_j": bound, "power_budget_w": None if budget == math.inf else budget,
                           "pue": cluster.pue,
                           "carbon_source": carbon.source if carbon is not None else None,
                           "nodes": len(cluster.nodes), "tasks": len(workload), "policies": {}, "results": {}}
    for name in policies:
        sink = sink_factory(name) if sink_factory is not None else None
        setup = build_policy(name, cluster, lambda_j_per_s=lambda_j_per_s, budget_w=budget, seed=seed,
                             event_sink=sink, controller_options=controller_options, carbon=carbon)
        res = run_policy(setup, cluster, workload, budget_w=budget, progress=progress, strict=strict)
        out["policies"][name] = summarize(res, cluster, workload, bound, carbon=carbon)
        out["results"][name] = res
        if on_result is not None:
            on_result(name, setup, res)
    if "tao" in out["policies"] and len(out["policies"]) > 1:
        _judge(out, cluster, workload, bound, budget, lambda_j_per_s, seed, controller_options, carbon,
               sweep, sweep_all)
    return out


def _judge(out: dict[str, Any], cluster: ClusterSpec, workload: Workload, bound: float, budget: Optional[float],
           lambda_j_per_s: Optional[float], seed: int, controller_options: Optional[dict[str, Any]],
           carbon: Optional[CarbonSignal], sweep: Sequence[float], sweep_all: bool) -> None:
    """The TAO sweep (as far as needed) and the verdict per baseline, into ``out``."""
    from tao_core.control import ControllerConfig

    used = lambda_j_per_s if lambda_j_per_s is not None else ControllerConfig().lambda_j_per_s
    pol = out["policies"]
    done: dict[str, Any] = {}
    for lam in sweep:
        if not sweep_all and not undecided(pol, done):
            break
        if lam == used:
            continue
        setup = build_policy("tao", cluster, lambda_j_per_s=lam, budget_w=budget, seed=seed,
                             controller_options=controller_options, carbon=carbon)
        res = run_policy(setup, cluster, workload, budget_w=budget, record_timeline=carbon is not None)
        done[f"{lam:g}"] = summarize(res, cluster, workload, bound, carbon=carbon)
    out["tao_lambda_j_per_s"] = used
    out["tao_sweep"] = done
    out["verdicts"] = [asdict(v) for v in verdicts(pol, done)]
