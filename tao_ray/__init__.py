"""tao_ray: TAO on a Ray cluster.

```python
import ray, tao_ray
ray.init(...)
tao_ray.init(node_types=[...])          # controller actor + one sampler per node

@tao_ray.remote(num_cpus=1)             # or tao_ray.options(existing_remote_fn)
def work(x): ...

ray.get([work.remote(i) for i in range(100)])
df = tao_ray.report("energy.json")     # per-task energy (pandas) + the JSON report
tao_ray.shutdown()
```

The adapter turns Ray events into :class:`tao_core.control.Controller` calls and its
decisions into Ray actions; it holds no policy of its own. See the README, section "Ray".
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import pandas as pd

from tao_core.control.config import ControllerConfig
from tao_core.control.types import NodeType
from tao_core.errors import InputError
from tao_ray import _state
from tao_ray.api import TaoActorClass, TaoRemoteFunction, options, placement_group, remote
from tao_ray.nodes import TYPE_LABEL, specpower_node_type

__all__ = [
    "init", "shutdown", "remote", "options", "placement_group", "report", "stats", "is_initialized",
    "specpower_node_type", "TYPE_LABEL", "TaoRemoteFunction", "TaoActorClass",
]

log = logging.getLogger("tao_ray")


def init(
    node_types: Union[Sequence[NodeType], Mapping[str, NodeType]],
    *,
    config: Optional[ControllerConfig] = None,
    power_budget_w: Optional[float] = None,
    node_type_of: Optional[Mapping[str, str]] = None,
    default_type: Optional[str] = None,
    sample_interval_s: float = 0.2,
    sync_interval_s: float = 0.1,
    timeout_s: float = 2.0,
    slot_linger_s: float = 0.5,
    node_poll_s: float = 1.0,
    strict_admission: Optional[bool] = None,
    on_power_off: Optional[Callable[[str], Any]] = None,
    on_power_on: Optional[Callable[[str], Any]] = None,
    drain: str = "none",
    shared_machine: Optional[bool] = None,
    launchable: Optional[Mapping[str, int]] = None,
    hint_with: str = "label",
) -> Any:
    """Start TAO on the connected Ray cluster (call after ``ray.init``).

    ``node_types``: the TAO node types (power curve, CPUs, ...). A node's type comes from
    ``node_type_of`` (node id -> type name), else its ``tao-node-type`` label, else a
    ``tao_type_NAME`` resource, else ``default_type``; nodes with none are left to Ray.
    ``config``/``power_budget_w``: the controller's knobs (watts). ``strict_admission``
    (default: on when a power budget is set): tasks wait on the driver for a grant.
    ``on_power_off(node_id)`` / ``on_power_on(node_type)``: how to remove or add a node
    (default: nothing / ``request_resources`` hints); ``drain``: "none" or "gcs" (see
    :mod:`tao_ray.autoscale`). ``shared_machine``: force (True/False) modeling each node from
    its own processes; default: when several nodes share one address.
    ``launchable``: node type -> most nodes of that type Ray's autoscaler may run; TAO then
    keeps the missing ones as nodes that are off in the controller's view, and when the
    controller boots one TAO asks the autoscaler for it with ``request_resources`` and the
    type's label selector (the autoscaler's node types must carry ``tao-node-type`` labels),
    or with ``hint_with="resource"`` one unit of the type's ``tao_type_NAME`` resource.
    ``timeout_s``: seconds without an answer from the controller before failing open.
    Returns the driver runtime.
    """
    import ray

    if not ray.is_initialized():
        raise InputError("tao_ray.init: call ray.init(...) first (TAO attaches to a running Ray session)")
    if _state.runtime is not None:
        raise InputError("tao_ray.init: TAO is already initialised in this driver; call tao_ray.shutdown() first")
    if isinstance(node_types, Mapping):
        types = dict(node_types)
    else:
        types = {t.name: t for t in node_types}
    if not types:
        raise InputError("node_types: give at least one NodeType (see tao_ray.specpower_node_type)")
    if default_type is not None and default_type not in types:
        raise InputError(f"default_type {default_type!r}: not among node_types {sorted(types)}")
    cfg = config or ControllerConfig()
    if power_budget_w is not None:
        cfg.power_budget_w = float(power_budget_w)
        cfg = ControllerConfig(**cfg.__dict__)
    import importlib.util

    if importlib.util.find_spec("aiohttp") is None:
        log.info("tao_ray: Ray's metrics agent needs ray[default] (aiohttp and friends are missing here); "
                 "the tao_ metrics are recorded but no node exports them")
    from tao_ray.runtime import Runtime

    _state.runtime = Runtime(
        types, config=cfg, node_type_of=node_type_of, default_type=default_type,
        sample_interval_s=sample_interval_s, sync_interval_s=sync_interval_s, timeout_s=timeout_s,
        slot_linger_s=slot_linger_s, node_poll_s=node_poll_s, strict=strict_admission,
        on_power_off=on_power_off, on_power_on=on_power_on, drain=drain, shared_machine=shared_machine,
        launchable=launchable, hint_with=hint_with,
    )
    return _state.runtime


def is_initialized() -> bool:
    return _state.runtime is not None


def report(path: Optional[str] = None, *, ledger: Optional[str] = None, policy: str = "tao") -> pd.DataFrame:
    """Per-task energy since ``init`` as a DataFrame (task_id, group, job, node_id, start_s,
    end_s, energy_j, dynamic_j, static_j, source, method, uncertainty); writes the JSON energy
    report to ``path`` and the records to a signed ledger at ``ledger`` when given. Each
    figure carries its source (``modeled`` on a machine without power counters) and method."""
    rt = _state.runtime
    if rt is None:
        raise InputError("tao_ray.report: call tao_ray.init(...) first")
    from tao_ray import energy as _report

    df, rep = _report.write(rt, path, ledger, policy=policy)
    rt.last_report = rep
    return df


def stats() -> dict[str, Any]:
    """Driver counters (placed, deferred, default, fail_open_events, ...) and node states."""
    rt = _state.runtime
    if rt is None:
        return {}
    with rt.lock:
        return {"counters": dict(rt.counters), "queued": len(rt.queue), "failed_open": rt.failed_open,
                "nodes": {n: {"type": rt.node_type[n], "state": rt.node_state.get(n)} for n in rt.nodes},
                "budget": dict(rt.budget), "scale_log": list(rt.scale_log)}


def shutdown(kill_actors: bool = True) -> None:
    """Stop TAO in this driver: the sync thread, and (default) the controller and samplers."""
    rt = _state.runtime
    _state.runtime = None
    if rt is not None:
        rt.stop(kill_actors=kill_actors)
