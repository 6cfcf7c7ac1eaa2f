"""tao_dask keeps Dask's contract, on real Dask clusters with worker processes (nothing of
Dask is mocked): restrictions, paused workers, mixed thread counts, secede, Reschedule,
P2P shuffles and merges, a key computed twice, and the watchdog.

One cluster serves most tests: worker "a" (1 thread, resource A=1) and worker "b"
(2 threads), both of one node type, TAO placing.
"""
from __future__ import annotations

import logging
import time

import pytest

distributed = pytest.importorskip("distributed")
from distributed import Client, Event, LocalCluster, Nanny, Reschedule, Scheduler, SpecCluster  # noqa: E402
from distributed import get_worker, worker_client  # noqa: E402

import tao_dask  # noqa: E402
from tao_dask.reporting import fetch, spans_of  # noqa: E402
from dask_fixtures import busy, wait_for as _wait_for  # noqa: E402

EFFICIENT = "IbmX3250XeonX3470"

pytestmark = pytest.mark.timeout(180)


def _stats(c: Client) -> dict:
    return c.run_on_scheduler(lambda dask_scheduler: dask_scheduler.plugins["tao"].stats())


def _state(c: Client, key) -> str | None:
    """The scheduler's state of ``key`` (None before it arrives)."""
    def state(dask_scheduler, k=key):
        ts = dask_scheduler.tasks.get(k)
        return None if ts is None else ts.state

    return c.run_on_scheduler(state)


def _addr(c: Client, name: str) -> str:
    return next(a for a, w in c.scheduler_info()["workers"].items() if str(w["name"]) == name)


def _nanny(**options) -> dict:
    return {"cls": Nanny, "options": {"silence_logs": logging.ERROR, **options}}


@pytest.fixture(scope="module")
def mixed():
    # memory.pause off: Dask's memory monitor would resume a worker the test pauses
    spec = {"a": _nanny(nthreads=1, resources={"A": 1}), "b": _nanny(nthreads=2, config={"distributed.worker.memory.pause": False})}
    with SpecCluster(workers=spec, scheduler={"cls": Scheduler, "options": {"dashboard_address": ":0"}},
                     silence_logs=logging.ERROR) as cl, Client(cl) as c:
        tao_dask.register(c, default_type=EFFICIENT)
        c.wait_for_workers(2)
        _wait_for(lambda: sum(n["node_type"] is not None for n in fetch(c)["nodes"]) == 2, what="both workers typed")
        c.submit(busy, 0, seconds=0.01).result()  # the first graph makes the controller
        _wait_for(lambda: sum(n["managed"] for n in fetch(c)["nodes"]) == 2, what="both workers managed")
        yield cl, c


# --------------------------------------------------------------------------- sizes
def test_each_worker_is_a_node_of_its_own_thread_count(mixed):
    cl, c = mixed
    nodes = {n["name"]: n for n in fetch(c)["nodes"]}
    assert (nodes["a"]["nthreads"], nodes["b"]["nthreads"]) == (1, 2)
    types = c.run_on_scheduler(lambda dask_scheduler: {
        n.name: (n.node_type.name, n.node_type.cpus) for n in dask_scheduler.plugins["tao"].members.nodes.values()})
    assert types == {"a": (f"{EFFICIENT}/1cpu", 1.0), "b": (f"{EFFICIENT}/2cpu", 2.0)}
    # three tasks at once: TAO pins at most one to "a" and two to "b" at a time
    futs = c.map(busy, range(3), seconds=0.4, pure=False)
    c.gather(futs)
    keys = {str(f.key) for f in futs}
    runs = [s for s in spans_of(fetch(c)) if s.key in keys]
    for worker, limit in ((_addr(c, "a"), 1), (_addr(c, "b"), 2)):
        mine = [(s.start_s, s.end_s) for s in runs if s.worker == worker]
        overlap = max((sum(t0 < e1 and t1 > s0 for t0, t1 in mine) for s0, e1 in mine), default=0)
        assert overlap <= limit, (worker, mine)


def test_a_pin_is_soft_and_comes_off_when_the_task_ends(mixed):
    cl, c = mixed
    ev = Event()
    fut = c.submit(lambda e: e.wait(), ev, key="pinned-task")

    def pin(dask_scheduler, k="pinned-task"):
        ts = dask_scheduler.tasks.get(k)
        return None if ts is None else (ts.state, ts.worker_restrictions, ts.loose_restrictions,
                                        ts.processing_on.address if ts.processing_on else None)

    _wait_for(lambda: (pin_ := c.run_on_scheduler(pin)) is not None and pin_[0] == "processing", what="running")
    state, wr, loose, on = c.run_on_scheduler(pin)
    assert wr == {on} and loose is True, "TAO's restriction lets Dask fall back and work stealing move it"
    ev.set()
    fut.result(timeout=30)
    state, wr, loose, on = c.run_on_scheduler(pin)
    assert state == "memory" and wr is None and loose is False


# --------------------------------------------------------------------------- restrictions
def test_resource_restrictions_are_honoured(mixed):
    cl, c = mixed
    before = _stats(c)["left_reasons"].get("resources", 0)
    futs = c.map(busy, range(4), seconds=0.05, resources={"A": 1}, pure=False)
    assert c.gather(futs) == list(range(4))
    keys = {str(f.key) for f in futs}
    ran = {s.worker for s in spans_of(fetch(c)) if s.key in keys}
    assert ran == {_addr(c, "a")}, "only worker a has resource A"
    assert _stats(c)["left_reasons"]["resources"] - before == 4


def test_user_restriction_survives_its_worker_leaving(mixed):
    cl, c = mixed
    cl.worker_spec["c"] = _nanny(nthreads=1)
    cl.sync(cl._correct_state)
    c.wait_for_workers(3)
    addr_c = _addr(c, "c")
    ev = Event()
    blocker = c.submit(lambda e: e.wait(), ev, workers=[addr_c], pure=False)
    strict = c.submit(busy, 1, seconds=0.01, workers=[addr_c], pure=False)
    loose = c.submit(busy, 2, seconds=0.01, workers=[addr_c], allow_other_workers=True, pure=False)
    _wait_for(lambda: _state(c, blocker.key) == "processing" and _state(c, strict.key) == "processing",
              what="the blocker and the strict task on c")
    del cl.worker_spec["c"]
    cl.sync(cl._correct_state)
    assert loose.result(timeout=30) == 2, "allow_other_workers: runs elsewhere once c is gone"

    def restrictions(dask_scheduler, k=strict.key):
        ts = dask_scheduler.tasks[k]
        return ts.state, ts.worker_restrictions, ts.loose_restrictions

    _wait_for(lambda: _state(c, strict.key) == "no-worker", what="strict task waiting for c")
    state, wr, loose_flag = c.run_on_scheduler(restrictions)
    assert wr == {addr_c} and loose_flag is False, "the user's strict restriction is kept, as Dask keeps it"
    ev.set()
    blocker.release()
    strict.release()


def test_paused_worker_gets_nothing_new(mixed):
    cl, c = mixed
    from distributed.core import Status

    addr_b = _addr(c, "b")

    def set_status(dask_worker, status):
        dask_worker.status = Status[status]

    c.run(set_status, status="paused", workers=[addr_b])
    try:
        _wait_for(lambda: c.run_on_scheduler(lambda dask_scheduler: str(dask_scheduler.workers[addr_b].status))
                  == "Status.paused", what="b paused at the scheduler")
        futs = c.map(busy, range(4), seconds=0.05, pure=False)
        assert c.gather(futs, errors="raise") == list(range(4))
        keys = {str(f.key) for f in futs}
        assert {s.worker for s in spans_of(fetch(c)) if s.key in keys} == {_addr(c, "a")}
    finally:
        c.run(set_status, status="running", workers=[addr_b])


def _parent(n):
    with worker_client() as wc:  # secedes: the thread is given back while children run
        return sum(wc.gather(wc.map(busy, range(n), seconds=0.05, pure=False)))


def test_seceded_tasks_give_their_thread_back(mixed):
    cl, c = mixed
    before = _stats(c)["counts"].get("seceded", 0)
    futs = c.map(_parent, [4, 4, 4], pure=False)  # three parents fill the three threads
    assert c.gather(futs, errors="raise") == [6, 6, 6]
    st = _stats(c)
    assert st["held_now"] == 0
    assert st["counts"].get("seceded", 0) > before, "a parent TAO pinned seceded and gave its slot back"


def test_rescheduled_task_moves_on(mixed):
    cl, c = mixed
    addr_a = _addr(c, "a")

    def picky(x, a=addr_a):
        if get_worker().address == a:
            raise Reschedule()
        return busy(x, 0.05)

    before = _stats(c)["left_reasons"].get("put back by Dask", 0)
    futs = c.map(picky, range(6), pure=False)
    assert c.gather(futs, errors="raise") == list(range(6))
    keys = {str(f.key) for f in futs}
    assert {s.worker for s in spans_of(fetch(c)) if s.key in keys} == {_addr(c, "b")}
    put_back = _stats(c)["left_reasons"].get("put back by Dask", 0) - before
    assert put_back <= 6, "a run Dask put back goes to Dask's placement, no ping-pong through TAO"


# --------------------------------------------------------------------------- P2P
def test_p2p_groupby_and_merge_finish_with_dask_results(mixed):
    cl, c = mixed
    dd = pytest.importorskip("dask.dataframe")
    import dask

    df = dask.datasets.timeseries(start="2000-01-01", end="2000-01-05", freq="60s", partition_freq="12h", seed=1)
    pdf = df.compute()
    want_g = pdf.groupby("name").agg({"x": "mean", "y": "max"}).sort_index()
    other = dd.from_pandas(pdf.groupby("name").id.count().rename("n").reset_index(), npartitions=3)
    want_m = pdf.reset_index().merge(other.compute(), on="name").sort_values(["timestamp", "name"])
    want_m = want_m.reset_index(drop=True)
    before = _stats(c)
    for _ in range(10):
        g = df.groupby("name").agg({"x": "mean", "y": "max"}, split_out=3, shuffle_method="p2p")
        got_g = g.compute().sort_index()
        assert got_g.index.equals(want_g.index)
        assert (got_g - want_g).abs().max().max() < 1e-9
        m = df.reset_index().merge(other, on="name", shuffle_method="p2p")
        got_m = m.compute().sort_values(["timestamp", "name"]).reset_index(drop=True)
        assert got_m.equals(want_m[got_m.columns])
    after = _stats(c)
    assert after["left_reasons"].get("p2p", 0) > before["left_reasons"].get("p2p", 0)
    assert after["held_now"] == 0 and after["counts"]["errors"] == before["counts"]["errors"]


# --------------------------------------------------------------------------- runs
def test_a_key_computed_twice_is_two_runs_in_the_report(mixed, tmp_path):
    cl, c = mixed
    import dask

    t = dask.delayed(busy)(7, 0.05, dask_key_name="computed-twice")
    assert t.compute() == 7
    _wait_for(lambda: _state(c, "computed-twice") is None, what="the first result released")
    assert t.compute() == 7  # the same key again: a second run
    time.sleep(0.6)  # a telemetry sample after the last run
    df = tao_dask.report(c, str(tmp_path / "twice.json"))
    mine = df[df["key"] == "computed-twice"].sort_values("run")
    assert list(mine["run"]) == [1, 2]
    assert list(mine["task_id"]) == ["computed-twice#1", "computed-twice#2"]
    assert (mine["energy_j"] > 0).all()
    assert (tmp_path / "twice.json").exists()


def test_left_to_dask_counts_each_run_once(mixed):
    cl, c = mixed
    c.gather(c.map(lambda x: x, range(50), pure=False))  # Dask learns the prefix is tiny
    before = _stats(c)["counts"]
    futs = c.map(lambda x: x, range(200), pure=False)
    c.gather(futs)
    after = _stats(c)["counts"]
    placed = after.get("placed", 0) - before.get("placed", 0)
    left = after.get("left_to_dask", 0) - before.get("left_to_dask", 0)
    assert placed + left == 200, (placed, left)


# --------------------------------------------------------------------------- watchdog
def test_watchdog_hands_a_stalled_task_back_to_dask(caplog):
    # a budget below the idle draw admits nothing: without the watchdog this would hang
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.ERROR) as cl, Client(cl) as c:
        tao_dask.register(c, default_type=EFFICIENT, config={"power_budget_w": 1.0}, watchdog_s=1.0)
        _wait_for(lambda: any(n["node_type"] for n in fetch(c)["nodes"]), what="the worker typed")
        with caplog.at_level(logging.WARNING, logger="tao_dask"):
            fut = c.submit(busy, 5, seconds=0.05, key="stalled-task")
            assert fut.result(timeout=30) == 5
        msgs = [r.getMessage() for r in caplog.records if "watchdog" in r.getMessage()]
        assert msgs and "'stalled-task'" in msgs[0] and "power" in msgs[0], msgs
        st = _stats(c)
        assert st["counts"]["watchdog"] == 1 and st["held_now"] == 0


# --------------------------------------------------------------------------- telemetry origin
def _timeline(c: Client, addr: str) -> dict:
    return fetch(c)["timelines"][addr]


def test_a_client_cannot_speak_for_a_worker(mixed):
    cl, c = mixed
    addr_a = _addr(c, "a")
    _wait_for(lambda: len(_timeline(c, addr_a)["t_s"]) >= 2, what="telemetry from a")
    before = _stats(c)["counts"]["telemetry_refused"]
    fake = {"v": 2, "worker": addr_a, "t": time.time() + 1, "energy_j": 1e9, "power_w": 1e6, "source": "modeled"}
    c.log_event("tao-telemetry", fake)  # the public event API: refused
    _wait_for(lambda: _stats(c)["counts"]["telemetry_refused"] > before, what="the event refused")
    with Client(cl.scheduler_address) as rogue:  # the client's own stream: Dask rejects the call
        rogue._send_to_scheduler({"op": "tao-telemetry", "worker": addr_a, "msg": fake})
        time.sleep(1.0)
    tl = _timeline(c, addr_a)
    assert max(tl["power_w"]) < 1e3 and tl["energy_j"][-1] < 1e6, "no fake sample in a's timeline"
    assert _stats(c)["placing"] is True


def _send_raw(dask_worker, messages):
    for m in messages:
        dask_worker.batched_send({"op": "tao-telemetry", "msg": m})
    return len(messages)


def test_malformed_worker_telemetry_is_dropped_and_counted_not_fatal(mixed):
    cl, c = mixed
    addr_a = _addr(c, "a")
    _wait_for(lambda: len(_timeline(c, addr_a)["t_s"]) >= 2, what="telemetry from a")
    before = _stats(c)
    now = time.time()
    bad = [
        "not a mapping", [1, 2], {"v": 1, "t": now}, {"v": 2}, {"v": 2, "t": float("nan")},
        {"v": 2, "t": now + 3600}, {"v": 2, "t": now - 3600}, {"v": 2, "t": "soon"},
        {"v": 2, "t": now + 5, "energy_j": -5.0, "power_w": 10.0},
        {"v": 2, "t": now + 5, "energy_j": 0.0, "power_w": 10.0},  # energy went backwards
        {"v": 2, "t": now + 5, "energy_j": 1e25, "power_w": 10.0},  # rose faster than any worker can draw
        {"v": 2, "t": now + 5, "energy_j": 1.0, "power_w": 1e6},
        {"v": 2, "t": now + 5, "energy_j": 1.0, "power_w": float("inf")},
        {"v": 2, "t": now + 5, "energy_j": 1.0, "power_w": 10.0, "utilization": 7.0},
        {"v": 2, "t": now + 5, "energy_j": 1.0, "power_w": 10.0, "source": "measured-by-wishful-thinking"},
        {"v": 2, "t": now + 5, "energy_j": 1.0, "power_w": 10.0, "uncertainty": -1.0},
        {"v": 2, "t": now + 5, "energy_j": 1.0},
        {"v": 2, "t": now + 5, "cpu_s": {"inc": -1.0}},
        {"v": 2, "t": now + 5, "cpu_s": {"x" * 1000: 1.0}},
        {"v": 2, "t": now + 5, "cpu_s": "lots"},
        {"v": 2, "t": now + 5, "pid": -3}, {"v": 2, "t": now + 5, "nthreads": 0},
        {"v": 2, "t": now + 5, "node_type": 42}, {"v": 2, "t": now + 5, "final": "yes"},
        {"v": 2, "t": now + 5, "method": "m" * 10_000, "energy_j": 1.0, "power_w": 1.0},
        {"v": 2, "t": True},
    ]
    sent = c.run(_send_raw, messages=bad, workers=[addr_a])[addr_a]
    assert sent == len(bad) > 25
    _wait_for(lambda: _stats(c)["counts"]["telemetry_dropped"] - before["counts"]["telemetry_dropped"] >= len(bad),
              what="every malformed message counted")
    after = _stats(c)
    assert after["counts"]["telemetry_dropped"] - before["counts"]["telemetry_dropped"] == len(bad)
    assert after["counts"]["errors"] == before["counts"]["errors"], "malformed telemetry is not a TAO error"
    assert after["placing"] is True
    assert {"energy went backwards", "time outside the window", "power_w"} <= set(after["telemetry_dropped"])
    n = len(_timeline(c, addr_a)["t_s"])
    _wait_for(lambda: len(_timeline(c, addr_a)["t_s"]) > n, what="a's own samples still taken")
    assert c.submit(busy, 3, seconds=0.01, pure=False).result(timeout=30) == 3
