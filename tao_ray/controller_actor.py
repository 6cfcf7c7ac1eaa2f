"""The controller actor: a named, detached, restartable Ray actor around one
:class:`tao_core.live.session.ControllerSession` (its module doc gives the protocol). On
restart it starts afresh with a new epoch; the driver then re-registers its nodes and
sends its waiting tasks again. Every call carries the session token; Ray records no task
events for this actor's calls (``enable_task_events=False``).
"""
from __future__ import annotations

import logging
from typing import Any, Optional

import ray

from tao_core.control.config import ControllerConfig
from tao_core.live.session import ControllerSession, Gauges, node_types_of
from tao_core.power.node_json import node_type_from_dict
from tao_ray.records import Guarded

log = logging.getLogger("tao_ray")

#: session methods the driver (and ``tao ray report``, samplers) may call through ``do``
CALLS = frozenset({"sync_nodes", "reset", "observe", "decide_one", "sync", "set_node_state", "decision_events",
                   "stats", "describe", "fitted_models", "energy_correction"})


class _RayGauges(Gauges):
    def __init__(self) -> None:
        from ray.util.metrics import Gauge

        self._cluster = Gauge("tao_cluster_power_watts", description="Cluster IT power (W), sum of node samplers")
        self._budget = Gauge("tao_power_budget_watts", description="Cluster power budget (W)")
        self._waiting = Gauge("tao_deferred_tasks", description="Tasks waiting in TAO's admission queue")

    def cluster(self, watts: float, budget_w: Optional[float]) -> None:
        self._cluster.set(watts)
        if budget_w is not None:
            self._budget.set(budget_w)

    def waiting(self, n: int) -> None:
        self._waiting.set(n)


def _gauges() -> Gauges:
    try:
        return _RayGauges()
    except Exception as e:  # noqa: BLE001 - Ray's metrics are optional
        log.warning("tao controller: Ray metrics unavailable (%s); no tao_ gauges", e)
        return Gauges()


@ray.remote(num_cpus=0, max_restarts=-1, enable_task_events=False)
class ControllerActor(Guarded):
    def __init__(self, token: str, node_types: list[dict[str, Any]], config: dict[str, Any]) -> None:
        self._token, self._who = token, "tao-controller"
        self.session = ControllerSession(node_types_of(node_types), ControllerConfig(**config), gauges=_gauges())

    def ping(self, token: str) -> str:
        self._check(token)
        return self.session.epoch

    def add_node_type(self, token: str, node_type: dict[str, Any]) -> None:
        """A node type a node described itself with (JSON form)."""
        self._check(token)
        self.session.add_node_type(node_type_from_dict(node_type))

    def do(self, token: str, method: str, *args: Any) -> Any:
        """``session.method(*args)`` for the methods in :data:`CALLS`."""
        self._check(token)
        if method not in CALLS:
            raise ValueError(f"tao-controller: no call {method!r}")
        out = getattr(self.session, method)(*args)
        return {**out, "refused_calls": self.refused} if method == "stats" else out
