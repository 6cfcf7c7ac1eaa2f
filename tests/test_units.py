"""Units of work counted by tasks (``tao.count``, ``tao_core.units``): what is recorded, what
is refused, and the contract an engine adapter follows, on a real Dask LocalCluster with a
worker process: a WorkerPlugin registers the resolver (the key of the task the calling
thread runs) and drains each task's counts when it ends."""
from __future__ import annotations

import logging
import math
import threading

import pytest

import tao
from tao_core import units
from tao_core.accounting.records import WorkRecord, checked_units


@pytest.fixture(autouse=True)
def _clean():
    units.drain_all()
    units.set_task_resolver(None)
    yield
    units.drain_all()
    units.set_task_resolver(None)


def test_counts_add_up_per_task_and_are_drained_once():
    with tao.task_scope("t1"):
        tao.count("tokens", 100)
        tao.count("tokens", 23.5)
        tao.count("requests", 1)
    with tao.task_scope("t2"):
        tao.count("tokens", 7)
    assert units.pending() == 2
    assert units.drain("t1") == {"tokens": 123.5, "requests": 1.0}
    assert units.drain("t1") == {}
    assert units.drain_all() == {"t2": {"tokens": 7.0}}
    assert units.pending() == 0


@pytest.mark.parametrize("amount", [-1, -0.001, math.nan, math.inf, -math.inf, True, "12", None])
def test_a_bad_amount_is_refused_with_a_clear_error_and_nothing_is_recorded(amount):
    with tao.task_scope("t1"):
        with pytest.raises(tao.UnitCountError, match=r"count\('tokens', .*\): the amount must be a finite number >= 0"):
            tao.count("tokens", amount)
    assert units.drain_all() == {}


@pytest.mark.parametrize("name", ["", "Tokens", "1tokens", "to-kens", "tokens ", 7, "x" * 65])
def test_a_bad_unit_name_is_refused(name):
    with tao.task_scope("t1"), pytest.raises(tao.UnitCountError, match="a unit name is lower case letters"):
        tao.count(name, 1)
    assert units.drain_all() == {}


def test_counting_outside_any_task_is_an_error_not_a_silent_drop():
    with pytest.raises(tao.UnitCountError, match="no current task"):
        tao.count("tokens", 1)
    assert units.drain_all() == {}


def test_the_resolver_names_the_task_outside_a_scope_and_a_scope_wins_over_it():
    units.set_task_resolver(lambda: "from-resolver")
    tao.count("images", 2)
    with tao.task_scope("scoped"):
        tao.count("images", 3)
    assert units.drain_all() == {"from-resolver": {"images": 2.0}, "scoped": {"images": 3.0}}
    units.set_task_resolver(lambda: None)
    with pytest.raises(tao.UnitCountError, match="no current task"):
        tao.count("images", 1)


def test_threads_count_into_their_own_tasks():
    def work(i: int) -> None:
        with tao.task_scope(f"t{i}"):
            for _ in range(1000):
                tao.count("samples", 1)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert units.drain_all() == {f"t{i}": {"samples": 1000.0} for i in range(4)}


def test_work_records_carry_checked_units():
    rec = WorkRecord(scope="task", id="t1", energy_j=10.0, source="modeled", method="m", units={"tokens": 5, "a": 1})
    assert rec.payload()["units"] == {"a": 1.0, "tokens": 5.0}
    with pytest.raises(ValueError, match="task t1: units"):
        WorkRecord(scope="task", id="t1", energy_j=1.0, source="modeled", method="m", units={"tokens": -1})
    with pytest.raises(ValueError, match="not a mapping"):
        checked_units([("tokens", 1)])


# ----------------------------------------------------------------------------- in a real engine
distributed = pytest.importorskip("distributed")
from distributed import Client, LocalCluster, WorkerPlugin  # noqa: E402


class UnitsPlugin(WorkerPlugin):
    """The adapter side of the contract: the resolver is the key of the task the calling
    thread runs; each task's counts are drained when it leaves ``executing``."""

    name = "test-units"

    def setup(self, worker):
        from distributed.worker import thread_state

        self.drained = {}
        units.set_task_resolver(lambda: getattr(thread_state, "key", None))

    def transition(self, key, start, finish, **kwargs):
        if start == "executing":
            self.drained[str(key)] = units.drain(str(key))


def generate(n):
    tao.count("tokens", n)
    tao.count("requests", 1)
    return n


def bad(n):
    tao.count("tokens", n)
    return n


def _drained(dask_worker):
    return dask_worker.plugins["test-units"].drained


@pytest.mark.timeout(120)
def test_counts_made_in_dask_tasks_reach_the_adapter_and_bad_ones_fail_the_task():
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address=":0",
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        client.register_plugin(UnitsPlugin())
        futs = [client.submit(generate, n, key=f"gen-{n}") for n in (10, 20, 30)]
        assert client.gather(futs) == [10, 20, 30]
        failed = client.submit(bad, -5, key="bad-1")
        with pytest.raises(tao.UnitCountError, match=r"count\('tokens', -5\): the amount must be a finite number >= 0"):
            failed.result()
        nan = client.submit(bad, float("nan"), key="bad-2")
        with pytest.raises(tao.UnitCountError, match="finite number >= 0"):
            nan.result()
        drained = next(iter(client.run(_drained).values()))
    assert {k: v for k, v in drained.items() if k.startswith("gen-")} == {
        f"gen-{n}": {"tokens": float(n), "requests": 1.0} for n in (10, 20, 30)}
    assert drained["bad-1"] == {} and drained["bad-2"] == {}
