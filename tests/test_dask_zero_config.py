"""tao_dask with no arguments on a real LocalCluster started with no TAO arguments: each
worker describes its hardware, the workers share the type named after it, work is placed
and accounted with it, the settled energy of each placed task reaches the controller, and
units of work counted in tasks (``tao.count``) reach the ledger, the report and the
scheduler's Prometheus metrics. Nothing of Dask is mocked."""
from __future__ import annotations

import json
import logging
import time
import urllib.request

import pytest

distributed = pytest.importorskip("distributed")
from distributed import Client, LocalCluster  # noqa: E402

import tao  # noqa: E402
import tao_dask  # noqa: E402
from tao_core.hardware import describe_this_node  # noqa: E402
from tao_dask.reporting import fetch  # noqa: E402
from dask_fixtures import busy, wait_for as _wait_for  # noqa: E402

pytestmark = pytest.mark.timeout(180)


def tokens(x, n=10):
    busy(x, 0.05)
    tao.count("tokens", n)
    return x


def _plugin(c, what):
    return c.run_on_scheduler(lambda dask_scheduler, what=what: what(dask_scheduler.plugins["tao"]))


@pytest.fixture(scope="module")
def plain():
    """Two single-thread worker processes; TAO registered with no arguments."""
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.ERROR) as cl, Client(cl) as c:
        tao_dask.register(c)
        yield cl, c


def test_workers_describe_themselves_and_share_the_type_named_after_their_hardware(plain):
    cl, c = plain
    expected = describe_this_node(cpus=1).node_type.name  # the hardware key of this machine, 1 CPU
    _wait_for(lambda: all(n["node_type"] for n in fetch(c)["nodes"]), what="both workers typed")
    nodes = fetch(c)["nodes"]
    assert [n["node_type"] for n in nodes] == [expected, expected] and all(n["described"] for n in nodes)
    assert tao_dask.stats(c)["mode"] == "placing"
    futs = c.map(busy, range(2), pure=False)  # one task per thread: TAO pins each
    assert c.gather(futs) == [0, 1]
    data = fetch(c)
    places = [e for e in data["decisions"] if e["kind"] == "place"]
    assert {e["subject"] for e in places} >= {f"{f.key}#1" for f in futs}, "the controller placed every task"
    _wait_for(lambda: _plugin(c, lambda p: p.counts["energy_settled"]) >= 2, what="settled energies fed back")
    waiting = _plugin(c, lambda p: (len(p.members.ctl._settling), len(p.placement.settlement)))
    assert waiting == (0, 0), "every placed task's settled energy reached Controller.task_energy"
    corr = _plugin(c, lambda p: [float(x) for x in p.members.ctl.predictor.correction("busy")])
    assert corr[0] != 1.0, "the measured (modeled) attributed energy trained the energy correction"


def test_units_counted_in_tasks_reach_the_report_and_the_metrics(plain, tmp_path):
    cl, c = plain
    futs = c.map(tokens, range(4), n=25, pure=False)
    assert c.gather(futs) == [0, 1, 2, 3]
    bad = c.submit(tokens, 0, n=-1, pure=False)
    with pytest.raises(tao.UnitCountError, match="finite number >= 0"):
        bad.result(timeout=30)
    time.sleep(0.8)  # a sample after the last task
    out = tmp_path / "r.json"
    df = tao_dask.report(c, str(out))
    mine = df[df["key"].isin([str(f.key) for f in futs])]
    assert len(mine) == 4 and (mine["energy_j"] > 0).all()
    rep = json.loads(out.read_text())
    from tao_core.governance import read_records, validate_report

    assert validate_report(rep) == []
    expected = describe_this_node(cpus=1)
    curves = [t["curve"] for t in rep["hardware"]["node_types"]]
    assert curves and all(c is not None and c["origin"] == "discovered" for c in curves), \
        "the report says each described type's curve was discovered"
    assert curves[0]["method"] == expected.model.provenance.method
    rows = [r for r in rep["work_units"]["by_group"] if r["group"] == "tokens"]
    assert len(rows) == 1 and rows[0]["unit"] == "tokens" and rows[0]["amount"] == 100.0
    group_j = df.loc[df["group"] == "tokens", "energy_j"].sum()  # the erred run's work counts too
    assert rows[0]["energy_j_per_unit"] == pytest.approx(group_j / 100.0)
    recs, _ = read_records(str(out) + ".ledger.jsonl")
    tasks = [r["payload"] for r in recs
             if r["kind"] == "energy" and r["payload"]["scope"] == "task" and r["payload"]["group"] == "tokens"]
    assert sorted(t["units"].get("tokens", 0.0) for t in tasks) == [0.0, 25.0, 25.0, 25.0, 25.0]
    assert {n["node_type"] for n in rep["energy"]["by_node"]} == {describe_this_node(cpus=1).node_type.name}
    _wait_for(lambda: _plugin(c, lambda p: p.units_by_group.get("tokens", {}).get("tokens")) == 100.0,
              what="units at the scheduler")
    text = urllib.request.urlopen(cl.dashboard_link.replace("/status", "/metrics"), timeout=10).read().decode()
    assert 'tao_work_units_total{name="tokens",scope="group",unit="tokens"} 100.0' in text
    assert "tao_energy_per_unit_joules" in text


def test_a_cluster_with_no_worker_yet_warns_only_when_no_worker_could_be_typed():
    import warnings

    with LocalCluster(n_workers=0, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.ERROR) as cl, Client(cl) as c:
        with warnings.catch_warnings():
            warnings.simplefilter("error", tao_dask.ObserveOnlyWarning)
            tao_dask.register(c, workers={"0": "IbmX3250XeonX3470"})
        cl.scale(1)
        c.wait_for_workers(1, timeout=30)
        _wait_for(lambda: tao_dask.stats(c)["mode"] == "placing", what="the worker typed as it joined")
    with LocalCluster(n_workers=0, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.ERROR) as cl, Client(cl) as c:
        with pytest.warns(tao_dask.ObserveOnlyWarning, match="only observes"):
            tao_dask.register(c, discover=False)


def test_no_type_at_all_says_loudly_that_it_only_observes():
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.ERROR) as cl, Client(cl) as c:
        with pytest.warns(tao_dask.ObserveOnlyWarning, match="only observes"):
            tao_dask.register(c, discover=False)
        st = tao_dask.stats(c)
        assert st["mode"] == "observe-only" and "only observes" in st["why"]
        assert c.submit(busy, 1, seconds=0.01).result(timeout=30) == 1
