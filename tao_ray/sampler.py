"""The sampler actor of one node: a shell around :class:`tao_core.live.sampler.NodeSampler`,
pinned to its node (hard node affinity, ``num_cpus=0``, restarted by Ray when its process
dies). It describes the node's hardware when the node has no declared type
(``tao_core.hardware.describe_this_node`` with the node's CPU resource), models several Ray
nodes on one machine from their own raylet's processes, forwards power to the controller
actor, exports Ray metrics and keeps a fitted curve for the next run at shutdown.

Every method takes the session token first and refuses callers without it; Ray records
no task events for this actor's calls (``enable_task_events=False``).
"""
from __future__ import annotations

import logging
from typing import Any, Optional

import psutil
import ray

from tao_core.attribution import Attribution
from tao_core.hardware import curve_provenance, describe_this_node
from tao_core.live.sampler import NodeSampler as CoreSampler
from tao_core.live.sampler import SamplerSink, make_source
from tao_core.live.values import SamplerBatch, SpanRow, TimelineRow
from tao_core.power.fitted_cache import remember_fit
from tao_core.power.node_json import node_type_from_dict, node_type_to_dict
from tao_ray.records import CONTROLLER_NAME, NAMESPACE, Guarded

log = logging.getLogger("tao_ray")


def find_raylet_pid() -> Optional[int]:
    """Pid of the raylet among this process's ancestors (a Ray worker's parent), or None."""
    try:
        p = psutil.Process().parent()
        while p is not None and "raylet" not in p.name():
            p = p.parent()
        return None if p is None else p.pid
    except (psutil.Error, OSError):
        return None


class _Metrics:
    """The sampler's Ray metrics; this one, where Ray's metrics cannot be made, drops them."""

    def power(self, row: TimelineRow) -> None: ...

    def settled(self, att: Attribution, source: str) -> None: ...


class _RayMetrics(_Metrics):
    def __init__(self, node_id: str) -> None:
        from ray.util.metrics import Counter, Gauge

        self.tags = {"node_id": node_id}
        self._power = Gauge("tao_node_power_watts", description="Node power (W) as TAO reads or models it",
                            tag_keys=("node_id", "source"))
        self._task_j = Counter("tao_task_energy_joules", description="Energy attributed to TAO tasks once settled (J)",
                               tag_keys=("group", "job", "source"))
        self._idle_j = Counter("tao_node_idle_energy_joules", tag_keys=("node_id", "source"),
                               description="Node energy attributed to no task once settled (J)")

    def power(self, row: TimelineRow) -> None:
        if row.power_w is not None:
            self._power.set(row.power_w, tags={**self.tags, "source": row.source})

    def settled(self, att: Attribution, source: str) -> None:
        if len(att.tasks):
            for (group, job), e in att.tasks.groupby(["group", "job"], dropna=False)["energy_j"].sum().items():
                if e > 0:
                    self._task_j.inc(float(e), tags={"group": str(group), "job": str(job), "source": source})
        if att.idle_j > 0:
            self._idle_j.inc(float(att.idle_j), tags={**self.tags, "source": source})


def _metrics(node_id: str) -> _Metrics:
    try:
        return _RayMetrics(node_id)
    except Exception as e:  # noqa: BLE001 - Ray's metrics are optional
        log.warning("tao sampler %s: Ray metrics unavailable (%s); no tao_ node metrics", node_id[:12], e)
        return _Metrics()


class _Sink(SamplerSink):
    """Ray metrics, and the latest power to the controller every ``push_every_s`` (fire and forget)."""

    def __init__(self, token: str, node_id: str, push_every_s: float = 0.5) -> None:
        self.token, self.node_id, self.push_every_s = token, node_id, push_every_s
        self.metrics = _metrics(node_id)
        self._last = 0.0
        self._controller: Any = None

    def row(self, row: TimelineRow, temperature_k: Optional[float]) -> None:
        self.metrics.power(row)
        if row.t_s - self._last < self.push_every_s:
            return
        self._last = row.t_s
        try:
            self._controller = self._controller or ray.get_actor(CONTROLLER_NAME, namespace=NAMESPACE)
            self._controller.do.remote(self.token, "observe", self.node_id, row.t_s, row.power_w, row.util,
                                       temperature_k)
        except Exception:  # noqa: BLE001 - controller down: looked up again next time
            self._controller = None

    def settled(self, att: Attribution, source: str) -> None:
        self.metrics.settled(att, source)


@ray.remote(num_cpus=0, max_restarts=-1, enable_task_events=False)
class NodeSampler(Guarded):
    """``node_type``: the declared type (JSON form), None to describe the node's hardware."""

    def __init__(self, token: str, node_id: str, cpus: float, node_type: Optional[dict], shared_machine: bool,
                 interval_s: float) -> None:
        self._token, self._who, self.node_id = token, f"tao-sampler {node_id[:12]}", node_id
        self.hardware_key: Optional[str] = None
        if node_type is None:
            d = describe_this_node(cpus=cpus)
            nt, prov, self.hardware_key = d.node_type, d.model.provenance, d.hardware_key
        else:
            nt = node_type_from_dict(node_type)
            prov = curve_provenance(nt)
        self.node_type, self.provenance = nt, prov
        raylet = find_raylet_pid() if shared_machine else None
        source = make_source(nt.power_curve, cpus or nt.cpus, processes=None if raylet is None else lambda: [raylet],
                             uncertainty=prov.uncertainty, label=f"{nt.name} power curve ({prov.origin}: {prov.method})")
        self.core = CoreSampler(node_id, source, cpus=cpus or nt.cpus, idle_w=nt.idle_w, interval_s=interval_s,
                                sink=_Sink(token, node_id)).start()

    def ping(self, token: str) -> str:
        self._check(token)
        return self.node_id

    def info(self, token: str) -> dict[str, Any]:
        self._check(token)
        src = self.core.source
        return {"node_id": self.node_id, "node_type": node_type_to_dict(self.node_type), "source": str(src.kind),
                "method": getattr(src, "method", ""), "incarnation": self.core.incarnation,
                "hardware_key": self.hardware_key, **self.provenance.to_dict()}

    def read_now(self, token: str) -> TimelineRow:
        """A reading now (closes the timeline at this instant)."""
        self._check(token)
        return self.core.sample()

    def fetch(self, token: str, since: tuple[int, int, int] = (0, 0, 0)) -> SamplerBatch:
        self._check(token)
        return self.core.fetch(since)

    def add_spans(self, token: str, spans: list[SpanRow], pid: Optional[int] = None,
                  running_since: Optional[float] = None) -> None:
        self._check(token)
        self.core.add_spans(spans, pid, running_since)

    def settle(self, token: str) -> tuple[float, float]:
        self._check(token)
        return self.core.settle()

    def settled(self, token: str) -> dict[str, Any]:
        self._check(token)
        return {**self.core.status(), "refused_calls": self.refused}

    def remember(self, token: str, snapshot: Any) -> Optional[str]:
        """Keep the controller's fit of this node's curve for the next run (a discovered
        node with a measured source; ``tao_core.power.fitted_cache``)."""
        self._check(token)
        if self.hardware_key is None or snapshot is None:
            return None
        path = remember_fit(snapshot, self.hardware_key, str(self.core.source.kind))
        return None if path is None else str(path)
