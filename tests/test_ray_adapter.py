"""tao_ray on a real Ray cluster (``ray.cluster_utils.Cluster``): a head node with no CPUs
and three worker nodes of two node types with different SPECpower curves."""
from __future__ import annotations

import time

import pytest

ray = pytest.importorskip("ray")
from tao_ray.localcluster import LocalCluster  # noqa: E402

import tao_ray  # noqa: E402
from tao_core.errors import InputError  # noqa: E402
from tao_ray.nodes import RayNode, resolve_type  # noqa: E402

EFF = tao_ray.specpower_node_type("IbmX3250XeonX3470", name="eff", cpus=2)
OLD = tao_ray.specpower_node_type("HpProLiantMl110G3PentiumD930", name="old", cpus=2)
TYPES = [EFF, OLD]


@pytest.fixture(scope="module")
def cluster():
    lc = LocalCluster([("eff", 2), ("old", 2), ("old", 2)]).start()
    yield lc.cluster
    if tao_ray.is_initialized():
        tao_ray.shutdown()
    lc.stop()


@pytest.fixture
def tao(cluster):
    def start(**kw):
        return tao_ray.init(TYPES, **kw)

    yield start
    if tao_ray.is_initialized():
        tao_ray.shutdown()


@tao_ray.remote(num_cpus=1)
def where(x, sleep_s=0.0):
    t = time.time() + sleep_s
    while time.time() < t:  # a little CPU, so the modeled power moves
        sum(range(2000))
        time.sleep(0.01)
    return x, ray.get_runtime_context().get_node_id()


def test_node_type_resolution_and_errors():
    n = RayNode("ab" * 28, 2, 0, labels={"tao-node-type": "eff"})
    types = {t.name: t for t in TYPES}
    assert resolve_type(n, types) == "eff"
    assert resolve_type(n, types, node_type_of={n.node_id: "old"}) == "old"
    assert resolve_type(RayNode("cd" * 28, 2, 0, resources={"tao_type_old": 1.0}), types) == "old"
    assert resolve_type(RayNode("ef" * 28, 2, 0), types) is None
    with pytest.raises(InputError, match="tao-node-type"):
        resolve_type(RayNode("01" * 28, 2, 0, labels={"tao-node-type": "nope"}), types)
    with pytest.raises(InputError, match="specpower"):
        tao_ray.specpower_node_type("NoSuchServer")


def test_tasks_land_where_the_controller_placed_them(tao):
    rt = tao()
    refs = [where.remote(i, 0.2) for i in range(12)]
    out = ray.get(refs, timeout=120)
    assert [x for x, _ in out] == list(range(12))
    placed = {t.hex(): n for t, n in rt.placements}
    ran = {r.task_id().hex(): node for r, (_, node) in zip(refs, out)}
    assert set(ran) <= set(placed), "every task went through a controller grant"
    assert all(placed[t] == ran[t] for t in ran), "a task ran on another node than the one granted"
    # the grants' nodes are the controller's own PLACE decisions
    events = rt.decision_events()
    place_nodes = {e["node_id"] for e in events if e["kind"] == "place"}
    assert set(ran.values()) <= place_nodes
    # the efficient node is the controller's first choice for a lone task
    lone_node = next(e["node_id"] for e in events if e["kind"] == "place")
    assert rt.node_type[lone_node] == "eff"
    # an existing @ray.remote function through tao_ray.options
    plain = ray.remote(lambda: ray.get_runtime_context().get_node_id())
    r = tao_ray.options(plain).remote()
    assert ray.get(r, timeout=60) == {t.hex(): n for t, n in rt.placements}[r.task_id().hex()]


def test_power_budget_defers_and_everything_runs(tao):
    # idle draw of the three nodes is 41.6 + 2 x 105 = 251.6 W; each busy CPU adds a few tens of
    # watts: a 300 W budget admits only part of 18 tasks at once
    rt = tao(power_budget_w=300.0)
    assert rt.strict
    refs = [where.remote(i, 0.3) for i in range(18)]
    out = ray.get(refs, timeout=180)
    assert sorted(x for x, _ in out) == list(range(18))
    st = tao_ray.stats()
    assert st["counters"]["deferred"] == 18 and st["queued"] == 0
    stats = ray.get(rt.controller.stats.remote())
    assert stats["counters"]["defer"] > 0, "the budget never deferred anything"
    # tasks ran where their grants said
    assert {node for _, node in out} <= {n for _, n in rt.placements}


def test_controller_killed_mid_run_loses_no_task(tao):
    rt = tao(timeout_s=1.0)
    refs = [where.remote(i, 0.05) for i in range(20)]
    ray.kill(rt.controller, no_restart=False)
    refs += [where.remote(i, 0.05) for i in range(20, 60)]
    out = ray.get(refs, timeout=180)
    assert sorted(x for x, _ in out) == list(range(60))
    # the restarted controller resumes: TAO places again
    deadline = time.time() + 60
    while time.time() < deadline and (rt.failed_open or rt.epoch is None):
        time.sleep(0.2)
    assert not rt.failed_open
    before = rt.counters["placed"]
    ray.get([where.remote(i) for i in range(4)], timeout=60)
    assert rt.counters["placed"] > before


def test_per_task_energy_plus_idle_equals_node_totals(tao, tmp_path):
    rt = tao()
    ray.get([where.remote(i, 0.3) for i in range(10)], timeout=120)
    time.sleep(0.5)
    df = tao_ray.report(str(tmp_path / "report.json"), ledger=str(tmp_path / "run.ledger"))
    assert len(df) >= 10
    assert (df["source"] == "modeled").all() and df["method"].str.len().gt(0).all()
    assert (df["energy_j"] > 0).all()
    from tao_ray import energy

    with rt.lock:  # the sync thread extends timelines: attribute and read them at one instant
        t_end = max(tl[-1][0] for tl in rt.timelines.values() if tl)
        att = energy.attribution(rt, t_end=t_end)
        timelines = {nid: list(tl) for nid, tl in rt.timelines.items()}
    att.check_conservation(rel_tol=1e-9, abs_tol_j=1e-6)
    # node totals are what the samplers read
    for row in att.nodes.itertuples(index=False):
        tl = timelines[row.node_id]
        assert row.total_j == pytest.approx(tl[-1][1] - tl[0][1], rel=1e-9, abs=1e-6)
    tasks_j = att.tasks.groupby("node_id")["energy_j"].sum()
    for row in att.nodes.itertuples(index=False):
        assert tasks_j.get(row.node_id, 0.0) + row.idle_j == pytest.approx(row.total_j, rel=1e-9, abs=1e-6)
    assert (tmp_path / "report.json").exists()
    import json

    rep = json.loads((tmp_path / "report.json").read_text())
    # the report and the returned frame come from one attribution (taken at report time)
    assert rep["energy"]["it_energy_j"] == pytest.approx(rep["energy"]["idle_energy_j"] + df["energy_j"].sum(),
                                                         rel=1e-9)
    assert rep["energy"]["it_energy_j"] <= att.total_j + 1e-6  # later samples only add
    from tao_core.governance import verify_ledger

    assert verify_ledger(tmp_path / "run.ledger").status == "intact"
    assert rep["ledger"]["status"] != "unverified"


@tao_ray.remote(num_cpus=1)
class Where:
    def node(self):
        return ray.get_runtime_context().get_node_id()


def test_actors_and_placement_group_bundles_go_where_the_controller_says(tao):
    from ray.util.placement_group import placement_group_table, remove_placement_group

    rt = tao()
    a = Where.remote()
    actor_node = ray.get(a.node.remote(), timeout=60)
    pg = tao_ray.placement_group([{"CPU": 1}, {"CPU": 1}], name="pair")
    ray.get(pg.ready(), timeout=60)
    bundle_nodes = list(placement_group_table(pg)["bundles_to_node_id"].values())
    events = rt.decision_events()
    by_group = {}
    for e in events:
        if e["kind"] == "place":
            by_group.setdefault(e["group"], []).append(e["node_id"])
    assert by_group["Where"] == [actor_node]
    assert [by_group[f"placement-group:pair:{i}"][0] for i in range(2)] == bundle_nodes
    remove_placement_group(pg)
    ray.kill(a)
