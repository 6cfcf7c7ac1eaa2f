"""TAO figures on the scheduler's Prometheus endpoint (``/metrics``), names ``tao_*``.

Dask serves ``prometheus_client.REGISTRY`` at ``/metrics`` and registers its own
collectors there; TAO adds one collector that reads the live scheduler plugin. Units in
the names: watts, joules.
"""
from __future__ import annotations

import logging
import weakref
from typing import Any, Iterator

logger = logging.getLogger("tao_dask")

_current: "weakref.ref[Any] | None" = None
_registered = False


class TAOCollector:
    """Yields gauges and counters from the current :class:`TAOSchedulerPlugin`."""

    def describe(self) -> list:
        return []  # names vary with the plugin; collect() is cheap

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        plugin = _current() if _current is not None else None
        if plugin is None or getattr(plugin, "scheduler", None) is None:
            return
        try:
            power = GaugeMetricFamily("tao_node_power_watts", "Modeled wall power of each worker node (W)",
                                      labels=["worker", "node_type", "source"])
            energy = CounterMetricFamily("tao_node_energy_joules", "Cumulative modeled energy of each worker node (J)",
                                         labels=["worker", "node_type", "source"])
            inbox, nodes = plugin.inbox, plugin.members.nodes
            for addr, tl in list(inbox.timelines.items()):
                n = nodes.get(addr)
                tname = (n.type_name if n else None) or "unknown"
                if tl.t_s:
                    if addr in inbox.last_power:
                        power.add_metric([addr, tname, tl.source], tl.power_w[-1])
                    energy.add_metric([addr, tname, tl.source], tl.energy_j[-1])
            yield power
            yield energy
            yield GaugeMetricFamily("tao_cluster_power_watts", "Sum of the live workers' modeled power (W)",
                                    value=sum(inbox.last_power.values()))
            budget = getattr(plugin.config, "power_budget_w", None) if plugin.config is not None else None
            if budget is not None:
                yield GaugeMetricFamily("tao_power_budget_watts", "Cluster power budget (W)", value=budget)
            st = plugin.stats()
            yield GaugeMetricFamily("tao_tasks_parked", "Tasks TAO is holding back now", value=st["held_now"])
            yield GaugeMetricFamily("tao_placement_active", "1 while TAO places tasks, 0 when it only observes",
                                    value=1.0 if st["placing"] else 0.0)
            c = CounterMetricFamily("tao_tasks", "Task decisions by outcome", labels=["outcome"])
            for k, v in st["counts"].items():
                c.add_metric([k], v)
            yield c
            left = CounterMetricFamily("tao_tasks_left_to_dask", "Tasks TAO left to Dask's placement, by reason",
                                       labels=["reason"])
            for k, v in st["left_reasons"].items():
                left.add_metric([k], v)
            yield left
            placed = CounterMetricFamily("tao_tasks_placed_on", "Tasks TAO placed, per worker", labels=["worker"])
            for addr, v in st["placed_on"].items():
                placed.add_metric([addr], v)
            yield placed
        except Exception:
            logger.warning("TAO: collecting Prometheus metrics failed", exc_info=True)


def install(plugin: Any) -> None:
    """Point the collector at ``plugin``; register it once per process."""
    global _current, _registered
    _current = weakref.ref(plugin)
    if _registered:
        return
    try:
        import prometheus_client
    except ModuleNotFoundError:
        logger.info("TAO: prometheus_client is not installed; no tao_* metrics")
        return
    prometheus_client.REGISTRY.register(TAOCollector())
    _registered = True
