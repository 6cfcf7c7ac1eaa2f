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
    # metrics every second (Ray's default is slower), so the export test need not wait long
    lc = LocalCluster([("eff", 2), ("old", 2), ("old", 2)], system_config={"metrics_report_interval_ms": 1000}).start()
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


def _scrape_tao_metrics() -> dict[str, list]:
    """``ray_tao_*`` samples from every live node's metrics export: name -> [(labels, value)]."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, list] = {}
    for n in ray.nodes():
        if not n["Alive"]:
            continue
        try:
            url = f"http://{n['NodeManagerAddress']}:{n['MetricsExportPort']}/metrics"
            body = urllib.request.urlopen(url, timeout=2).read().decode()
        except OSError:
            continue
        for fam in text_string_to_metric_families(body):
            for smp in fam.samples:
                if smp.name.startswith("ray_tao_"):
                    out.setdefault(smp.name, []).append((smp.labels, smp.value))
    return out


def test_live_task_energy_matches_the_report_and_tao_metrics_are_exported(tao, tmp_path):
    pytest.importorskip("aiohttp", reason="Ray exports metrics only with ray[default] (its metrics agent)")
    pytest.importorskip("prometheus_client")
    from tao_ray.sampler import SPAN_LAG_S

    budget = 5000.0  # far above what the nodes can draw: every task runs, the budget gauge is set
    rt = tao(power_budget_w=budget)
    probe = where.options(tao_group="metrics-probe")
    ray.get([probe.remote(i, 0.3) for i in range(8)], timeout=120)
    time.sleep(SPAN_LAG_S + 0.6)  # the last spans reach their samplers; readings pass the last end
    samplers = [rt.samplers[n] for n in rt.live_nodes()]
    ray.get([s.settle.remote() for s in samplers], timeout=30)
    settled = ray.get([s.settled.remote() for s in samplers], timeout=30)
    df = tao_ray.report(str(tmp_path / "report.json"))
    probe_j = float(df.loc[df["group"] == "metrics-probe", "energy_j"].sum())
    assert probe_j > 0
    # the samplers attributed, as they went, what the report gives the tasks
    assert sum(s["tasks"] for s in settled) == pytest.approx(float(df["energy_j"].sum()), rel=1e-6)
    assert all(s["running_workers"] == 0 for s in settled)
    # samplers keep only what the driver has not fetched or is not settled yet
    rt.collect()
    rt.collect()
    for nid in rt.live_nodes():
        s = rt.samplers[nid]
        held, info = ray.get([s.settled.remote(), s.info.remote()], timeout=30)
        assert held["spans_held"] == 0
        assert 0 < held["rows_held"] < info["readings"]
        # the driver has every reading but those taken since its last fetch (every 0.2 s)
        assert 0 <= info["readings"] - len(rt.timelines[nid]) <= 3
    df2 = tao_ray.report(str(tmp_path / "report2.json"))  # still whole after the samplers dropped rows
    assert float(df2.loc[df2["group"] == "metrics-probe", "energy_j"].sum()) == pytest.approx(probe_j, rel=1e-9)

    want = {"ray_tao_node_power_watts", "ray_tao_cluster_power_watts", "ray_tao_power_budget_watts",
            "ray_tao_deferred_tasks"}
    end = time.time() + 30
    got: dict[str, list] = {}
    task_j = 0.0
    while time.time() < end:
        got = _scrape_tao_metrics()
        task_j = sum(v for name, rows in got.items() if name.startswith("ray_tao_task_energy_joules")
                     for labels, v in rows if labels.get("group") == "metrics-probe")
        if want <= set(got) and task_j >= probe_j * (1 - 1e-6):
            break
        time.sleep(1.0)
    assert want <= set(got), f"exported: {sorted(got)}"
    powered = {labels["node_id"] for labels, _ in got["ray_tao_node_power_watts"]}
    assert set(rt.live_nodes()) <= powered
    assert any(v == pytest.approx(budget) for _, v in got["ray_tao_power_budget_watts"])
    assert task_j == pytest.approx(probe_j, rel=1e-4)
    assert any(name.startswith("ray_tao_node_idle_energy_joules") for name in got)


def test_live_attribution_waits_for_a_running_task(tao):
    """A sampler never settles past the start of a task still running on its node, and once
    the task ended its settled joules are what the report gives it."""
    from tao_ray.sampler import SPAN_LAG_S

    rt = tao()
    long = where.options(tao_group="long")
    t0 = time.time()
    ref = long.remote(0, 3.0)
    time.sleep(1.8)  # running, reported by its worker (FLUSH_S 0.2 s)
    samplers = {n: rt.samplers[n] for n in rt.live_nodes()}
    ray.get([s.settle.remote() for s in samplers.values()], timeout=30)
    _, node = ray.get(ref, timeout=60)
    during = ray.get(samplers[node].settled.remote(), timeout=30)
    assert during["running_workers"] == 1
    time.sleep(SPAN_LAG_S + 0.6)
    ray.get(samplers[node].settle.remote(), timeout=30)
    after = ray.get(samplers[node].settled.remote(), timeout=30)
    assert after["running_workers"] == 0 and after["t_s"] > t0 + 3.0
    df = tao_ray.report()
    start = float(df.loc[df["group"] == "long", "start_s"].iloc[0])
    assert during["t_s"] <= start  # held at (the reading before) the running task's start
    assert after["tasks"] == pytest.approx(float(df.loc[df["node_id"] == node, "energy_j"].sum()), rel=1e-6)


def test_a_restarted_sampler_keeps_the_node_timeline_whole(tao, tmp_path):
    """Ray restarts a sampler whose process died; its counters start from zero, and the
    driver continues the node's timeline with the gap modeled at idle power."""
    rt = tao()
    from tao_ray.sampler import SPAN_LAG_S

    ray.get([where.remote(i, 0.2) for i in range(4)], timeout=60)
    time.sleep(SPAN_LAG_S)
    rt.collect()  # the driver has these tasks' spans before the sampler dies
    nid = rt.live_nodes()[0]
    old = ray.get(rt.samplers[nid].timeline.remote(0), timeout=30)[0]
    ray.kill(rt.samplers[nid], no_restart=False)
    end = time.time() + 60
    new = old
    while time.time() < end and new == old:
        try:
            new = ray.get(rt.samplers[nid].timeline.remote(0), timeout=5)[0]
        except Exception:  # noqa: BLE001 - restarting
            time.sleep(0.2)
    assert new != old
    ray.get([where.remote(i, 0.2) for i in range(6)], timeout=60)
    df = tao_ray.report(str(tmp_path / "report.json"))
    with rt.lock:
        tl = list(rt.timelines[nid])
    from tao_ray.runtime import NO_SAMPLER_METHOD

    assert [row[5] for row in tl].count(NO_SAMPLER_METHOD) == 1
    t = [row[0] for row in tl]
    e = [row[1] for row in tl]
    assert t == sorted(t) and e == sorted(e)  # in time order, cumulative energy never falls
    from tao_ray import energy

    with rt.lock:
        att = energy.attribution(rt)
    att.check_conservation(rel_tol=1e-9, abs_tol_j=1e-6)
    assert len(df) == 10 and (df["energy_j"] >= 0).all()  # every task, each with its energy


def test_gcs_drain_powers_off_an_idle_node_and_keeps_one_ray_counts_busy(cluster, tao, tmp_path):
    """``drain="gcs"``: an idle node is drained with reason IDLE_TERMINATION and leaves the
    cluster; where a user's actor lives Ray refuses, and TAO keeps the node on with a new
    sampler. Runs last in this module: it adds the two nodes it drains."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from tao_core.control.config import ControllerConfig
    from tao_ray import autoscale
    from tao_ray.nodes import TYPE_LABEL

    idle = cluster.add_node(num_cpus=1, labels={TYPE_LABEL: "old"})
    held = cluster.add_node(num_cpus=1, labels={TYPE_LABEL: "old"})
    cluster.wait_for_nodes()
    # the plan comes from the test, not the controller's idle timeouts
    rt = tao(config=ControllerConfig(scale_down=False), drain="gcs")
    assert {idle.node_id, held.node_id} <= set(rt.live_nodes())

    @ray.remote(num_cpus=0)
    class Users:
        def node(self):
            return ray.get_runtime_context().get_node_id()

    user = Users.options(scheduling_strategy=NodeAffinitySchedulingStrategy(held.node_id, soft=False)).remote()
    assert ray.get(user.node.remote(), timeout=30) == held.node_id
    ray.get([where.remote(i, 0.2) for i in range(4)], timeout=60)
    end = time.time() + 30  # Ray returns the workers' CPU leases a moment after their tasks
    while time.time() < end and {idle.node_id, held.node_id} & autoscale._busy_nodes():
        time.sleep(0.2)

    autoscale.apply(rt, {"power_off": [idle.node_id, held.node_id], "reason": "test"})
    actions = {(e["action"], e["node_id"]) for e in rt.scale_log if "node_id" in e}
    assert ("power_off", idle.node_id) in actions
    assert ("drain-refused", held.node_id) in actions
    assert rt.node_state[idle.node_id] == "off" and rt.node_state[held.node_id] == "on"
    end = time.time() + 30
    while time.time() < end:  # the drained raylet leaves the cluster
        alive = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
        if idle.node_id not in alive:
            break
        time.sleep(0.5)
    assert idle.node_id not in alive and held.node_id in alive
    # TAO's new sampler on the node that stayed samples again
    assert ray.get(rt.samplers[held.node_id].ping.remote(), timeout=30) == held.node_id
    df = tao_ray.report(str(tmp_path / "report.json"))
    assert len(df) >= 4
    from tao_ray import energy

    with rt.lock:
        att = energy.attribution(rt)
    att.check_conservation(rel_tol=1e-9, abs_tol_j=1e-6)
    gone = att.nodes[att.nodes["node_id"] == idle.node_id]
    assert energy.OFF_METHOD in gone["method"].iloc[0]
    # the node that stayed continues its timeline across the sampler TAO replaced
    from tao_ray.runtime import NO_SAMPLER_METHOD

    with rt.lock:
        tl = list(rt.timelines[held.node_id])
    assert [row[5] for row in tl].count(NO_SAMPLER_METHOD) == 1
    assert [row[0] for row in tl] == sorted(row[0] for row in tl)
    assert [row[1] for row in tl] == sorted(row[1] for row in tl)
    ray.kill(user)
