"""tao_ray: TAO on a Ray cluster.

```python
import ray, tao_ray
ray.init(...)
tao_ray.init()                          # each node describes its hardware; or node_types=[...]

@tao_ray.remote(num_cpus=1)             # or tao_ray.options(existing_remote_fn)
def work(x): ...

ray.get([work.remote(i) for i in range(100)])
df = tao_ray.report("energy.json")     # every task on the cluster, wrapped or not
tao_ray.shutdown()
```

The adapter turns Ray events into calls of core objects (:mod:`tao_core.live`) and their
decisions into Ray actions; it holds no policy or accounting of its own. See the README,
section "Ray".
"""
from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Sequence, Union

from tao_core.control.config import ControllerConfig
from tao_core.control.types import NodeType
from tao_core.errors import InputError
from tao_core.power.catalog import specpower_node_type
from tao_ray import _state
from tao_ray.api import TaoActorClass, TaoRemoteFunction, label_selector, options, placement_group, remote
from tao_ray.nodes import TYPE_LABEL

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "init", "shutdown", "remote", "options", "placement_group", "report", "stats", "is_initialized",
    "placements", "decisions", "timelines", "session_token", "energy_correction",
    "label_selector", "specpower_node_type", "TYPE_LABEL", "TaoRemoteFunction", "TaoActorClass",
    "ObserveOnlyWarning",
]

log = logging.getLogger("tao_ray")
#: seconds Ray's workers may take to hand their task events to the GCS (they report every 1 s)
TASK_EVENT_LAG_S = 1.5
#: most seconds ``report`` waits for Ray's events of the tasks that counted units
COUNTED_WAIT_S = 10.0


class ObserveOnlyWarning(UserWarning):
    """No Ray node has a TAO node type: TAO places nothing and meters no node."""


def init(
    node_types: Union[Sequence[NodeType], Mapping[str, NodeType]] = (),
    *,
    config: Optional[ControllerConfig] = None,
    power_budget_w: Optional[float] = None,
    node_type_of: Optional[Mapping[str, str]] = None,
    default_type: Optional[str] = None,
    discover: bool = True,
    sample_interval_s: float = 0.2,
    sync_interval_s: float = 0.1,
    timeout_s: float = 2.0,
    slot_linger_s: float = 0.5,
    node_poll_s: float = 1.0,
    task_events_poll_s: float = 15.0,
    strict_admission: Optional[bool] = None,
    on_power_off: Optional[Callable[[str], Any]] = None,
    on_power_on: Optional[Callable[[str], Any]] = None,
    drain: str = "none",
    shared_machine: Optional[bool] = None,
    launchable: Optional[Mapping[str, int]] = None,
    hint_with: str = "label",
) -> Any:
    """Start TAO on the connected Ray cluster (call after ``ray.init``).

    ``node_types``: declared TAO node types (power curve, CPUs, ...), for nodes that name
    one through ``node_type_of`` (node id -> type name), their ``tao-node-type`` label, a
    ``tao_type_NAME`` resource or ``default_type``. Every other node with CPUs describes its
    own hardware (``discover``; nodes of the same hardware share a type named after it).
    TAO neither places on nor meters a node with no type, and when no node has one it warns
    (:class:`ObserveOnlyWarning`) and says so in :func:`stats`. ``config``/``power_budget_w``:
    the controller's knobs (watts; ``config`` is not modified). ``strict_admission`` (default:
    on with a power budget): tasks wait on the driver for a grant. ``on_power_off(node_id)`` /
    ``on_power_on(node_type)``: how to remove or add a node (default: nothing /
    ``request_resources`` hints); ``drain``: "none" or "gcs" (:mod:`tao_ray.autoscale`); with
    no way to power a node off the controller plans no scale-down. ``shared_machine``: force
    (True/False) modeling each node from its own processes (default: when several nodes
    share one address). ``launchable``: node type -> most nodes of it Ray's autoscaler may
    run (``hint_with``: "label" or "resource" for its requests). ``timeout_s``: seconds
    without an answer from the controller before failing open. ``task_events_poll_s``:
    seconds between reads of Ray's task events. Returns the driver runtime.
    """
    import ray

    from tao_ray.runtime import Options, Runtime

    if not ray.is_initialized():
        raise InputError("tao_ray.init: call ray.init(...) first (TAO attaches to a running Ray session)")
    if _state.runtime is not None:
        raise InputError("tao_ray.init: TAO is already initialised in this driver; call tao_ray.shutdown() first")
    types = dict(node_types) if isinstance(node_types, Mapping) else {t.name: t for t in node_types}
    _check_args(types, default_type, drain, hint_with, launchable or {})
    cfg = dataclasses.replace(config or ControllerConfig())
    if power_budget_w is not None:
        cfg = dataclasses.replace(cfg, power_budget_w=float(power_budget_w))
    if not (on_power_off is not None or drain != "none" or launchable):
        cfg = dataclasses.replace(cfg, scale_down=False)  # no node could be turned off
    opts = Options(sample_interval_s=sample_interval_s, sync_interval_s=sync_interval_s, timeout_s=timeout_s,
                   slot_linger_s=slot_linger_s, node_poll_s=node_poll_s, task_events_poll_s=task_events_poll_s,
                   strict=(cfg.power_budget_w is not None) if strict_admission is None else bool(strict_admission),
                   on_power_off=on_power_off, on_power_on=on_power_on, drain=drain, hint_with=hint_with)
    rt = Runtime(types, dict(node_type_of=dict(node_type_of or {}), default_type=default_type, discover=discover,
                             shared_machine=shared_machine), cfg, opts, dict(launchable or {}))
    _state.runtime = rt
    from tao_core.live.token import save_token

    try:
        save_token("ray", rt.token)
    except (OSError, InputError) as e:
        log.warning("tao_ray: could not write the session token file (%s); give tao ray report --token", e)
    if not rt.driver.placing:
        msg = (f"tao_ray: no Ray node has a TAO node type ({len(rt.book.untyped)} untyped): TAO only observes. "
               f"It places nothing and meters no node, so no task gets energy. Give nodes a type with the "
               f"{TYPE_LABEL!r} label, a tao_type_NAME resource, node_type_of= or default_type=, or let them "
               "describe their hardware (discover=True).")
        log.warning(msg)
        warnings.warn(msg, ObserveOnlyWarning, stacklevel=2)
    return rt


def _check_args(types: Mapping[str, NodeType], default_type: Optional[str], drain: str, hint_with: str,
                launchable: Mapping[str, int]) -> None:
    if default_type is not None and default_type not in types:
        raise InputError(f"default_type {default_type!r}: not among node_types {sorted(types)}")
    if drain not in ("none", "gcs"):
        raise InputError("drain: use 'none' (leave removal to Ray's autoscaler idle timeout) or 'gcs'")
    if hint_with not in ("label", "resource"):
        raise InputError("hint_with: use 'label' (bundle label selectors) or 'resource' (tao_type_NAME resources)")
    for typ in launchable:
        if typ not in types:
            raise InputError(f"launchable: node type {typ!r} is not among node_types {sorted(types)}")


def is_initialized() -> bool:
    return _state.runtime is not None


def _runtime(what: str) -> Any:
    if _state.runtime is None:
        raise InputError(f"tao_ray.{what}: call tao_ray.init(...) first")
    return _state.runtime


def session_token() -> str:
    """The token this session's actors require (give it to ``tao ray report --token``)."""
    return _runtime("session_token").token


def report(path: Optional[str] = None, *, ledger: Optional[str] = None, policy: str = "tao",
           job: Optional[str] = None, window: Optional[tuple[float, float]] = None,
           carbon_intensity_g_per_kwh: Optional[float] = None) -> "pd.DataFrame":
    """Per-task energy of every task on the cluster in the window (default: from ``init`` to
    now; wall-clock s), wrapped by TAO or not, as a DataFrame (task_id, group, job, node_id,
    start_s, end_s, energy_j, dynamic_j, static_j, the components, source, method,
    uncertainty, known_by, actor_id, units); ``job`` (a Ray job id or a Ray Jobs submission id)
    limits the report and the frame to that job. ``units`` (unit -> amount): the units of
    work the task counted (``tao.count``); the report's ``work_units`` section gives joules
    per unit per group and job, and gCO2e per unit at ``carbon_intensity_g_per_kwh`` (the
    grid's location-based intensity, gCO2e/kWh; None: no emissions). Writes the JSON energy report to ``path``
    and the records to a signed ledger at ``ledger``; the report says per node type where
    its power curve came from (``hardware.node_types[].curve``: declared, discovered or
    fitted, and from what). ``df.attrs``: ``summary`` (the run's
    figures, budget adherence, what could not be accounted), ``report`` and ``nodes``.
    Every figure carries its source (``modeled`` without power counters) and method."""
    from tao_core.live import report as live_report

    rt = _runtime("report")
    t_call = time.time()
    # Ray's task events and the workers' unit counts (sent every 0.2 s) of tasks that
    # ended before this call are on their way: wait for them, then read every node
    time.sleep(max(0.0, t_call + TASK_EVENT_LAG_S - time.time()))
    rt.close_timelines()
    t0, t1 = window or (rt.t_start, t_call)
    nodes, wrapped, outcomes = rt.book.window(t0, t1)
    counts = rt.book.counts()
    # a task that counted units is charged them only once its record is here: wait for it
    rt.task_events.poll_until_seen({c.task_id for c in counts} - {w.task_id for w in wrapped}, COUNTED_WAIT_S)
    events = [e for e in rt.driver.decision_events() if t0 <= e.get("t_s", t0) <= t1]
    inp = live_report.ReportInputs("ray", dict(rt.nodes.node_types), nodes, wrapped + rt.task_events.rows(),
                                   rt.config.to_dict(), t0, t1, events, outcomes, rt.task_events.notes(),
                                   dict(rt.task_events.jobs), counts=counts,
                                   curves=rt.nodes.curve_provenance(lambda: rt.call("fitted_models")))
    df, rep = live_report.build(inp, path=path, ledger=ledger, policy=policy,
                                job=rt.task_events.resolve_job(job) if job else None,
                                carbon_intensity_g_per_kwh=carbon_intensity_g_per_kwh)
    rt.last_summary = df.attrs["summary"]
    if window is None and job is None:
        rt.export_unit_metrics(rep)
    return df


def placements() -> dict[str, str]:
    """Ray task id (hex) -> node id of the latest (at most 10,000) tasks TAO placed."""
    return {t.hex(): n for t, n in list(_runtime("placements").placements)}


def decisions() -> list[dict[str, Any]]:
    """The controller's decision events so far (``DecisionEvent.to_dict()``)."""
    return list(_runtime("decisions").driver.decision_events())


def timelines() -> dict[str, list[Any]]:
    """A copy of each metered node's timeline (:class:`tao_core.live.timeline.TimelineRow`)."""
    book = _runtime("timelines").book
    with book.lock:
        return {r.node_id: list(r.timeline.rows) for r in book.metered()}


def energy_correction(group: str) -> dict[str, float]:
    """What the controller learned of ``group``'s energy: measured / predicted attributed
    energy per node type (1.0 where nothing was learned)."""
    return _runtime("energy_correction").call("energy_correction", group)


def stats() -> dict[str, Any]:
    """What TAO is doing in this driver (:meth:`tao_core.live.driver.Driver.status`), with
    its counters (placed, deferred, default, ...), what Ray's task events could not give, the
    last report's summary and the controller's own statistics."""
    rt = _state.runtime
    if rt is None:
        return {}
    try:
        ctl = rt.call("stats")
    except Exception:  # noqa: BLE001 - down or failing open
        ctl = None
    st = rt.driver.status()
    return {**st, "counters": {**rt.counters, **st["counters"]}, "strict_admission": rt.opts.strict,
            "task_events": {"rows": len(rt.task_events.rows()), "not_accounted": rt.task_events.notes()},
            "last_report": rt.last_summary, "controller": ctl}


def shutdown(kill_actors: bool = True) -> None:
    """Stop TAO in this driver: the sync thread, and (default) the controller and samplers
    (samplers of discovered nodes with a measured source first keep the fitted curve)."""
    rt = _state.runtime
    _state.runtime = None
    if rt is not None:
        rt.stop(kill_actors=kill_actors)
