"""Every task on a Ray cluster gets its energy, wrapped by TAO or not: plain ``@ray.remote``
tasks, an actor, a Ray Data pipeline and a second job (another driver), from Ray's task
events; per-job reports from the driver and from ``tao ray report``; the session token;
reservations handed back; a power budget in a live run; an untyped cluster.

One cluster for the module (``ray.cluster_utils.Cluster``, head with Ray's dashboard and no
CPUs, two 2-CPU worker nodes without labels: their types come from ``node_type_of``)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from ray_cluster import LocalCluster  # noqa: E402

import tao_ray  # noqa: E402

# Ray's workers cannot import this test module: its functions travel by value
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

EFF = tao_ray.specpower_node_type("IbmX3250XeonX3470", name="eff", cpus=2)
OLD = tao_ray.specpower_node_type("HpProLiantMl110G3PentiumD930", name="old", cpus=2)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    os.environ["TAO_RAY_TOKEN_FILE"] = str(tmp_path_factory.mktemp("tok") / "ray-session.token")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))  # no fitted curve of an earlier run
    lc = LocalCluster([]).start()
    a = lc.cluster.add_node(num_cpus=2)
    b = lc.cluster.add_node(num_cpus=2)
    lc.cluster.wait_for_nodes()
    yield lc.cluster, {a.node_id: "eff", b.node_id: "old"}
    if tao_ray.is_initialized():
        tao_ray.shutdown()
    lc.stop()


@pytest.fixture
def tao(cluster):
    def start(**kw):
        return tao_ray.init([EFF, OLD], node_type_of=cluster[1], **kw)

    yield start
    if tao_ray.is_initialized():
        tao_ray.shutdown()


def _burn(seconds: float) -> None:
    end = time.time() + seconds
    while time.time() < end:
        sum(range(2000))


@ray.remote(num_cpus=1)
def plain(x):
    _burn(0.3)
    return x


@ray.remote(num_cpus=1)
class Counter:
    def add(self, n):
        _burn(0.2)
        return n


SECOND_DRIVER = textwrap.dedent("""
    import json, sys, time
    import ray
    ray.init(address=sys.argv[1], log_to_driver=False)
    out = {"job": ray.get_runtime_context().get_job_id()}
    @ray.remote(num_cpus=1)
    def other_job(x):
        end = time.time() + 0.3
        while time.time() < end:
            sum(range(2000))
        return x
    ray.get([other_job.remote(i) for i in range(4)])
    for name in ("tao-controller", "tao-sampler-" + sys.argv[2]):
        a = ray.get_actor(name, namespace="tao")
        call = a.ping.remote("not-the-token") if name == "tao-controller" else a.settled.remote("x")
        try:
            ray.get(call, timeout=30)
            out[name] = "answered"
        except Exception as e:
            out[name] = str(e)
    print("RESULT " + json.dumps(out))
""")


def test_every_task_and_job_gets_energy_and_other_jobs_are_refused(cluster, tao, tmp_path):
    c, type_of = cluster
    tao()
    assert tao_ray.stats()["mode"] == "placing"
    ray.get([plain.remote(i) for i in range(4)], timeout=120)
    actor = Counter.remote()
    ray.get([actor.add.remote(i) for i in range(3)], timeout=120)
    from ray import data as ray_data

    ds = ray_data.range(400, override_num_blocks=4).map_batches(lambda b: {"id": b["id"] * 2})
    assert ds.sum("id") == 2 * sum(range(400))
    node = next(iter(type_of))
    proc = subprocess.run([sys.executable, "-c", SECOND_DRIVER, c.address, node], capture_output=True,
                          text=True, timeout=180)
    res = json.loads(proc.stdout.split("RESULT ", 1)[1])
    # another job may not call TAO's actors, and they say why
    assert "refused" in res["tao-controller"] and "session token" in res["tao-controller"]
    assert "refused" in res["tao-sampler-" + node]

    df = tao_ray.report(str(tmp_path / "all.json"))
    mine = ray.get_runtime_context().get_job_id()
    by_group = df.groupby("group")["energy_j"].sum()
    assert by_group["plain"] > 0 and by_group["Counter.add"] > 0
    data = [g for g in by_group.index if "MapBatches" in str(g)]
    assert data and by_group[data].sum() > 0, sorted(by_group.index)
    by_job = df.groupby("job")["energy_j"].sum()
    assert by_job[mine] > 0 and by_job[res["job"]] > 0
    assert set(df.loc[df["group"] == "other_job", "job"]) == {res["job"]}
    assert (df["known_by"] == "ray-task-events").all()  # nothing here was wrapped
    assert df["method"].str.contains("ray-task-events").all()
    rep = df.attrs["report"]
    assert rep["energy"]["it_energy_j"] == pytest.approx(rep["energy"]["idle_energy_j"] + df["energy_j"].sum(),
                                                         rel=1e-9)
    nodes = {r["node_id"]: r for r in rep["energy"]["by_node"]}
    assert set(nodes) == set(type_of)

    # one job's report, from the driver and from the command line against the cluster
    one = tao_ray.report(job=res["job"])
    assert set(one["job"]) == {res["job"]} and one["energy_j"].sum() > 0
    assert one.attrs["report"]["subject"]["job"] == res["job"]
    cli = subprocess.run([sys.executable, "-m", "tao_core.cli.main", "ray", "report", "--address", c.address,
                          "--job", res["job"], "--json"], capture_output=True, text=True, timeout=180)
    assert cli.returncode == 0, cli.stderr[-2000:]
    out = json.loads(cli.stdout)
    jobs = {r["job"]: r["energy_j"] for r in out["energy"]["by_job"]}
    assert jobs[res["job"]] > 0 and out["subject"]["job"] == res["job"]
    bad = subprocess.run([sys.executable, "-m", "tao_core.cli.main", "ray", "report", "--address", c.address,
                          "--token", "wrong"], capture_output=True, text=True, timeout=180)
    assert bad.returncode == 2 and "refused" in bad.stderr and "Traceback" not in bad.stderr
    ray.kill(actor)


@tao_ray.remote(num_cpus=1)
class Held:
    def node(self):
        return ray.get_runtime_context().get_node_id()


def test_actor_and_placement_group_reservations_are_handed_back(tao):
    from ray.util.placement_group import remove_placement_group

    tao()
    a = Held.remote()
    ray.get(a.node.remote(), timeout=60)
    pg = tao_ray.placement_group([{"CPU": 1}, {"CPU": 1}], name="pair")
    ray.get(pg.ready(), timeout=60)
    assert tao_ray.stats()["reservations_held"] == 3
    ray.kill(a)
    remove_placement_group(pg)
    end = time.time() + 30
    while time.time() < end and tao_ray.stats()["reservations_held"]:
        time.sleep(0.5)
    st = tao_ray.stats()
    assert st["reservations_held"] == 0 and st["counters"]["reservations_released"] == 3


@tao_ray.remote(num_cpus=1)
def loaded(x):
    _burn(0.4)
    return x


def test_power_budget_in_a_live_run_holds_or_says_by_how_much_and_why(tao):
    # idle draw 41.6 + 105 = 146.6 W; each busy CPU adds some 10-30 W: 200 W admits part of the work
    from tao_core.control.config import ControllerConfig

    cfg = ControllerConfig()
    tao(config=cfg, power_budget_w=200.0)
    assert cfg.power_budget_w is None  # the caller's config is left alone
    ray.get([loaded.remote(i) for i in range(10)], timeout=180)
    df = tao_ray.report()
    b = df.attrs["summary"]["budget"]
    ctl = df.attrs["report"]["controller"]
    assert b["budget_w"] == 200.0 and ctl["power_budget_w"] == 200.0
    assert ctl["budget_violation_s"] == pytest.approx(b["over_s"])
    assert b["held"] or (b["over_s"] > 0 and b["worst_excess_w"] > 0 and b["reason"]), b
    assert ctl["peak_power_w"] == pytest.approx(b["peak_w"])
    print("budget:", b["description"])


def test_an_untyped_cluster_warns_and_stats_say_tao_only_observes(cluster):
    with pytest.warns(tao_ray.ObserveOnlyWarning, match="only observes"):
        tao_ray.init([EFF, OLD], discover=False)
    try:
        st = tao_ray.stats()
        assert st["mode"] == "observe-only" and "places nothing" in st["why"]
        assert len(st["untyped_nodes"]) == 3 and st["nodes"] == {}
    finally:
        tao_ray.shutdown()


def test_with_no_arguments_nodes_describe_themselves_and_tao_places(cluster, tmp_path):
    """Zero configuration: a cluster started with no TAO labels, ``tao_ray.init()`` with no
    arguments; each node's sampler describes its hardware, the two nodes of this machine
    share the type named after it, and TAO places work and reports by that type."""
    from tao_core.governance import validate_report
    from tao_core.hardware import describe_this_node

    here = describe_this_node(cpus=2, store=None)
    tao_ray.init()
    try:
        st = tao_ray.stats()
        assert st["mode"] == "placing"
        assert {v["type"] for v in st["nodes"].values()} == {here.node_type.name} and len(st["nodes"]) == 2
        # work TAO does not submit finds these nodes by their ids (they carry no TAO label)
        assert tao_ray.label_selector() == {"ray.io/node-id": f"in({','.join(st['nodes'])})"}
        out = ray.get([loaded.remote(i) for i in range(6)], timeout=120)
        assert sorted(out) == list(range(6))
        st = tao_ray.stats()
        assert st["counters"]["placed"] == 6 and st["controller"]["counters"]["place"] > 0
        df = tao_ray.report(str(tmp_path / "zero.json"))
        rep = df.attrs["report"]
        assert validate_report(rep) == []
        assert [t["node_type"] for t in rep["hardware"]["node_types"]] == [here.node_type.name]
        # the curve and its uncertainty are the discovered ones, and the records say so
        for tel in rep["hardware"]["telemetry"]:
            assert f"{here.node_type.name} power curve (discovered: " in tel["method"]
        wrapped = df[df["known_by"] == "tao-wrapper"]
        assert len(wrapped) == 6
        assert wrapped["uncertainty"].to_numpy() == pytest.approx(here.model.provenance.uncertainty)
    finally:
        tao_ray.shutdown()
