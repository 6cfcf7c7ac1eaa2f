"""The core objects a live adapter wraps, without any engine: the controller session and its
admission queue, the driver's grant pool, node timelines across sampler restarts, the
sampler's settled attribution and the live report's records."""
from __future__ import annotations

import pytest

from tao_core.attribution import attribute
from tao_core.control.config import ControllerConfig
from tao_core.control.types import TaskRequest
from tao_core.governance import build_report_from_records, validate_report
from tao_core.live import report
from tao_core.live.assignment import NodeAssignment
from tao_core.live.grants import GrantPool
from tao_core.live.parked import Hold, ParkedWatch
from tao_core.live.runs import DecisionLog, RunLog
from tao_core.live.sampler import NodeSampler
from tao_core.live.session import ControllerSession, Ended, SyncBatch
from tao_core.live.settling import EnergySettlement
from tao_core.live.timeline import GAP_METHOD, NodeTimeline, reading_of, row_of, wrapper_rows
from tao_core.live.values import SamplerBatch, SpanRow, TaskEnergy
from tao_core.live.worker_telemetry import EnergySeries, ceiling_w, parse
from tao_core.power.catalog import specpower_node_type
from tao_core.task_rows import spans_from_rows
from tao_core.telemetry.base import DomainReading, EnergySource, Reading, SourceKind

EFF = specpower_node_type("IbmX3250XeonX3470", name="eff", cpus=2)
OLD = specpower_node_type("HpProLiantMl110G3PentiumD930", name="old", cpus=2)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _session(**cfg):
    clock = Clock()
    s = ControllerSession([EFF, OLD], ControllerConfig(scale_down=False, **cfg), clock=clock)
    s.sync_nodes([("a", "eff", "on"), ("b", "old", "on"), ("c", "old", "on")])
    return s, clock


def test_strict_tasks_are_sent_once_wait_in_the_queue_and_go_when_work_ends():
    s, clock = _session(power_budget_w=300.0)  # idle 251.6 W: one busy CPU on eff fits, a second does not
    r = s.sync(SyncBatch(queued=[TaskRequest(f"t{i}", "g") for i in range(5)]))
    assert [tid for tid, _ in r.admitted] == ["t0"] and r.queued == 4
    assert r.admitted[0][1].node_id == "a"
    again = s.sync(SyncBatch(started=["t0"]))  # nothing re-sent: the waiting tasks stay queued, not re-asked
    assert again.admitted == [] and again.queued == 4 and s.stats()["counters"]["defer"] == 1
    clock.t += 1.0
    r = s.sync(SyncBatch(ended=[Ended("t0", 1.0)]))  # capacity back: the queue reopens
    assert [tid for tid, _ in r.admitted] == ["t1"]
    assert s.reset() == s.epoch and s.stats()["queued"] == 0 and s.stats()["running"] == 0


def test_a_rejected_task_comes_back_without_a_grant_and_slots_are_granted_per_group():
    s, _ = _session(job_budgets_j={"j": 0.0}, job_budget_mode="deny")
    r = s.sync(SyncBatch(queued=[TaskRequest("t0", "g", job="j")]))
    assert r.admitted == [("t0", None)] and r.queued == 0
    from tao_core.live.session import SlotWant

    r = s.sync(SyncBatch(slots=[SlotWant("g", 1.0, 0.0, None, 3)]))
    assert len(r.slots) == 3 and all(g.slot and g.group == "g" for g in r.slots)
    assert s.stats()["running"] == 3  # a slot is a reservation, started at once
    g = s.decide_one("Actor", 1.0, 0.0, None)
    assert g is not None and not g.slot and s.stats()["running"] == 4
    s.sync_nodes([("a", "eff", "on")])  # nodes b and c left: their reservations went with them
    assert set(s.stats()["nodes"]) == {"a"}


def test_an_ended_grant_with_its_energy_trains_the_groups_correction():
    s, clock = _session()
    place = s.decide_one("g", 1.0, 0.0, None)
    ev = next(e for e in s.events if e["kind"] == "place")
    model_w = ev["detail"]["added_w"] / ev["budget"]["dynamic_scale"] + EFF.idle_w / EFF.cpus
    clock.t += 2.0
    s.sync(SyncBatch(ended=[Ended(place.gid, duration_s=2.0, energy_j=0.5 * model_w * 2.0)]))
    assert s.energy_correction("g")["eff"] == pytest.approx(0.5)
    other = s.decide_one("h", 1.0, 0.0, None)
    s.sync(SyncBatch(ended=[Ended(other.gid, duration_s=2.0, energy_j=None)]))  # not known: nothing learned
    assert s.energy_correction("h") == {"eff": 1.0, "old": 1.0}


def test_a_session_without_node_types_starts_its_controller_with_the_first():
    s = ControllerSession([], ControllerConfig())
    r = s.sync(SyncBatch(queued=[TaskRequest("t0", "g")]))
    assert r.admitted == [] and r.queued == 1 and s.decide_one("g", 1, 0, None) is None
    s.add_node_type(EFF)
    s.sync_nodes([("a", "eff", "on")])
    assert s.sync(SyncBatch()).admitted[0][1].node_id == "a"  # the task sent before waited for it


def test_the_grant_pool_reuses_slots_and_hands_them_back_with_their_tasks_energy():
    s, clock = _session()
    pool = GrantPool(linger_s=0.5, energy_wait_s=2.0, clock=clock)
    assert pool.take_slot("g", 1.0, 0.0, None, wait_s=0.0) is None  # none yet: one is asked for
    pool.apply(s.sync(pool.batch()))
    a = pool.take_slot("g", 1.0, 0.0, None, wait_s=0.0)
    assert a is not None and a.inflight == 1
    pool.ran(a, "task-1")
    pool.slot_done(a, clock.t - 0.4)
    pool.ran(pool.take_slot("g", 1.0, 0.0, None, wait_s=0.0), "task-2")  # the same free slot again
    assert a.tasks == 2
    pool.slot_done(a, clock.t - 0.2)
    clock.t += 1.0
    assert s.ctl.predictor.mean_s("g") is None  # no run time known yet
    s.sync(pool.batch())  # idle past linger, but a task's energy is still on its way: kept
    assert a.grant.gid in pool.slots
    # both runs' times reached the controller while the slot is kept (0.4 s and 0.2 s: the
    # arithmetic over the geometric mean, whatever the node's speed)
    p = s.ctl.predictor
    assert p.held_s(1.0) / p.mean_s("g") == pytest.approx(0.3 / (0.4 * 0.2) ** 0.5)
    pool.settled([TaskEnergy("task-1", 12.0, 0.3), TaskEnergy("task-2", 8.0, 0.1), TaskEnergy("other", 5.0, 1.0)])
    b = pool.batch()
    assert b.ended == [Ended(a.grant.gid, pytest.approx(0.2), pytest.approx(10.0), True)] and not pool.slots
    before = p.correction("g").copy()
    s.sync(b)
    # the slot's end teaches the energy, not the run times once more (its mean, 0.2 s)
    assert p.held_s(1.0) / p.mean_s("g") == pytest.approx(0.3 / (0.4 * 0.2) ** 0.5)
    assert not (p.correction("g") == before).all()


def test_the_grant_pool_waits_strict_tasks_and_sends_them_again_to_a_new_session():
    s, clock = _session(power_budget_w=300.0)
    pool = GrantPool(clock=clock)
    for i in range(3):
        pool.wait(TaskRequest(f"t{i}", "g"), call=i)
    run = pool.apply(s.sync(pool.batch()))
    assert [(w.call, g.node_id) for w, g in run] == [(0, "a")] and list(pool.waiting) == ["t1", "t2"]
    assert pool.batch().queued == [] and pool.batch().started == []  # each sent once
    new, _ = _session(power_budget_w=300.0)
    assert pool.clear(keep_waiting=True) == []
    assert [r.task_id for r in pool.batch().queued] == ["t1", "t2"]
    pool.apply(new.sync(SyncBatch()))
    assert [w.call for w in pool.clear(keep_waiting=False)] == [1, 2] and not pool.waiting


def _reading(t: float, e_pkg: float, e_gpu: float) -> Reading:
    return Reading(t, {"package-0": DomainReading("package-0", e_pkg, SourceKind.MEASURED_RAPL, "rapl", uncertainty=0.02),
                       "gpu-0": DomainReading("gpu-0", e_gpu, SourceKind.MEASURED_NVML, "nvml", uncertainty=0.05)})


def test_rows_keep_components_and_the_joined_source_and_a_new_sampler_continues_the_timeline():
    row = row_of(_reading(10.0, 100.0, 40.0), 0.5)
    assert row.source == "measured-nvml+measured-rapl" and row.energy_j == 140.0
    back = reading_of(row)
    assert back.total_energy_j() == 140.0 and {str(d.source) for d in back.domains.values()} == {
        "measured-rapl", "measured-nvml"}
    tl = NodeTimeline("n", idle_w=10.0)
    rows = [row_of(_reading(t, 100.0 * t, 10.0 * t), None) for t in (1.0, 2.0)]
    assert tl.take(SamplerBatch("one", (0, 0, 0), 0, rows, 0, [], 0, [])) == []
    new = [row_of(_reading(t, 100.0 * (t - 4), 10.0 * (t - 4)), None) for t in (4.0, 5.0)]
    assert tl.take(SamplerBatch("two", tl.next, 0, new, 0, [], 0, [])) is None  # read it again from the start
    assert tl.take(SamplerBatch("two", tl.next, 0, new, 0, [], 0, [])) == []
    e = [r.energy_j for r in tl.rows]
    assert [r.method for r in tl.rows].count(GAP_METHOD) == 1
    assert e == pytest.approx([110.0, 220.0, 240.0, 240.0, 350.0])  # the gap at idle watts, then the new counters
    assert all(sum(p[2] for p in r.parts) == pytest.approx(r.energy_j) for r in tl.rows)


class Steps(EnergySource):
    """A measured source read at given wall-clock times: 100 W of CPU package, 20 W of GPU."""

    kind = SourceKind.MEASURED_RAPL

    def __init__(self, times):
        self.times = list(times)

    def read(self) -> Reading:
        t = self.times.pop(0)
        return _reading(t, 100.0 * (t - 100.0), 20.0 * (t - 100.0))


def test_settled_attribution_gives_each_task_the_reports_joules():
    src = Steps([100.0 + 0.5 * i for i in range(12)])
    smp = NodeSampler("n", src, cpus=2, idle_w=30.0, interval_s=1.0)
    for _ in range(11):
        smp.sample()
    spans = [SpanRow("a", "n", 100.2, 101.4, 1.0, "g", "j", 1.0), SpanRow("b", "n", 100.9, 102.0, 0.3, "g", "j", 1.0),
             SpanRow("c", "n", 103.0, 104.6, 1.5, "h", "j", 1.0)]
    smp.add_spans(spans[:2], pid=7, running_since=103.0)  # c runs: the settled instant stops before it
    smp.settle(now=110.0)
    b1 = smp.fetch((0, 0, 0))
    assert [e.task_id for e in b1.energies] == ["a", "b"] and smp.status()["running_workers"] == 1
    smp.add_spans(spans[2:], pid=7, running_since=None)
    smp.settle(now=110.0)
    got = {e.task_id: e.energy_j for e in smp.fetch((len(b1.rows), len(b1.spans), len(b1.energies))).energies}
    rows = smp.fetch((0, 0, 0)).rows
    att = attribute({"n": [reading_of(r) for r in rows]}, spans_from_rows(wrapper_rows(spans))[0],
                    idle_w={"n": 30.0}, node_cpus={"n": 2.0})
    want = dict(zip(att.tasks["task_id"], att.tasks["energy_j"]))
    assert {**{e.task_id: e.energy_j for e in b1.energies}, **got} == pytest.approx(want, rel=1e-9)
    assert smp.status()["tasks"] == pytest.approx(sum(want.values()), rel=1e-9)


def test_the_live_report_writes_the_one_record_shape_with_off_energy_and_real_components():
    rows = [row_of(_reading(100.0 + t, 100.0 * t, 20.0 * t), None) for t in range(0, 6)]
    nt = specpower_node_type("IbmX3250XeonX3470", name="eff", cpus=2, off_w=5.0)
    nodes = [report.NodeHistory("n", "eff", 2.0, rows, removed_at=105.0)]
    tasks = wrapper_rows([SpanRow("a", "n", 101.0, 103.0, 1.0, "g", "j", 1.0)])
    inp = report.ReportInputs("ray", {"eff": nt}, nodes, tasks, ControllerConfig().to_dict(), 100.0, 109.0)
    w = report._window(inp)
    att = report.attribution(inp, w.readings)
    recs, summary = report.records(inp, att, w, None, run_id="r1", policy="tao")
    node = next(p for k, p in recs if k == "energy" and p["scope"] == "node")
    assert node["off_j"] == pytest.approx(5.0 * 4.0) and node["energy_j"] == pytest.approx(600.0 + 20.0)
    assert node["components"]["cpu_package"] == pytest.approx(500.0) and node["components"]["gpu"] == pytest.approx(100.0)
    assert node["source"] == "measured-nvml+measured-rapl+modeled"
    task = next(p for k, p in recs if k == "energy" and p["scope"] == "task")
    assert task["source"] == node["source"] and task["components"]["gpu"] > 0
    group = next(p for k, p in recs if k == "energy" and p["scope"] == "group")
    assert group["energy_j"] == pytest.approx(task["energy_j"]) and group["uncertainty"] is not None
    rep = build_report_from_records([{"kind": k, "payload": p, "seq": i + 1, "time": 1.0} for i, (k, p) in enumerate(recs)])
    assert validate_report(rep) == []
    assert rep["energy"]["it_energy_j"] == pytest.approx(620.0) and rep["energy"]["task_energy_j"] == pytest.approx(
        task["energy_j"])


def test_the_cluster_power_reaches_the_closed_loop_only_once_every_node_that_is_on_reported():
    s, clock = _session(power_budget_w=400.0)
    s.observe("a", clock.t, 60.0, 0.1)
    s.observe("b", clock.t, 110.0, 0.1)
    assert s.stats()["budget"]["measured_power_w"] is None  # node c has not reported: no cluster figure
    s.observe("c", clock.t, 110.0, 0.1)
    assert s.stats()["budget"]["measured_power_w"] == pytest.approx(280.0)


def test_unit_counts_go_to_the_row_of_their_task_and_a_retry_to_its_last_attempt():
    from tao_core.live.report import task_units
    from tao_core.live.values import UnitCount

    counts = [UnitCount("a1", "n", "tokens", 5.0, 1.0), UnitCount("a1", "n", "tokens", 2.0, 1.1),
              UnitCount("b2", "n", "images", 1.0, 1.2), UnitCount("gone", "n", "tokens", 3.0, 1.3)]
    got, missing = task_units(["a1", "b2", "b2:1", "b2:2", "c3"], counts)
    assert got == {"a1": {"tokens": 7.0}, "b2:2": {"images": 1.0}}
    assert missing == {"gone"}


def test_a_sampler_hands_over_unit_counts_once():
    from tao_core.live.values import UnitCount

    smp = NodeSampler("n", Steps([100.0, 100.5]), cpus=2, idle_w=30.0, interval_s=1.0)
    smp.add_counts([UnitCount("t1", "n", "tokens", 4.0, 1.0)])
    b = smp.fetch()
    assert b.counts == [UnitCount("t1", "n", "tokens", 4.0, 1.0)] and b.first_count == 0
    assert smp.fetch((len(b.rows), 0, 0, 1)).counts == []
    assert smp.fetch((0, 0, 0)).first_count == 1  # three indexes: counts from the start, those fetched dropped


def test_a_restarted_sampler_keeps_spans_the_driver_has_not_fetched():
    """The driver's indexes belong to the old sampler: a fetch with them must not drop the
    new sampler's first spans as if fetched (the driver then reads it from the start)."""
    old = NodeSampler("n", Steps([100.0, 100.5, 101.0]), cpus=2, idle_w=30.0, interval_s=1.0)
    old.add_spans([SpanRow("a", "n", 100.0, 100.2, 0.1, "g", "j", 1.0), SpanRow("b", "n", 100.1, 100.3, 0.1, "g", "j", 1.0)])
    tl = NodeTimeline("n", 30.0)
    tl.take(old.fetch(tl.next, tl.incarnation))
    assert tl.next[1] == 2
    new = NodeSampler("n", Steps([102.0, 102.5, 103.0]), cpus=2, idle_w=30.0, interval_s=1.0)
    new.add_spans([SpanRow("c", "n", 102.0, 102.2, 0.1, "g", "j", 1.0), SpanRow("d", "n", 102.1, 102.3, 0.1, "g", "j", 1.0)])
    assert tl.take(new.fetch(tl.next, tl.incarnation)) is None  # another sampler: read it again from the start
    tl.take(new.fetch(tl.next, tl.incarnation))
    assert [s.task_id for s in tl.spans] == ["a", "b", "c", "d"]


def test_worker_telemetry_is_checked_against_the_last_sample_and_a_ceiling():
    tl = EnergySeries()
    tl.add(100.0, 50.0, 40.0)
    ok = parse({"v": 2, "t": 101.0, "energy_j": 90.0, "power_w": 40.0}, now_s=101.0, last=tl, ceiling_w=400.0)
    assert not isinstance(ok, str) and ok.energy_j == 90.0
    # 1 GJ in one second is 1 GW: far above four times a 113 W server's peak
    assert parse({"v": 2, "t": 101.0, "energy_j": 1e9, "power_w": 40.0}, now_s=101.0, last=tl,
                 ceiling_w=ceiling_w(113.0)) == "energy rose faster than the power ceiling"
    assert parse({"v": 2, "t": 101.0, "energy_j": 60.0, "power_w": 1e6}, now_s=101.0, last=tl,
                 ceiling_w=ceiling_w(113.0)) == "power_w"
    assert ceiling_w(113.0) == pytest.approx(452.0) and ceiling_w(None) == 100.0


def test_run_log_numbers_each_run_of_a_key_and_bounds_its_memory():
    log = RunLog(maxlen=2)
    assert log.task_id("k") == "k#1"
    a = log.record("k", "g", "w1", 0.0, 1.0, "memory")
    b = log.record("k", "g", "w1", 2.0, 3.0, "memory", job="j", units={"rows": 2.0})
    assert (a.task_id, b.task_id, b.job, b.units) == ("k#1", "k#2", "j", {"rows": 2.0})
    log.record("other", "g", "w2", 3.0, 4.0, "erred")
    assert log.dropped == 1 and [r.task_id for r in log.collect(0)] == ["k#2", "other#1"]
    assert [r.task_id for r in log.collect(2)] == ["other#1"]
    events = DecisionLog(maxlen=10)
    for e in range(3):
        events.append(e)
    events.drop_since(1)  # a decision that was not carried out takes its events back
    assert list(events.buffer) == [0] and events.total == 1


def test_parked_tasks_go_back_when_admission_stalls_or_the_engine_would_give_up():
    watch = ParkedWatch(watchdog_s=10.0)
    holds = {"a": Hold("a#1", since_s=0.0, reason="power budget"),
             "b": Hold("b#1", since_s=0.0, reason="cleaner hour", until_s=100.0),
             "c": Hold("c#1", since_s=0.0, reason="job budget", reject="spent")}
    watch.track_idle(0.0, [("w1", True), ("w2", False)])
    assert watch.due(holds, 5.0, running=False, give_up_s=None) == ([], None)  # not idle long enough
    due, stalled = watch.due(holds, 12.0, running=False, give_up_s=None)
    assert [k for k, _ in due] == ["a"] and stalled == "w1"  # b's timed deferral is waited out
    assert watch.due(holds, 12.0, running=True, give_up_s=None)[0] == []  # admitted work runs: no stall
    # half of a 30 s give-up time: every parked task but the rejected one goes back
    assert [k for k, _ in watch.due(holds, 15.0, running=True, give_up_s=30.0)[0]] == ["a", "b"]
    watch.track_idle(13.0, [("w2", True)])  # w1 left, w2 went idle
    assert watch.idle_since == {"w2": 13.0}
    line = ParkedWatch.warning(due, "w1", 12.0, engine="Dask", give_up="Dask's no-workers-timeout")
    assert "'a'" in line and "w1" in line and "power budget" in line
    with pytest.raises(ValueError, match="watchdog_s"):
        ParkedWatch(0.0)


def test_settled_energies_reach_the_controller_task_that_ended_there_first():
    from tao_core.control import Controller

    ctl = Controller([specpower_node_type("IbmX3250XeonX3470", cpus=4)])
    ctl.add_node("w1", "IbmX3250XeonX3470")
    book = EnergySettlement(max_waiting=1)
    ids = []
    for k in range(3):
        d = ctl.decide(TaskRequest(f"k#{k + 1}", "g", cpus=1.0, duration_hint_s=1.0), now_s=float(k))
        ctl.task_started(d.task_id, now_s=float(k))
        ctl.task_finished(d.task_id, now_s=k + 1.0, duration_s=1.0, energy_pending=True)
        ids.append(d.task_id)
    book.expect(ctl, "w1", "k", ids[0])
    book.expect(ctl, "w1", "k", ids[1])  # the same key run again on the same worker
    book.expect(ctl, "w2", "j", ids[2])
    # two waiting pairs exceed one: the oldest pair (both runs of k) was given up
    assert len(book) == 1 and not ctl.task_energy(ids[0], 1.0) and not ctl.task_energy(ids[1], 1.0)
    assert book.settle(ctl, "w1", [("k", "g", 5.0, 1.0), ("other", "h", 2.0, 1.0)]) == 0
    assert book.by_group_j == {"g": 5.0, "h": 2.0}  # settled joules count per group either way
    assert book.settle(ctl, "w2", [("j", "g", 3.0, 1.0)]) == 1 and len(book) == 0
    book.expect(ctl, "w3", "x", "never-ended")
    book.forget(ctl, "w3")  # the worker left: nothing waits for it
    assert len(book) == 0


def test_declared_workers_start_most_efficient_type_first():
    eff = specpower_node_type("IbmX3250XeonX3470", name="eff", cpus=4)
    a = NodeAssignment.build([eff], {"a": "HpProLiantMl110G3PentiumD930", "b": "eff", "c": "tdp:60",
                                     "d": "HpProLiantMl110G3PentiumD930"})
    # watts per CPU of work at full load: eff 113/4, tdp:60 60, the Pentium D server 169
    assert a.start_order(set()) == ["b", "c", "a", "d"]
    assert a.start_order({"b", "a"}) == ["c", "d"]
    assert NodeAssignment.build(None, None, "tdp:60").start_order(set()) == []

