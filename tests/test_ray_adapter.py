"""tao_ray on a real Ray cluster (``ray.cluster_utils.Cluster``): a head node with no CPUs
and three worker nodes of two node types with different SPECpower curves."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from ray_cluster import LocalCluster  # noqa: E402

from tao import UnitCountError, count  # noqa: E402
import tao_ray  # noqa: E402
from tao_core.control.config import ControllerConfig  # noqa: E402
from tao_core.control.predict import TaskPredictor  # noqa: E402
from tao_core.errors import InputError  # noqa: E402
from tao_core.live.sampler import SPAN_LAG_S  # noqa: E402
from tao_core.live.timeline import GAP_METHOD  # noqa: E402
from tao_ray.nodes import RayNode, resolve_type  # noqa: E402
from tao_ray.records import NAMESPACE, sampler_name  # noqa: E402

# Ray's workers cannot import this test module: its plain remote functions travel by value
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _sampler(nid):
    return ray.get_actor(sampler_name(nid), namespace=NAMESPACE)


def _live():
    return [n for n, v in tao_ray.stats()["nodes"].items() if v["live"]]

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
    tao()
    refs = [where.remote(i, 0.2) for i in range(12)]
    out = ray.get(refs, timeout=120)
    assert [x for x, _ in out] == list(range(12))
    placed = tao_ray.placements()
    ran = {r.task_id().hex(): node for r, (_, node) in zip(refs, out)}
    assert set(ran) <= set(placed), "every task went through a controller grant"
    assert all(placed[t] == ran[t] for t in ran), "a task ran on another node than the one granted"
    # the grants' nodes are the controller's own PLACE decisions
    events = tao_ray.decisions()
    place_nodes = {e["node_id"] for e in events if e["kind"] == "place"}
    assert set(ran.values()) <= place_nodes
    # the efficient node is the controller's first choice for a lone task
    lone_node = next(e["node_id"] for e in events if e["kind"] == "place")
    assert tao_ray.stats()["nodes"][lone_node]["type"] == "eff"
    # an existing @ray.remote function through tao_ray.options
    plain = ray.remote(lambda: ray.get_runtime_context().get_node_id())
    r = tao_ray.options(plain).remote()
    assert ray.get(r, timeout=60) == tao_ray.placements()[r.task_id().hex()]


@tao_ray.remote(num_cpus=1)
def busy(x, seconds):
    end = time.time() + seconds
    while time.time() < end:  # all CPU: the closed loop measures what the model predicts
        sum(range(2000))
    return x, ray.get_runtime_context().get_node_id()


def test_power_budget_defers_and_everything_runs(tao):
    # idle draw of the three nodes is 41.6 + 2 x 105 = 251.6 W; each busy CPU adds some 30 W:
    # a 300 W budget admits only part of 18 tasks at once
    tao(power_budget_w=300.0)
    assert tao_ray.stats()["strict_admission"]
    refs = [busy.remote(i, 0.3) for i in range(18)]
    out = ray.get(refs, timeout=180)
    assert sorted(x for x, _ in out) == list(range(18))
    st = tao_ray.stats()
    assert st["counters"]["deferred"] == 18 and st["queued"] == 0
    assert st["controller"]["counters"]["defer"] > 0, "the budget never deferred anything"
    # tasks ran where their grants said
    placed = tao_ray.placements()
    assert all(placed[r.task_id().hex()] == node for r, (_, node) in zip(refs, out) if r.task_id().hex() in placed)


def test_controller_killed_mid_run_loses_no_task(tao):
    tao(timeout_s=1.0)
    refs = [where.remote(i, 0.05) for i in range(20)]
    ray.kill(ray.get_actor("tao-controller", namespace=NAMESPACE), no_restart=False)
    refs += [where.remote(i, 0.05) for i in range(20, 60)]
    out = ray.get(refs, timeout=180)
    assert sorted(x for x, _ in out) == list(range(60))
    # the restarted controller resumes: TAO places again
    deadline = time.time() + 60
    while time.time() < deadline and tao_ray.stats()["failed_open"]:
        time.sleep(0.2)
    assert not tao_ray.stats()["failed_open"]
    before = tao_ray.stats()["counters"]["placed"]
    ray.get([where.remote(i) for i in range(4)], timeout=60)
    assert tao_ray.stats()["counters"]["placed"] > before


def test_per_task_energy_plus_idle_equals_node_totals(tao, tmp_path):
    tao()
    ray.get([where.remote(i, 0.3) for i in range(10)], timeout=120)
    time.sleep(0.5)
    df = tao_ray.report(str(tmp_path / "report.json"), ledger=str(tmp_path / "run.ledger"))
    wrapped = df[df["known_by"] == "tao-wrapper"]
    assert len(wrapped) >= 10
    assert (df["source"] == "modeled").all() and df["method"].str.len().gt(0).all()
    assert (wrapped["energy_j"] > 0).all()
    nodes = df.attrs["nodes"]
    timelines = tao_ray.timelines()
    tasks_j = df.groupby("node_id")["energy_j"].sum()
    for row in nodes.itertuples(index=False):
        assert tasks_j.get(row.node_id, 0.0) + row.idle_j == pytest.approx(row.total_j, rel=1e-9, abs=1e-6)
        # the node's total is what its sampler read over the window (the timeline is cut at its ends)
        tl = [r for r in timelines[row.node_id] if row.start_s <= r.t_s <= row.end_s]
        assert row.total_j >= tl[-1].energy_j - tl[0].energy_j - 1e-6
    import json

    rep = json.loads((tmp_path / "report.json").read_text())
    # the report and the returned frame come from one attribution
    assert rep["energy"]["it_energy_j"] == pytest.approx(rep["energy"]["idle_energy_j"] + df["energy_j"].sum(),
                                                         rel=1e-9)
    assert rep["energy"]["it_energy_j"] == pytest.approx(float(nodes["total_j"].sum()), rel=1e-9)
    from tao_core.governance import verify_ledger

    assert verify_ledger(tmp_path / "run.ledger").status == "intact"
    assert rep["ledger"]["status"] != "unverified"


@tao_ray.remote(num_cpus=1)
def nap(x, seconds):
    time.sleep(seconds)
    return x


def test_the_controller_learns_task_energy_from_the_samplers(tao):
    """Each slot goes back to the controller with its tasks' mean attributed energy (the
    samplers' settled attribution, as in the report): the group's energy correction on each
    node type moves from 1.0 to what was measured (modeled here) over what the model
    predicted for the slot's placement, pooled over the group's slots as the core's
    predictor pools them (a type's own evidence counts in proportion to its runs)."""
    tao()
    ray.get([nap.options(tao_group="warm-up").remote(i, 0.3) for i in range(4)], timeout=60)  # workers started
    sleepy = nap.options(tao_group="sleepy")  # asleep: below the model's busy-CPU watts
    assert set(tao_ray.energy_correction("sleepy").values()) == {1.0}
    for i in range(8):
        ray.get(sleepy.remote(i, 0.3), timeout=60)
    end = time.time() + 30
    while time.time() < end and tao_ray.stats()["controller"]["running"]:  # every slot handed back
        time.sleep(0.5)
    learned = tao_ray.energy_correction("sleepy")
    df = tao_ray.report()
    mine = df[(df["group"] == "sleepy") & df["task_id"].isin(set(tao_ray.placements()))]
    assert len(mine) >= 6
    types = {t.name: t for t in TYPES}
    index = {name: i for i, name in enumerate(types)}
    type_of = {n: v["type"] for n, v in tao_ray.stats()["nodes"].items()}
    slots = [e for e in tao_ray.decisions() if e["kind"] == "place" and e["group"] == "sleepy"]
    measured = {}  # node -> its tasks' attributed watts over the model's for the slot placed there
    for node, ran in mine.groupby("node_id"):
        place = next(e for e in slots if e["node_id"] == node)
        nt = types[type_of[node]]
        # the model's attributed watts of the placement: added watts (before the loop's scaling)
        # plus the task's share (1 of the node's CPUs) of the node's idle watts
        model_w = place["detail"]["added_w"] / place["budget"]["dynamic_scale"] + nt.idle_w / nt.cpus
        measured[node] = float(ran["energy_j"].sum() / (ran["end_s"] - ran["start_s"]).sum()) / model_w
        assert measured[node] < 0.9, ran["energy_j"].tolist()  # the tasks drew less than predicted
    pooled = TaskPredictor([1.0] * len(types), alpha=ControllerConfig().prediction_alpha)
    for e in slots:  # every slot in the order it was placed, with its node's measured ratio
        if e["node_id"] in measured:
            pooled.observe("sleepy", index[type_of[e["node_id"]]], energy_ratio=measured[e["node_id"]])
    expected = dict(zip(types, pooled.correction("sleepy")))
    for name in {type_of[n] for n in measured}:
        assert learned[name] == pytest.approx(expected[name], rel=0.1)  # the controller learned it


@tao_ray.remote(num_cpus=1)
class Where:
    def node(self):
        return ray.get_runtime_context().get_node_id()


def test_actors_and_placement_group_bundles_go_where_the_controller_says(tao):
    from ray.util.placement_group import placement_group_table, remove_placement_group

    tao()
    a = Where.remote()
    actor_node = ray.get(a.node.remote(), timeout=60)
    pg = tao_ray.placement_group([{"CPU": 1}, {"CPU": 1}], name="pair")
    ray.get(pg.ready(), timeout=60)
    bundle_nodes = list(placement_group_table(pg)["bundles_to_node_id"].values())
    events = tao_ray.decisions()
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
    budget = 5000.0  # far above what the nodes can draw: every task runs, the budget gauge is set
    tao(power_budget_w=budget)
    tok = tao_ray.session_token()
    probe = where.options(tao_group="metrics-probe")
    ray.get([probe.remote(i, 0.3) for i in range(8)], timeout=120)
    time.sleep(SPAN_LAG_S + 0.6)  # the last spans reach their samplers; readings pass the last end
    samplers = [_sampler(n) for n in _live()]
    ray.get([s.settle.remote(tok) for s in samplers], timeout=30)
    settled = ray.get([s.settled.remote(tok) for s in samplers], timeout=30)
    df = tao_ray.report(str(tmp_path / "report.json"))
    probe_j = float(df.loc[df["group"] == "metrics-probe", "energy_j"].sum())
    assert probe_j > 0
    # the samplers attributed, as they went, what the report gives the wrapped tasks
    wrapped = df[df["known_by"] == "tao-wrapper"]
    assert sum(s["tasks"] for s in settled) == pytest.approx(float(wrapped["energy_j"].sum()), rel=1e-6)
    assert all(s["running_workers"] == 0 for s in settled)
    # samplers keep the whole timeline (for tao ray report) and no span the driver fetched
    timelines = tao_ray.timelines()
    for nid in _live():
        held = ray.get(_sampler(nid).settled.remote(tok), timeout=30)
        assert held["spans_held"] == 0
        assert held["rows_held"] == held["readings"]
        assert 0 <= held["readings"] - len(timelines[nid]) <= 15  # readings since the driver's last fetch
    df2 = tao_ray.report(str(tmp_path / "report2.json"))  # still whole after the samplers dropped spans
    assert float(df2.loc[df2["group"] == "metrics-probe", "energy_j"].sum()) == pytest.approx(probe_j, rel=1e-6)

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
    assert set(_live()) <= powered
    assert any(v == pytest.approx(budget) for _, v in got["ray_tao_power_budget_watts"])
    assert task_j == pytest.approx(probe_j, rel=1e-4)
    assert any(name.startswith("ray_tao_node_idle_energy_joules") for name in got)


def _spin(seconds):
    t = time.time() + seconds
    while time.time() < t:
        sum(range(2000))


@ray.remote(num_cpus=1)
def plain_tokens(n):
    _spin(0.3)
    count("tokens", n)
    return n


@tao_ray.remote(num_cpus=1)
def wrapped_images(n):
    count("images", n)
    _spin(0.3)
    count("images", 1)  # counts of one task add up
    return n


@ray.remote(num_cpus=1)  # on a worker node: the head (no CPUs, no TAO type) is not metered
class Reader:
    def read(self, n):
        _spin(0.2)
        count("pages", n)
        return n


@ray.remote(num_cpus=1, max_retries=0)
def bad_count():
    count("tokens", -1)


def test_units_counted_in_wrapped_and_plain_tasks_give_energy_per_unit(tao, tmp_path):
    """``tao.count`` in a plain ``@ray.remote`` task, an actor method and a TAO-wrapped task
    is charged to that task: the ledger's task records carry the units, the report gives joules per unit
    per group and the Ray metrics export them; a negative count fails the task, saying why."""
    pytest.importorskip("prometheus_client")
    from tao_core.governance.validate import load_report, validate_report

    tao()
    assert ray.get([plain_tokens.remote(10 * (i + 1)) for i in range(4)], timeout=120) == [10, 20, 30, 40]
    ray.get([wrapped_images.options(tao_group="imgs").remote(i) for i in range(3)], timeout=120)
    reader = Reader.remote()
    assert ray.get([reader.read.remote(5) for _ in range(2)], timeout=120) == [5, 5]  # actor methods count too
    with pytest.raises(Exception, match="must be a finite number >= 0") as err:
        ray.get(bad_count.remote(), timeout=60)
    assert "tokens" in str(err.value) and isinstance(err.value, UnitCountError)

    df = tao_ray.report(str(tmp_path / "report.json"), carbon_intensity_g_per_kwh=400.0)
    plain = df[df["group"] == "plain_tokens"]
    imgs = df[df["group"] == "imgs"]
    assert len(plain) == 4 and set(plain["known_by"]) == {"ray-task-events"}
    assert len(imgs) == 3 and set(imgs["known_by"]) == {"tao-wrapper"}
    assert sorted(u["tokens"] for u in plain["units"]) == [10, 20, 30, 40]
    assert sorted(u["images"] for u in imgs["units"]) == [1, 2, 3]
    rep = load_report(tmp_path / "report.json")
    assert validate_report(rep) == []
    wu = rep["work_units"]
    assert wu["counted"] and wu["basis"] == "task records"
    rows = {(r["group"], r["unit"]): r for r in wu["by_group"]}
    tok, img = rows[("plain_tokens", "tokens")], rows[("imgs", "images")]
    assert tok["amount"] == 100 and img["amount"] == 6
    assert tok["energy_j_per_unit"] > 0 and img["energy_j_per_unit"] > 0
    assert tok["energy_j_per_unit"] == pytest.approx(float(plain["energy_j"].sum()) / 100, rel=1e-9)
    assert img["energy_j_per_unit"] == pytest.approx(float(imgs["energy_j"].sum()) / 6, rel=1e-9)
    assert tok["emissions_g_co2e_per_unit"] == pytest.approx(tok["facility_energy_j_per_unit"] / 3.6e6 * 400.0)
    assert rows[("Reader.read", "pages")]["amount"] == 10 and rows[("Reader.read", "pages")]["energy_j_per_unit"] > 0
    assert {t["unit"]: t["amount"] for t in wu["totals"]} == {"images": 6, "pages": 10, "tokens": 100}
    ray.kill(reader)

    end, got = time.time() + 30, {}
    while time.time() < end:
        got = {(lb["scope"], lb["name"], lb["unit"]): v for lb, v in _scrape_tao_metrics().get(
            "ray_tao_energy_per_unit_joules", [])}
        units_total = {(lb["scope"], lb["name"], lb["unit"]): v for lb, v in _scrape_tao_metrics().get(
            "ray_tao_work_units_total", [])}
        grams = {(lb["scope"], lb["name"], lb["unit"]): v for lb, v in _scrape_tao_metrics().get(
            "ray_tao_emissions_per_unit_grams", [])}
        if ("group", "plain_tokens", "tokens") in got and ("group", "imgs", "images") in units_total and grams:
            break
        time.sleep(1.0)
    assert got[("group", "plain_tokens", "tokens")] == pytest.approx(tok["energy_j_per_unit"], rel=1e-6)
    assert grams[("group", "plain_tokens", "tokens")] == pytest.approx(tok["emissions_g_co2e_per_unit"], rel=1e-6)
    assert units_total[("group", "imgs", "images")] == 6


def test_live_attribution_waits_for_a_running_task(tao):
    """A sampler never settles past the start of a task still running on its node, and once
    the task ended its settled joules are what the report gives it."""
    tao()
    tok = tao_ray.session_token()
    long = where.options(tao_group="long")
    t0 = time.time()
    ref = long.remote(0, 3.0)
    time.sleep(1.8)  # running, reported by its worker (FLUSH_S 0.2 s)
    samplers = {n: _sampler(n) for n in _live()}
    ray.get([s.settle.remote(tok) for s in samplers.values()], timeout=30)
    _, node = ray.get(ref, timeout=60)
    during = ray.get(samplers[node].settled.remote(tok), timeout=30)
    assert during["running_workers"] == 1
    time.sleep(SPAN_LAG_S + 0.6)
    ray.get(samplers[node].settle.remote(tok), timeout=30)
    after = ray.get(samplers[node].settled.remote(tok), timeout=30)
    assert after["running_workers"] == 0 and after["t_s"] > t0 + 3.0
    df = tao_ray.report()
    start = float(df.loc[df["group"] == "long", "start_s"].iloc[0])
    assert during["t_s"] <= start  # held at (the reading before) the running task's start
    mine = df[(df["node_id"] == node) & (df["known_by"] == "tao-wrapper")]
    assert after["tasks"] == pytest.approx(float(mine["energy_j"].sum()), rel=1e-6)


def test_a_restarted_sampler_keeps_the_node_timeline_whole(tao, tmp_path):
    """Ray restarts a sampler whose process died; its counters start from zero, and the
    driver continues the node's timeline with the gap modeled at idle power."""
    rt = tao()
    tok = tao_ray.session_token()
    ray.get([where.remote(i, 0.2) for i in range(4)], timeout=60)
    # a sampler that dies loses the spans it had not handed over: wait until the driver has
    # these (it collects about every second, later when its sync round is slow)
    end = time.time() + 30
    while time.time() < end and len(rt.book.window(0.0, time.time())[1]) < 4:
        time.sleep(0.1)
    assert len(rt.book.window(0.0, time.time())[1]) == 4
    nid = _live()[0]
    old = ray.get(_sampler(nid).info.remote(tok), timeout=30)["incarnation"]
    ray.kill(_sampler(nid), no_restart=False)
    end = time.time() + 60
    new = old
    while time.time() < end and new == old:
        try:
            new = ray.get(_sampler(nid).info.remote(tok), timeout=5)["incarnation"]
        except Exception:  # noqa: BLE001 - restarting
            time.sleep(0.2)
    assert new != old
    ray.get([where.remote(i, 0.2) for i in range(6)], timeout=60)
    df = tao_ray.report(str(tmp_path / "report.json"))
    tl = tao_ray.timelines()[nid]
    assert [row.method for row in tl].count(GAP_METHOD) == 1
    t = [row.t_s for row in tl]
    e = [row.energy_j for row in tl]
    assert t == sorted(t) and e == sorted(e)  # in time order, cumulative energy never falls
    wrapped = df[df["known_by"] == "tao-wrapper"]
    assert len(wrapped) == 10 and (wrapped["energy_j"] >= 0).all()  # every task, each with its energy


def test_gcs_drain_powers_off_an_idle_node_and_keeps_one_ray_counts_busy(cluster, tao, tmp_path):
    """``drain="gcs"``: an idle node is drained with reason IDLE_TERMINATION and leaves the
    cluster; where a user's actor lives Ray refuses, and TAO keeps the node on with a new
    sampler. Runs last in this module: it adds the two nodes it drains."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from tao_core.control.config import ControllerConfig
    from tao_core.live.report import OFF_METHOD
    from tao_ray.autoscale import busy_nodes
    from tao_ray.nodes import TYPE_LABEL

    idle = cluster.add_node(num_cpus=1, labels={TYPE_LABEL: "old"})
    held = cluster.add_node(num_cpus=1, labels={TYPE_LABEL: "old"})
    cluster.wait_for_nodes()
    # the plan comes from the test, not the controller's idle timeouts
    rt = tao(config=ControllerConfig(scale_down=False), drain="gcs")
    assert {idle.node_id, held.node_id} <= set(_live())

    @ray.remote(num_cpus=0)
    class Users:
        def node(self):
            return ray.get_runtime_context().get_node_id()

    user = Users.options(scheduling_strategy=NodeAffinitySchedulingStrategy(held.node_id, soft=False)).remote()
    assert ray.get(user.node.remote(), timeout=30) == held.node_id
    ray.get([where.remote(i, 0.2) for i in range(4)], timeout=60)
    end = time.time() + 30  # Ray returns the workers' CPU leases a moment after their tasks
    while time.time() < end and {idle.node_id, held.node_id} & busy_nodes():
        time.sleep(0.2)

    rt.driver.plans.apply({"power_off": [idle.node_id, held.node_id], "reason": "test"})
    st = tao_ray.stats()
    actions = {(e["action"], e["node_id"]) for e in st["scale_log"] if "node_id" in e}
    assert ("power_off", idle.node_id) in actions
    assert ("drain-refused", held.node_id) in actions
    assert st["nodes"][idle.node_id]["state"] == "off" and st["nodes"][held.node_id]["state"] == "on"
    end = time.time() + 30
    while time.time() < end:  # the drained raylet leaves the cluster
        alive = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
        if idle.node_id not in alive:
            break
        time.sleep(0.5)
    assert idle.node_id not in alive and held.node_id in alive
    # TAO's new sampler on the node that stayed samples again
    assert ray.get(_sampler(held.node_id).ping.remote(tao_ray.session_token()), timeout=30) == held.node_id
    df = tao_ray.report(str(tmp_path / "report.json"))
    assert len(df[df["known_by"] == "tao-wrapper"]) >= 4
    nodes = df.attrs["nodes"]
    assert OFF_METHOD in nodes.loc[nodes["node_id"] == idle.node_id, "method"].iloc[0]
    # the scale-down that happened is in the ledger records as carried out
    kinds = df.attrs["report"]["controller"]["decisions"]
    assert kinds.get("carried-out:power_off") == 1 and kinds.get("carried-out:drain-refused") == 1
    # the node that stayed continues its timeline across the sampler TAO replaced
    tl = tao_ray.timelines()[held.node_id]
    assert [row.method for row in tl].count(GAP_METHOD) == 1
    assert [row.t_s for row in tl] == sorted(row.t_s for row in tl)
    assert [row.energy_j for row in tl] == sorted(row.energy_j for row in tl)
    ray.kill(user)
