"""Ray's own autoscaler on one machine, for the live benchmark: ``ray.cluster_utils.
AutoscalingCluster`` (Ray's fake multi-node provider: each worker node it launches is a
local raylet) with the idle timeout given, and a meter of every worker node that the
variants share.

The meter runs in the driver: for each alive worker node it models power from the node
type's curve at the CPU utilization of that node's raylet and its children (the same
:class:`tao_core.telemetry.estimator.ModeledSource` TAO's samplers use for nodes that
share a machine). It runs outside the nodes because an actor on a node (TAO's sampler)
keeps Ray's autoscaler from seeing the node idle, and the baseline must be left to
remove idle nodes as it would without TAO.

``start()``/``stop()`` run ``ray stop --force`` (every Ray process of this user) and use
port 6379: nothing else may run Ray on the machine meanwhile (take a lock around it).
"""
from __future__ import annotations

import copy
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import psutil
import ray
from ray.cluster_utils import AutoscalingCluster

from live_model import NodeRun
from tao_core.control.types import NodeType
from tao_core.telemetry.estimator import ModeledSource
from tao_ray.nodes import TYPE_LABEL, TYPE_RESOURCE_PREFIX

ROOT = Path(__file__).resolve().parents[1]

#: the fake provider's cluster config (Ray's wheel does not ship the example file
#: ``AutoscalingCluster`` reads); node types and the idle timeout are added per run
BASE_CONFIG: dict[str, Any] = {
    "cluster_name": "tao-bench", "max_workers": 8,
    "provider": {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_node_updaters": True,
                 "disable_launch_config_check": True},
    "head_node_type": "ray.head.default", "auth": {}, "upscaling_speed": 1.0,
    "docker": {}, "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
    "worker_setup_commands": [], "head_start_ray_commands": [], "worker_start_ray_commands": [],
    "file_mounts": {}, "cluster_synced_files": [], "file_mounts_sync_continuously": False,
    "rsync_exclude": [], "rsync_filter": [],
}
#: seconds without a raylet heartbeat before the autoscaler terminates a node (Ray's
#: default 30 s): a node drained through the GCS leaves at once and its provider entry goes
#: this long after (the same for every variant)
HEARTBEAT_TIMEOUT_S = 10


class BenchAutoscalingCluster(AutoscalingCluster):
    """``AutoscalingCluster`` with :data:`BASE_CONFIG` as its base."""

    def _generate_config(self, head_resources, worker_node_types, autoscaler_v2=False, **config_kwargs):
        cfg = copy.deepcopy(BASE_CONFIG)
        cfg["available_node_types"] = dict(worker_node_types)
        cfg["available_node_types"]["ray.head.default"] = {"resources": head_resources, "node_config": {},
                                                           "max_workers": 0}
        cfg.update(config_kwargs)
        return cfg


def worker_node_types(pool: Mapping[str, tuple[int, int, int]]) -> dict[str, dict]:
    """The autoscaler's node types: TAO type name -> (CPUs, min_workers, max_workers)."""
    return {t: {"resources": {"CPU": cpus, TYPE_RESOURCE_PREFIX + t: 1}, "labels": {TYPE_LABEL: t},
                "node_config": {}, "min_workers": lo, "max_workers": hi}
            for t, (cpus, lo, hi) in pool.items()}


def start_cluster(pool: Mapping[str, tuple[int, int, int]], idle_timeout_minutes: float) -> BenchAutoscalingCluster:
    """Start the autoscaling cluster (head without CPUs) and connect this driver to it."""
    bindir = os.path.dirname(sys.executable)
    os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    pp = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join([*(str(d) for d in (ROOT, ROOT / "benchmarks") if str(d) not in pp), *pp])
    assert shutil.which("ray"), "the ray command is not on PATH"
    c = BenchAutoscalingCluster(head_resources={"CPU": 0}, worker_node_types=worker_node_types(pool),
                                idle_timeout_minutes=idle_timeout_minutes)
    c.start(override_env={"AUTOSCALER_HEARTBEAT_TIMEOUT_S": str(HEARTBEAT_TIMEOUT_S)})
    ray.init(address="auto", log_to_driver=False)
    return c


def wait_for_workers(types: Mapping[str, int], timeout_s: float = 120.0) -> None:
    """Wait until the alive worker nodes of each type number at least ``types[type]``."""
    end = time.time() + timeout_s
    while time.time() < end:
        have: dict[str, int] = {}
        for n in ray.nodes():
            t = (n.get("Labels") or {}).get(TYPE_LABEL)
            if n["Alive"] and t:
                have[t] = have.get(t, 0) + 1
        if all(have.get(t, 0) >= k for t, k in types.items()):
            return
        time.sleep(0.5)
    raise TimeoutError(f"worker nodes {dict(types)} not up after {timeout_s:.0f} s")


def raylet_pid(node_id: str) -> Optional[int]:
    """Pid of the raylet of ``node_id`` on this machine (its ``--node_id=`` argument)."""
    flag = f"--node_id={node_id}"
    for p in psutil.process_iter(["name", "cmdline"]):
        try:
            if "raylet" in (p.info["name"] or "") and flag in (p.info["cmdline"] or ()):
                return p.pid
        except (psutil.Error, OSError):
            continue
    return None


@dataclass
class _Metered:
    node_type: str
    joined_s: float
    source: Optional[ModeledSource]
    t_s: list[float] = field(default_factory=list)
    energy_j: list[float] = field(default_factory=list)
    left_s: Optional[float] = None


class NodeMeter:
    """Every alive worker node, metered from the driver every ``interval_s`` (see the module doc)."""

    def __init__(self, types: Mapping[str, NodeType], interval_s: float = 0.5) -> None:
        self.types, self.interval_s = dict(types), interval_s
        self.nodes: dict[str, _Metered] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="node-meter", daemon=True)

    def start(self) -> "NodeMeter":
        self.poll()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.poll()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.poll()

    def poll(self) -> None:
        now = time.time()
        alive = {}
        for n in ray.nodes():
            t = (n.get("Labels") or {}).get(TYPE_LABEL)
            if n["Alive"] and t in self.types:
                alive[n["NodeID"]] = t
        for nid, typ in alive.items():
            if nid not in self.nodes or self.nodes[nid].left_s is not None:
                pid = raylet_pid(nid)
                nt = self.types[typ]
                src = None if pid is None else ModeledSource(nt.power_curve, cpus=nt.cpus, processes=[pid],
                                                           clock=time.time, curve_label=f"{typ} power curve")
                self.nodes[nid] = _Metered(typ, now, src)
        for nid, m in self.nodes.items():
            if m.left_s is not None:
                continue
            if nid not in alive:
                m.left_s = now
                continue
            if m.source is not None:
                r = m.source.read()
                m.t_s.append(r.t_s)
                m.energy_j.append(r.total_energy_j())

    def runs(self, t0: float, t1: float) -> list[NodeRun]:
        """Each node's metered joules inside ``[t0, t1]`` and when it was up."""
        import numpy as np

        out = []
        for nid, m in self.nodes.items():
            j = 0.0
            if len(m.t_s) >= 2:
                t, e = np.asarray(m.t_s), np.asarray(m.energy_j)
                a, b = max(t0, t[0]), min(t1, t[-1])
                j = float(np.interp(b, t, e) - np.interp(a, t, e)) if b > a else 0.0
            out.append(NodeRun(nid, m.node_type, m.joined_s, m.left_s, j))
        return out

    def unmetered(self) -> list[str]:
        """Nodes whose raylet was not found (not metered: their energy is missing)."""
        return [nid for nid, m in self.nodes.items() if m.source is None]
