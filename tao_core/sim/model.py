"""Simulator inputs: a cluster (node types and the nodes built from them) and a workload
(tasks with submit times, run times at speed 1.0 and resource demands).

Units: seconds, watts, joules.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

from tao_core.control.types import NodeType


@dataclass(frozen=True)
class SimNode:
    """One node of the simulated cluster: its id and the name of its type."""

    node_id: str
    node_type: str


@dataclass
class ClusterSpec:
    """A heterogeneous cluster.

    ``pue``: facility watts per IT watt (1.0: IT only). ``power_budget_w``: a cap on the
    cluster's IT power in watts (None: no cap). ``nodes`` lists every node in order; the
    order is the node order baselines use to break ties (as node ids do in the engines).
    """

    node_types: dict[str, NodeType]
    nodes: list[SimNode]
    pue: float = 1.0
    power_budget_w: Optional[float] = None
    source: str = ""  #: where the spec came from (file name), for messages

    @property
    def peak_w(self) -> float:
        """IT watts with every node ON and fully busy."""
        return sum(self.node_types[n.node_type].peak_w for n in self.nodes)

    @property
    def idle_w(self) -> float:
        """IT watts with every node ON and idle."""
        return sum(self.node_types[n.node_type].idle_w for n in self.nodes)

    def counts(self) -> dict[str, int]:
        """Number of nodes of each type."""
        out: dict[str, int] = {name: 0 for name in self.node_types}
        for n in self.nodes:
            out[n.node_type] += 1
        return out


@dataclass(slots=True)
class SimTask:
    """One task of a workload.

    ``submit_s``: arrival time, seconds. ``duration_s``: run time at speed 1.0 (on a node of
    speed s it runs ``duration_s / s``). ``cpus``/``gpus``: what it holds while running; it
    uses its CPUs fully. ``deadline_s``: absolute time it should finish by (same clock).
    ``units``: the useful work it does when it completes (unit -> amount, as a task would
    count it with ``tao.count``), carried into the ledger's group records.
    """

    task_id: str
    submit_s: float
    duration_s: float
    cpus: float
    gpus: float = 0.0
    group: str = "default"
    deadline_s: Optional[float] = None
    units: dict[str, float] = field(default_factory=dict)


@dataclass
class Workload:
    """Tasks sorted by submit time, plus notes on how they were derived from the input."""

    tasks: list[SimTask]
    source: str = ""
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.tasks)

    @property
    def cpu_seconds(self) -> float:
        """CPU-seconds of work at speed 1.0."""
        return sum(t.cpus * t.duration_s for t in self.tasks)

    @property
    def gpu_seconds(self) -> float:
        """GPU-seconds of work at speed 1.0."""
        return sum(t.gpus * t.duration_s for t in self.tasks)


def make_nodes(counts: Sequence[tuple[str, int]]) -> list[SimNode]:
    """Nodes named ``<type>-<i>`` for each (type name, count), in the given order."""
    nodes: list[SimNode] = []
    for name, count in counts:
        nodes.extend(SimNode(f"{name}-{i}", name) for i in range(count))
    return nodes
