"""The public calls of tao_dask: ``register``, ``plugins``, ``stats`` and the scheduler preload
``dask_setup`` (re-exported by the package, which loads this module on first use)."""
from __future__ import annotations

import logging
import os
import time
import warnings
from typing import Any, Mapping, Optional, Sequence, Union

from tao_core.control.types import NodeType
from tao_core.errors import InputError
from tao_core.live.assignment import NodeAssignment
from tao_dask.scheduler_plugin import TAOSchedulerPlugin
from tao_dask.worker_plugin import TAOWorkerPlugin


class ObserveOnlyWarning(UserWarning):
    """No worker has a TAO node type: TAO places nothing and meters no worker."""


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
    discover: bool = True,
    config: Any = None,
    place: bool = True,
    min_task_s: float = 0.02,
    telemetry_interval_s: float = 0.5,
    pump_interval_s: float = 0.1,
    watchdog_s: float = 10.0,
) -> tuple[TAOSchedulerPlugin, TAOWorkerPlugin]:
    """The scheduler and worker plugins for these settings (see :func:`register`)."""
    assignment = NodeAssignment.build(node_types, workers, default_type, discover)
    sp = TAOSchedulerPlugin(assignment, _controller_config(config), place=place,
                            min_task_s=min_task_s, pump_interval_s=pump_interval_s,
                            watchdog_s=watchdog_s)
    wp = TAOWorkerPlugin(assignment, interval_s=telemetry_interval_s)
    return sp, wp


def register(client: Any, *, typed_timeout_s: float = 10.0, **kwargs: Any) -> TAOSchedulerPlugin:
    """Enable TAO on the cluster ``client`` is connected to; with no arguments each worker
    describes its hardware and carries the node type named after it.

    Keyword arguments: ``node_types`` (declared NodeTypes), ``workers`` (worker name ->
    node type name or NodeType), ``default_type`` (for workers not named), ``discover``
    (False: a worker without a declared type is not modeled), ``config`` (a
    ``ControllerConfig`` or a dict of its fields: power budget, lambda, ...), ``place``
    (False: observe and account only), ``min_task_s``, ``telemetry_interval_s``,
    ``watchdog_s`` (how long a parked task may wait while a worker idles and TAO runs
    nothing before Dask places it). A declared type overrides the described one.

    When no worker of the cluster has a type within ``typed_timeout_s`` seconds, it warns
    (:class:`ObserveOnlyWarning`) that TAO only observes; :func:`stats` says so too. A
    cluster with no worker yet is warned about only when no worker could be typed.
    The live plugin is the scheduler's copy (``register_plugin`` pickles it); read its
    state with :func:`tao_dask.report` and :func:`stats`."""
    sp, wp = plugins(**kwargs)
    client.register_plugin(sp)
    client.register_plugin(wp)
    a = sp.assignment
    can_type = a.declares_any or a.discover or os.environ.get("TAO_NODE_TYPE")
    _warn_if_observing(client, sp.name, typed_timeout_s if can_type else 0.0)
    return sp


def stats(client: Any, name: str = "tao") -> dict[str, Any]:
    """What TAO does on the cluster: ``mode`` ("placing" or "observe-only") and ``why``,
    counters, tasks parked and pinned now, telemetry dropped by reason."""
    return client.run_on_scheduler(lambda dask_scheduler, name=name: dask_scheduler.plugins[name].stats())


def _warn_if_observing(client: Any, name: str, timeout_s: float) -> None:
    """Warn when TAO only observes: no worker got a type within ``timeout_s`` (0: the
    assignment can type none). A cluster with no worker yet (an adaptive one at
    ``minimum=0``) whose workers can be typed is not warned about: they get their types
    as they join."""
    end = time.time() + timeout_s
    while True:
        st = stats(client, name)
        if st["mode"] == "placing" or not st["placing"]:
            return
        if not client.scheduler_info().get("workers"):
            if timeout_s > 0:
                return
            break
        if time.time() >= end:
            break
        time.sleep(0.1)
    msg = f"tao_dask: {st['why']}"
    logger.warning(msg)
    warnings.warn(msg, ObserveOnlyWarning, stacklevel=3)


def _file_settings() -> dict[str, Any]:
    from tao_core.files import load_json_file
    from tao_core.power.node_json import node_type_from_dict

    path = os.environ.get(CONFIG_ENV)
    if not path:
        return {}
    raw = load_json_file(path, CONFIG_ENV)
    if not isinstance(raw, dict):
        raise InputError(f"{CONFIG_ENV}={path}: expected a JSON object with register()'s keyword arguments")
    types = raw.pop("node_types", [])
    if not isinstance(types, list):
        raise InputError(f"{CONFIG_ENV}={path}: node_types must be a list of node types")
    if types:
        raw["node_types"] = [node_type_from_dict(t, f"{CONFIG_ENV} node_types[{i}]") for i, t in enumerate(types)]
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
