"""tao_ray with Ray's autoscaler (v1) on the fake multi-node provider: the controller's
scale-up becomes a ``request_resources`` hint with the efficient type's label selector, the
autoscaler launches that type, queued work runs there, and once TAO's request is cleared the
idle node is removed by Ray's idle timeout.

``AutoscalingCluster.start()``/``shutdown()`` run ``ray stop --force`` (every Ray process of
this user) and use port 6379: this module must not run beside another Ray cluster. It runs in
CI (``CI`` set), with ``TAO_RAY_AUTOSCALER_TEST=1``, or alone (``pytest
tests/test_ray_autoscale.py``); elsewhere it skips, so that a shared machine's other Ray
processes are left alone."""
from __future__ import annotations

import os
import shutil
import sys
import time

import pytest

ray = pytest.importorskip("ray")
from ray.cluster_utils import AutoscalingCluster  # noqa: E402

import tao_ray  # noqa: E402

BASE = {
    "cluster_name": "tao-fake", "max_workers": 4,
    "provider": {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_node_updaters": True,
                 "disable_launch_config_check": True},
    "head_node_type": "ray.head.default", "auth": {}, "upscaling_speed": 1.0, "idle_timeout_minutes": 0.1,
    "docker": {}, "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
    "worker_setup_commands": [], "head_start_ray_commands": [], "worker_start_ray_commands": [],
    "file_mounts": {}, "cluster_synced_files": [], "file_mounts_sync_continuously": False,
    "rsync_exclude": [], "rsync_filter": [],
}


class FakeAutoscalingCluster(AutoscalingCluster):
    """Ray's AutoscalingCluster with the fake provider's base config given here (the Ray 2.60
    wheel does not ship the example file it reads)."""

    def _generate_config(self, head_resources, worker_node_types, autoscaler_v2=False, **config_kwargs):
        import copy

        cfg = copy.deepcopy(BASE)
        cfg["available_node_types"] = dict(worker_node_types)
        cfg["available_node_types"]["ray.head.default"] = {"resources": head_resources, "node_config": {},
                                                           "max_workers": 0}
        cfg.update(config_kwargs)
        return cfg


def _alone() -> bool:
    if os.environ.get("TAO_RAY_AUTOSCALER_TEST") == "1" or os.environ.get("CI"):
        return True
    args = [a for a in sys.argv[1:] if not a.startswith("-")]
    return len(args) == 1 and args[0].split("::")[0].endswith("test_ray_autoscale.py")


pytestmark = pytest.mark.skipif(not _alone(), reason="runs `ray stop --force`: run this module on its own "
                                "or set TAO_RAY_AUTOSCALER_TEST=1")


@pytest.fixture(scope="module")
def autoscaling():
    bindir = os.path.dirname(sys.executable)
    if shutil.which("ray") is None or os.path.dirname(shutil.which("ray")) != bindir:
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    os.environ["PYTHONPATH"] = root + os.pathsep + os.environ.get("PYTHONPATH", "")
    c = FakeAutoscalingCluster(
        head_resources={"CPU": 0},
        worker_node_types={
            "eff": {"resources": {"CPU": 2, "tao_type_eff": 1}, "labels": {"tao-node-type": "eff"}, "node_config": {},
                    "min_workers": 0, "max_workers": 1},
            "old": {"resources": {"CPU": 2, "tao_type_old": 1}, "labels": {"tao-node-type": "old"}, "node_config": {},
                    "min_workers": 1, "max_workers": 1},
        })
    c.start()
    try:
        ray.init(address="auto", log_to_driver=False)
        yield c
    finally:
        if tao_ray.is_initialized():
            tao_ray.shutdown()
        ray.shutdown()
        c.shutdown()


def _alive_types():
    return sorted(n["Labels"].get("tao-node-type", "head") for n in ray.nodes() if n["Alive"])


@tao_ray.remote(num_cpus=1)
def where(i):
    time.sleep(0.3)
    return i, ray.get_runtime_context().get_node_id()


def test_scale_up_to_the_efficient_type_then_idle_removal(autoscaling):
    deadline = time.time() + 60
    while time.time() < deadline and "old" not in _alive_types():
        time.sleep(0.5)
    assert _alive_types() == ["head", "old"]
    eff = tao_ray.specpower_node_type("IbmX3250XeonX3470", name="eff", cpus=2, boot_s=3.0)
    old = tao_ray.specpower_node_type("HpProLiantMl110G3PentiumD930", name="old", cpus=2, boot_s=3.0)
    from tao_core.control.config import ControllerConfig

    # no spare capacity kept for future arrivals, so idle nodes may all go
    rt = tao_ray.init([eff, old], config=ControllerConfig(spare_horizon_s=0.0), launchable={"eff": 1, "old": 1},
                      strict_admission=True, hint_with="resource")
    # waves of work until one runs on the launched node: a task waits for the booting node
    # for the declared 3 s, then runs on ``old``; how long the fake provider really takes to
    # bring a node up depends on the machine's load
    out: list = []
    deadline = time.time() + 120
    while time.time() < deadline:
        wave = ray.get([where.remote(len(out) + i) for i in range(4)], timeout=120)
        out += wave
        st = tao_ray.stats()
        types = {n: v["type"] for n, v in st["nodes"].items()}
        if "eff" in {types.get(n) for _, n in wave}:
            break
    assert sorted(i for i, _ in out) == list(range(len(out)))
    ups = [e for e in st["scale_log"] if e["action"] == "power_on"]
    assert ups and ups[0]["node_types"] == ["eff"], st["scale_log"]
    ran_on = {types.get(n) for _, n in out}
    assert "eff" in ran_on, f"no task ran on the launched efficient node: {ran_on}"
    # TAO cleared its request once the node came; once idle, TAO releases it (stops its own
    # sampler there) and Ray's idle timeout removes it
    assert tao_ray.stats()["booting"] == []
    eff_id = next(n for n, t in types.items() if t == "eff")
    deadline = time.time() + 90
    while time.time() < deadline and "eff" in _alive_types():
        time.sleep(1.0)
    assert "eff" not in _alive_types(), tao_ray.stats()["scale_log"]
    assert tao_ray.stats()["nodes"][eff_id]["released"]
    deadline = time.time() + 10  # TAO notices the node left at its next poll of ray.nodes()
    while time.time() < deadline and not tao_ray.stats()["nodes"][eff_id]["removed"]:
        time.sleep(0.2)
    assert tao_ray.stats()["nodes"][eff_id]["removed"]
    # its energy after release is modeled at idle power until it left, then off
    from tao_core.live.report import OFF_METHOD, RELEASED_METHOD

    df = tao_ray.report()
    method = df.attrs["nodes"].set_index("node_id").loc[eff_id, "method"]
    assert OFF_METHOD in method and RELEASED_METHOD in method
