"""tao_dask on a real Dask LocalCluster with worker processes (nothing of Dask is mocked).

Each worker is one modeled node: a SPECpower server curve applied to the CPU use of
that worker process. Tests check where tasks ran, that deferred tasks complete, that a
killed worker loses no result, that energy is conserved, and the retirement order.
"""
from __future__ import annotations

import json
import logging
import os
import time
import urllib.request

import psutil
import pytest

distributed = pytest.importorskip("distributed")
from distributed import Client, LocalCluster  # noqa: E402

import tao_dask  # noqa: E402
from tao_core.errors import InputError  # noqa: E402
from tao_dask.reporting import attribution_of, fetch, spans_of  # noqa: E402
from dask_fixtures import busy, wait_for as _wait_for  # noqa: E402

EFFICIENT = "IbmX3250XeonX3470"  # 41.6 W idle .. 113 W peak
WASTEFUL = "HpProLiantMl110G3PentiumD930"  # 105 W idle .. 169 W peak
MIDDLE = "HpProLiantMl110G5Xeon3075"  # 93.7 W idle .. 135 W peak

pytestmark = pytest.mark.timeout(120)


def add(a, b):
    return a + b


def slow_add(a, b, seconds=0.1):
    return add(busy(a, seconds), b)


def _cluster(n: int, **kw) -> LocalCluster:
    return LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                        silence_logs=logging.ERROR, **kw)


def _wait_telemetry(c: Client, n: int) -> None:
    _wait_for(lambda: sum(len(tl["t_s"]) >= 2 for tl in fetch(c)["timelines"].values()) >= n,
              what="telemetry from every worker")


def _names(c: Client) -> dict[str, str]:
    return {addr: str(w["name"]) for addr, w in c.scheduler_info()["workers"].items()}


# --------------------------------------------------------------------------- no cluster
def test_unknown_node_type_is_a_clear_error():
    with pytest.raises(InputError, match="node type 'NoSuchServer'"):
        tao_dask.plugins(workers={"0": "NoSuchServer"})
    with pytest.raises(InputError, match="tdp:<peak watts>"):
        tao_dask.plugins(default_type="tdp:lots")


# --------------------------------------------------------------------------- placement
@pytest.fixture(scope="module")
def hetero():
    """3 workers: one efficient, two wasteful; TAO registered with energy first."""
    with _cluster(3) as cl, Client(cl) as c:
        tao_dask.register(c, workers={"0": EFFICIENT, "1": WASTEFUL, "2": WASTEFUL},
                          config={"lambda_j_per_s": 1.0})
        _wait_telemetry(c, 3)
        yield cl, c


def _placed_and_ran(data):
    """(task id -> worker TAO pinned it to, task id -> worker it ran on)."""
    placed = {e["subject"]: e["node_id"] for e in data["decisions"] if e["kind"] == "place"}
    ran = {s.task_id: s.worker for s in spans_of(data)}
    return placed, ran


def test_tasks_run_where_tao_placed_them(hetero):
    cl, c = hetero
    futs = c.map(busy, range(3), pure=False)  # a small group: not root-ish, TAO pins each
    assert c.gather(futs) == list(range(3))
    data = fetch(c)
    placed, ran = _placed_and_ran(data)
    ids = [f"{f.key}#1" for f in futs]
    assert all(t in placed for t in ids), "every task was decided by the controller"
    assert all(ran[t] == placed[t] for t in ids), "every task ran on the worker TAO chose"
    names = _names(c)
    first = min((e for e in data["decisions"] if e["kind"] == "place" and e["subject"] in ids),
                key=lambda e: e["t_s"])
    assert names[first["node_id"]] == "0", "with every worker free the efficient one is chosen"


def test_a_wide_map_is_admitted_and_left_to_dasks_queue(hetero):
    cl, c = hetero
    before = fetch(c)["left_reasons"].get("root-ish: Dask's queue", 0)
    futs = c.map(busy, range(12), seconds=0.05, pure=False)  # 12 > 2 x 3 threads: root-ish
    assert c.gather(futs) == list(range(12))
    data = fetch(c)
    assert data["left_reasons"]["root-ish: Dask's queue"] > before
    assert data["held_now"] == 0 and data["pinned_now"] == 0


def test_dependent_tasks_are_placed_where_their_input_is(hetero):
    cl, c = hetero
    a = c.map(busy, range(3), pure=False)
    b = [c.submit(slow_add, x, 10, pure=False) for x in a]
    assert c.gather(b) == [10, 11, 12]
    data = fetch(c)
    placed, ran = _placed_and_ran(data)
    where = {s.key: s.worker for s in spans_of(data)}
    for x, y in zip(a, b):
        t = f"{y.key}#1"
        if t in placed:  # pinned: to where its input was, and it ran there
            assert placed[t] == where[str(x.key)] == ran[t]


def test_energy_is_conserved_and_reported(hetero, tmp_path):
    cl, c = hetero
    futs = c.map(busy, range(6), pure=False)
    c.gather(futs)
    time.sleep(0.6)  # one more telemetry sample after the last task
    out = tmp_path / "dask-report.json"
    df = tao_dask.report(c, str(out))
    assert {"task_id", "node_id", "energy_j", "source"} <= set(df.columns)
    mine = df[df["key"].isin([str(f.key) for f in futs])]
    assert len(mine) == 6
    assert (mine["source"] == "modeled").all(), mine
    assert (mine["energy_j"] > 0).all(), mine
    data = fetch(c)  # one export: a second one would already hold the next sample
    att = attribution_of(data)
    att.check_conservation()
    for addr, tl in data["timelines"].items():
        row = att.nodes.loc[att.nodes["node_id"] == addr]
        assert row["total_j"].iloc[0] == pytest.approx(tl["energy_j"][-1] - tl["energy_j"][0], rel=1e-9, abs=1e-6)
    rep = json.loads(out.read_text())
    from tao_core.governance import validate_report, verify_ledger

    assert validate_report(rep) == []
    verify_ledger(str(out) + ".ledger.jsonl")
    curves = {t["node_type"]: t["curve"] for t in rep["hardware"]["node_types"]}
    assert curves and all(c is not None and c["origin"] == "declared" for c in curves.values()), curves
    # the report and the returned frame come from the same export
    assert sum(g["energy_j"] for g in rep["energy"]["by_group"]) == pytest.approx(df["energy_j"].sum())
    assert rep["energy"]["it_energy_j"] == pytest.approx(
        rep["energy"]["idle_energy_j"] + df["energy_j"].sum())
    assert rep["provenance"]["modeled_share"] == pytest.approx(1.0)
    assert {g["group"] for g in rep["energy"]["by_group"]} >= {"busy"}


def test_prometheus_metrics(hetero):
    cl, c = hetero
    url = cl.dashboard_link.replace("/status", "/metrics")
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    for name in ("tao_node_power_watts", "tao_node_energy_joules_total", "tao_cluster_power_watts",
                 "tao_tasks_total", "tao_placement_active"):
        assert name in text, name
    assert 'node_type="IbmX3250XeonX3470"' in text


# --------------------------------------------------------------------------- deferral
def test_power_budget_defers_and_every_task_completes():
    # idle draw of the 3 workers: 3 x 41.6 W; one busy worker adds 71.4 W. A budget of
    # 3 x 41.6 + 80 W admits one running task at a time.
    with _cluster(3) as cl, Client(cl) as c:
        tao_dask.register(c, default_type=EFFICIENT, config={"power_budget_w": 3 * 41.6 + 80.0})
        _wait_telemetry(c, 3)
        futs = c.map(busy, range(8), pure=False)
        assert c.gather(futs) == list(range(8))
        data = fetch(c)
        assert data["counts"]["deferred"] > 0
        assert data["held_now"] == 0
        defers = [e for e in data["decisions"] if e["kind"] == "defer"]
        assert any("power" in e["reason"] for e in defers), [e["reason"] for e in defers]
        assert all(e["budget"]["power_budget_w"] == pytest.approx(3 * 41.6 + 80.0) for e in defers)


# --------------------------------------------------------------------------- failures
def test_killed_worker_loses_no_result():
    with _cluster(3) as cl, Client(cl) as c:
        tao_dask.register(c, workers={"0": EFFICIENT, "1": WASTEFUL, "2": WASTEFUL})
        _wait_telemetry(c, 3)
        first = c.map(busy, range(12), seconds=0.2, pure=False)
        second = [c.submit(slow_add, f, 100, pure=False) for f in first]
        # wait until the efficient worker holds results, then kill its process
        eff = next(a for a, n in _names(c).items() if n == "0")
        _wait_for(lambda: c.run_on_scheduler(
            lambda dask_scheduler, a=eff: len(dask_scheduler.workers[a].has_what)) > 0,
            what="a result on the worker to kill")
        pid = next(n["pid"] for n in fetch(c)["nodes"] if n["address"] == eff)
        assert pid is not None and pid != os.getpid()
        psutil.Process(pid).kill()  # SIGKILL the worker process; its Nanny starts a new one
        assert c.gather(second, errors="raise") == [x + 100 for x in range(12)]
        data = fetch(c)
        assert any(n["address"] == eff and n["left_s"] is not None for n in data["nodes"])
        assert data["held_now"] == 0


def test_fail_open_when_tao_breaks(caplog):
    with _cluster(2) as cl, Client(cl) as c:
        tao_dask.register(c, default_type=EFFICIENT)
        _wait_telemetry(c, 2)
        c.gather(c.map(busy, range(2), pure=False))

        def break_controller(dask_scheduler):
            class Broken:
                def __getattr__(self, name):
                    raise RuntimeError("controller down")
            dask_scheduler.plugins["tao"].members.ctl = Broken()

        c.run_on_scheduler(break_controller)
        with caplog.at_level(logging.WARNING, logger="tao_dask"):
            futs = c.map(busy, range(10), seconds=0.05, pure=False)
            assert c.gather(futs) == list(range(10))
        data = fetch(c)
        assert data["counts"]["errors"] > 0 and data["counts"]["fallbacks"] > 0
        assert any("Dask's own scheduling is used" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------- scaling
def test_adaptive_retires_least_efficient_first():
    with _cluster(3) as cl, Client(cl) as c:
        tao_dask.register(c, workers={"0": EFFICIENT, "1": WASTEFUL, "2": MIDDLE})
        _wait_telemetry(c, 3)
        # Dask's own downscaling hook order, all workers idle and holding nothing
        order = c.run_on_scheduler(lambda dask_scheduler: dask_scheduler.workers_to_close(n=1, attribute="name"))
        assert [str(x) for x in order] == ["1"]
        cl.adapt(Adaptive=tao_dask.EnergyAdaptive, minimum=1, maximum=3, interval="200ms", wait_count=1)
        gone = []

        def step():
            live = set(_names(c).values())
            for n in ("1", "2", "0"):
                if n not in live and n not in gone:
                    gone.append(n)
            return len(live) == 1

        _wait_for(step, timeout=30, what="scale down to one worker")
        assert gone == ["1", "2"], f"retired in order {gone}: least efficient first"
        assert set(_names(c).values()) == {"0"}


def test_adaptive_starts_the_most_efficient_declared_worker_first():
    # LocalCluster names new workers 0, 1, 2, ...: Dask's own Adaptive would start the
    # wasteful "0" first
    with _cluster(0) as cl, Client(cl) as c:
        tao_dask.register(c, workers={"0": WASTEFUL, "1": MIDDLE, "2": EFFICIENT})
        cl.adapt(Adaptive=tao_dask.EnergyAdaptive, minimum=1, maximum=3, interval="200ms", wait_count=3)
        _wait_for(lambda: len(_names(c)) == 1, timeout=30, what="the first worker")
        assert set(_names(c).values()) == {"2"}
        cl.adapt(Adaptive=tao_dask.EnergyAdaptive, minimum=2, maximum=3, interval="200ms", wait_count=3)
        _wait_for(lambda: len(_names(c)) == 2, timeout=30, what="a second worker")
        assert set(_names(c).values()) == {"1", "2"}
        assert sorted(map(str, cl.worker_spec)) == ["1", "2"]


def test_adaptive_keeps_an_idle_worker_until_its_break_even_time():
    from tao_core.power.catalog import specpower_node_type

    # booting costs 4 s of idle power and off draws 0 W: an idle worker is worth keeping
    # for 4 s (the controller's default idle timeout); Dask's own loop here would retire
    # both idle workers within half a second
    nt = specpower_node_type(EFFICIENT, cpus=1, boot_s=4.0)
    with _cluster(2) as cl, Client(cl) as c:
        tao_dask.register(c, node_types=[nt], default_type=nt.name, config={"spare_horizon_s": 0.0})
        _wait_telemetry(c, 2)
        assert c.gather(c.map(busy, range(4), seconds=0.05, pure=False)) == list(range(4))
        idle_from = time.time()
        cl.adapt(Adaptive=tao_dask.EnergyAdaptive, minimum=0, maximum=2, interval="200ms", wait_count=3)
        time.sleep(1.5)
        assert len(_names(c)) == 2, "an idle worker was retired before its break-even time"
        _wait_for(lambda: len(_names(c)) == 0, timeout=40, what="idle workers retired after the break-even time")
        assert time.time() - idle_from >= 4.0


def test_scheduler_preload(tmp_path, monkeypatch):
    import dask

    cfg = tmp_path / "tao.json"
    cfg.write_text(json.dumps({"default_type": "tdp:150", "place": False}))
    monkeypatch.setenv("TAO_DASK_CONFIG", str(cfg))
    with dask.config.set({"distributed.scheduler.preload": ["tao_dask"]}):
        with _cluster(1) as cl, Client(cl) as c:
            assert c.run_on_scheduler(lambda dask_scheduler: "tao" in dask_scheduler.plugins)
            _wait_telemetry(c, 1)
            c.gather(c.map(busy, range(2), seconds=0.05, pure=False))
            data = fetch(c)
            assert data["placing"] is False
            assert data["nodes"][0]["node_type"] == "tdp:150"


def test_job_energy_budget_deny_fails_the_task_not_the_cluster():
    with _cluster(2) as cl, Client(cl) as c:
        tao_dask.register(c, default_type=EFFICIENT,
                          config={"job_budgets_j": {"etl": 1.0}, "job_budget_mode": "deny"})
        _wait_telemetry(c, 2)
        import dask

        with dask.annotate(tao_job="etl"):
            denied = c.submit(busy, 1, pure=False)
        with pytest.raises(tao_dask.EnergyBudgetExceeded, match="etl"):
            denied.result(timeout=30)
        other = c.submit(busy, 2, pure=False)  # no job: unaffected
        assert other.result(timeout=30) == 2
        assert fetch(c)["counts"]["rejected"] == 1


def test_worker_of_a_new_type_joining_later_is_managed():
    with _cluster(1) as cl, Client(cl) as c:
        tao_dask.register(c, workers={"0": WASTEFUL, "1": EFFICIENT})
        _wait_telemetry(c, 1)
        c.gather(c.map(busy, range(2), seconds=0.05, pure=False))  # controller made with WASTEFUL only
        cl.scale(2)
        c.wait_for_workers(2)
        _wait_for(lambda: all(n["managed"] for n in fetch(c)["nodes"]), what="both workers managed")
        futs = c.map(busy, range(4), pure=False)
        c.gather(futs)
        data = fetch(c)
        eff = next(n["address"] for n in data["nodes"] if n["name"] == "1")
        keys = {f"{f.key}#1" for f in futs}
        first = min((e for e in data["decisions"] if e["kind"] == "place" and e["subject"] in keys),
                    key=lambda e: e["t_s"])
        assert first["node_id"] == eff, "the first task of the new graph goes to the efficient newcomer"
