"""TAO for Dask: energy-aware placement, deferral, scaling and per-task energy.

One line on a running cluster::

    import tao_dask
    tao_dask.register(client, workers={"0": "IbmX3250XeonX3470", "1": "HpProLiantMl110G3PentiumD930"})

or, for a scheduler started from the command line, ``dask scheduler --preload tao_dask``
(settings from the JSON file named by ``TAO_DASK_CONFIG``; see :func:`dask_setup`).
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any, Mapping, Optional, Sequence, Union

from tao_core.control.types import NodeType
from tao_core.errors import InputError
from tao_dask.adaptive import EnergyAdaptive
from tao_dask.profiles import NodeAssignment, node_type_for, specpower_curves
from tao_dask.reporting import report
from tao_dask.placement import HOLD_ADDRESS, EnergyBudgetExceeded
from tao_dask.scheduler_plugin import TAOSchedulerPlugin
from tao_dask.worker_plugin import TAOWorkerPlugin

__all__ = [
    "register", "report", "dask_setup", "EnergyAdaptive", "TAOSchedulerPlugin", "TAOWorkerPlugin",
    "NodeAssignment", "node_type_for", "specpower_curves", "HOLD_ADDRESS", "EnergyBudgetExceeded",
]

logger = logging.getLogger("tao_dask")

CONFIG_ENV = "TAO_DASK_CONFIG"


def _controller_config(config: Any) -> Any:
    if config is None or not isinstance(config, Mapping):
        return config
    from tao_core.control import ControllerConfig

    try:
        return ControllerConfig(**config)
    except TypeError as exc:
        raise InputError(f"controller config: {exc}; use the ControllerConfig field names") from None


def plugins(
    *,
    node_types: Optional[Sequence[NodeType]] = None,
    workers: Optional[Mapping[Any, Union[str, NodeType]]] = None,
    default_type: Optional[Union[str, NodeType]] = None,
    config: Any = None,
    place: bool = True,
    min_task_s: float = 0.02,
    telemetry_interval_s: float = 0.5,
    pump_interval_s: float = 0.1,
    watchdog_s: float = 10.0,
) -> tuple[TAOSchedulerPlugin, TAOWorkerPlugin]:
    """The scheduler and worker plugins for these settings (see :func:`register`)."""
    assignment = NodeAssignment.build(node_types, workers, default_type)
    sp = TAOSchedulerPlugin(assignment, _controller_config(config), place=place,
                            min_task_s=min_task_s, pump_interval_s=pump_interval_s,
                            watchdog_s=watchdog_s)
    wp = TAOWorkerPlugin(assignment, interval_s=telemetry_interval_s)
    return sp, wp


def register(client: Any, **kwargs: Any) -> TAOSchedulerPlugin:
    """Enable TAO on the cluster ``client`` is connected to.

    Keyword arguments: ``node_types`` (declared NodeTypes), ``workers`` (worker name ->
    node type name or NodeType), ``default_type`` (for workers not named), ``config``
    (a ``ControllerConfig`` or a dict of its fields: power budget, lambda, ...),
    ``place`` (False: observe and account only), ``min_task_s``, ``telemetry_interval_s``,
    ``watchdog_s`` (how long a parked task may wait while a worker idles and TAO runs
    nothing before Dask places it).
    The live plugin is the scheduler's copy (``register_plugin`` pickles it); read its
    state with :func:`report`.
    """
    sp, wp = plugins(**kwargs)
    client.register_plugin(sp)
    client.register_plugin(wp)
    return sp


def _file_settings() -> dict[str, Any]:
    path = os.environ.get(CONFIG_ENV)
    if not path:
        return {}
    try:
        with open(path) as f:
            raw = json.load(f)
    except (OSError, ValueError) as exc:
        raise InputError(f"{CONFIG_ENV}={path}: cannot read a JSON object ({exc})") from None
    if not isinstance(raw, dict):
        raise InputError(f"{CONFIG_ENV}={path}: expected a JSON object")
    types = []
    for i, t in enumerate(raw.pop("node_types", [])):
        try:
            from tao_core.power.curve import PowerCurve

            types.append(NodeType(name=t["name"], cpus=float(t["cpus"]),
                                  power_curve=PowerCurve(tuple(t["power_curve_w"])),
                                  speed=float(t.get("speed", 1.0))))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{CONFIG_ENV}: node_types[{i}]: needs name, cpus, power_curve_w (11 watts) ({exc})") from None
    if types:
        raw["node_types"] = types
    return raw


def dask_setup(server: Any) -> None:
    """Preload hook: ``dask scheduler --preload tao_dask`` adds the scheduler plugin and
    hands the worker plugin to every worker that joins (a worker started with
    ``TAO_NODE_TYPE=<type>`` in its environment reports that type). Settings: the JSON
    file named by ``TAO_DASK_CONFIG`` (keys as :func:`register`'s keyword arguments)."""
    from distributed import Scheduler
    from distributed.protocol.pickle import dumps

    if not isinstance(server, Scheduler):
        logger.info("TAO: nothing to preload on a worker; the scheduler hands TAO's worker plugin to it")
        return

    try:
        sp, wp = plugins(**_file_settings())
    except InputError:
        raise
    except Exception:
        logger.warning("TAO: preload failed; Dask runs without TAO", exc_info=True)
        return
    server.add_plugin(sp, idempotent=True)
    server.worker_plugins.setdefault(wp.name, dumps(wp))
