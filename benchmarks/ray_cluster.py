"""A heterogeneous Ray cluster on one machine (``ray.cluster_utils.Cluster``) for demos,
benchmarks and tests, plus the paced workload they run with Ray's default scheduling and
with TAO. The head node runs Ray's dashboard: TAO reads Ray's task events through it.

Each worker node carries the label ``tao-node-type`` of its node type. ``power_off(node_id)``
removes the node from the cluster (its processes end: the stand-in for an autoscaler
terminating it) and ``power_on(node_type)`` adds a fresh node of that type; pass them to
``tao_ray.init(on_power_off=..., on_power_on=...)``.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import ray
from ray.cluster_utils import Cluster

from tao_ray.nodes import TYPE_LABEL

ROOT = Path(__file__).resolve().parents[1]  # the repository


@dataclass
class LocalCluster:
    """``nodes``: (node type name, logical CPUs) of each worker node; the head node gets
    ``head_cpus`` CPUs and no TAO type (the driver, controller and gate live there).
    ``system_config``: Ray's ``_system_config`` for the cluster (e.g.
    ``{"metrics_report_interval_ms": 1000}``)."""

    nodes: Sequence[tuple[str, int]]
    head_cpus: int = 0
    system_config: Optional[dict[str, Any]] = None
    cluster: Any = None
    removed: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    _to_add: list[str] = field(default_factory=list)  # power-on requests from other threads

    def start(self) -> "LocalCluster":
        # workers must import this repository's packages and this module (the workload's
        # functions live here) wherever the driver was started
        pp = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        os.environ["PYTHONPATH"] = os.pathsep.join([*(str(d) for d in (ROOT, ROOT / "benchmarks") if str(d) not in pp), *pp])
        head = dict(num_cpus=self.head_cpus, include_dashboard=True)
        if self.system_config:
            head["_system_config"] = dict(self.system_config)
        self.cluster = Cluster(initialize_head=True, head_node_args=head)
        for typ, cpus in self.nodes:
            self.cluster.add_node(num_cpus=cpus, labels={TYPE_LABEL: typ})
        self.cluster.wait_for_nodes()
        ray.init(address=self.cluster.address, log_to_driver=False)
        return self

    def _cpus_of(self, typ: str) -> int:
        return next(c for t, c in self.nodes if t == typ)

    def power_off(self, node_id: str) -> None:
        """Remove the worker node ``node_id`` (hex) from the cluster."""
        for n in self.cluster.worker_nodes:
            if n.node_id == node_id:
                self.cluster.remove_node(n, allow_graceful=True)
                self.removed.append(node_id)
                return
        raise KeyError(f"no worker node {node_id}")

    def power_on(self, typ: str) -> None:
        """Add one node of type ``typ`` (as many CPUs as the first node of that type).

        Starting a node installs signal handlers, which only the main thread may do: a call
        from another thread (TAO's sync thread) is queued and carried out by :meth:`service`."""
        if threading.current_thread() is not threading.main_thread():
            self._to_add.append(typ)
            return
        n = self.cluster.add_node(num_cpus=self._cpus_of(typ), labels={TYPE_LABEL: typ}, wait=False)
        self.added.append(n.node_id)

    def service(self) -> None:
        """Carry out queued power-on requests (call from the main thread)."""
        while self._to_add:
            self.power_on(self._to_add.pop(0))

    def stop(self) -> None:
        try:
            ray.shutdown()
        finally:
            if self.cluster is not None:
                self.cluster.shutdown()


def paced_workload(fn: Any, *, tasks: int, interval_s: float, work_s: float,
                   service: Callable[[], None] = lambda: None) -> tuple[list, float, float]:
    """Submit ``tasks`` calls ``fn.remote(i, work_s)`` one every ``interval_s`` seconds and wait
    for all, calling ``service()`` from this (main) thread meanwhile. Returns (results, start
    time, end time) in wall-clock seconds."""
    t0 = time.time()
    refs = []
    for i in range(tasks):
        target = t0 + i * interval_s
        delay = target - time.time()
        if delay > 0:
            time.sleep(delay)
        service()
        refs.append(fn.remote(i, work_s))
    pending = list(refs)
    while pending:
        _, pending = ray.wait(pending, num_returns=len(pending), timeout=0.1)
        service()
    out = ray.get(refs)
    return out, t0, time.time()


def job(i: int, work_s: float) -> tuple[int, str]:
    """A request-like task: ``work_s`` seconds, about a fifth of them busy on the CPU."""
    end = time.time() + work_s
    while time.time() < end:
        busy = time.time() + 0.01
        while time.time() < busy:
            pass
        time.sleep(0.04)
    return i, ray.get_runtime_context().get_node_id()


def compare(nodes: Sequence[tuple[str, int]], node_types: Sequence[Any], *, tasks: int, interval_s: float,
            work_s: float, variants: Sequence[str] = ("default", "tao"), report_path: Optional[str] = None,
            log: Callable[[str], None] = print, controller_config: Any = None) -> dict[str, dict[str, Any]]:
    """Run the paced workload once per variant, each on a fresh cluster:

    - ``default``: plain ``@ray.remote`` tasks under Ray's default scheduling; TAO only
      accounts them (from Ray's task events; nothing is placed or powered off);
    - ``tao``: TAO placement, and idle nodes powered off when the controller plans it
      (``LocalCluster.power_off``; their energy after removal is modeled as 0 W, the node
      types' ``off_w``); none is added back;
    - ``tao-placement-only``: TAO placement, every node stays on.

    Energy: TAO's report over one window, from the first submission to the last result, of
    every node (the printed figures are the report's).
    """
    import tao_ray

    results: dict[str, dict[str, Any]] = {}
    for variant in variants:
        lc = LocalCluster(nodes).start()
        try:
            kw: dict[str, Any] = {}
            if variant == "tao":
                # nodes TAO powers off are removed; no node is added back: the workload fits
                # the nodes at hand, and adding a Ray node takes seconds of process start-up
                # that the controller's boot model does not know (scale-up through Ray's
                # autoscaler is tested on its fake multi-node provider)
                kw = dict(on_power_off=lc.power_off)
            tao_ray.init(node_types, config=controller_config() if controller_config else None, **kw)
            fn = ray.remote(job) if variant == "default" else tao_ray.remote(job)
            time.sleep(1.0)  # samplers' first readings
            out, t0, t1 = paced_workload(fn, tasks=tasks, interval_s=interval_s, work_s=work_s, service=lc.service)
            path = report_path if variant != "default" else None
            df = tao_ray.report(path, window=(t0, t1))
            rep = df.attrs["report"]
            types = {n: v["type"] for n, v in tao_ray.stats()["nodes"].items()}
            by_type: dict[str, int] = {}
            for _, nid in out:
                by_type[types.get(nid, "?")] = by_type.get(types.get(nid, "?"), 0) + 1
            res = {"energy_j": rep["energy"]["it_energy_j"], "task_energy_j": float(df["energy_j"].sum()),
                   "makespan_s": t1 - t0, "tasks": len(out), "tasks_accounted": int(len(df)),
                   "tasks_by_node_type": by_type, "nodes_powered_off": len(lc.removed),
                   "nodes_added": len(lc.added), "window_s": [t0, t1],
                   "energy_by_node_j": {f"{types.get(r['node_id'], '?')}:{r['node_id'][:8]}": round(r["energy_j"], 1)
                                        for r in rep["energy"]["by_node"]},
                   "source": "modeled"}
            if path:
                res["report"] = path
            results[variant] = res
            log(f"{variant:<20} energy {res['energy_j']:9.1f} J   makespan {res['makespan_s']:6.2f} s   "
                f"tasks by node type {by_type}   nodes powered off {len(lc.removed)}   tasks in report "
                f"{res['tasks_accounted']}")
        finally:
            if tao_ray.is_initialized():
                tao_ray.shutdown()
            lc.stop()
    return results
