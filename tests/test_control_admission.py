"""The admission queue the simulator uses and the adapters can use: order, re-asking
times, no oversubscription, closing on DEFER, and a real controller behind it."""
from __future__ import annotations

from typing import Callable, Optional

import pytest

from control_fixtures import TYPES
from tao_core.control import Action, Controller, ControllerConfig, Decision, NodeState, TaskRequest
from tao_core.control.admission import AdmissionQueue


class Script:
    """A policy whose answer for each task is set by the test; records what it was asked."""

    def __init__(self) -> None:
        self.answer: dict[str, Callable[[float], Decision]] = {}
        self.asked: list[str] = []

    def decide(self, req: TaskRequest, *, now_s: float) -> Decision:
        self.asked.append(req.task_id)
        f = self.answer.get(req.task_id)
        return f(now_s) if f else Decision(req.task_id, Action.PLACE, node_id="n")

    def defer(self, tid: str, until: Optional[float] = None, node: Optional[str] = None) -> None:
        self.answer[tid] = lambda now: Decision(tid, Action.DEFER, node_id=node, defer_until_s=until)

    def place(self, tid: str) -> None:
        self.answer.pop(tid, None)


def req(tid: str, cpus: float = 1.0, gpus: float = 0.0, deadline: Optional[float] = None) -> TaskRequest:
    return TaskRequest(tid, "g", cpus=cpus, gpus=gpus, deadline_s=deadline)


def done(log: list):
    def carry_out(r: TaskRequest, d: Decision, item) -> bool:
        log.append((r.task_id, d.action, item))
        return True
    return carry_out


def test_fifo_order_priority_order_and_pending():
    pol = Script()
    q = AdmissionQueue(pol.decide)
    for t in ("a", "b", "c"):
        q.push(req(t), item=t.upper())
    assert [r.task_id for r in q.pending()] == ["a", "b", "c"] and len(q) == 3 and "b" in q
    out: list = []
    assert q.offer(0.0, done(out)) == 3
    assert out == [("a", Action.PLACE, "A"), ("b", Action.PLACE, "B"), ("c", Action.PLACE, "C")] and len(q) == 0
    pq = AdmissionQueue(pol.decide)
    for t, prio in (("x", (2, 0)), ("y", (0, 5)), ("z", (1, 1)), ("w", (0, 5))):
        pq.push(req(t), priority=prio)
    assert [r.task_id for r in pq.pending()] == ["y", "w", "z", "x"]  # equal priority: push order
    with pytest.raises(ValueError, match="already queued"):
        pq.push(req("x"), priority=(0,))


def test_deferred_task_is_asked_again_at_its_time_or_on_reopen():
    pol = Script()
    q = AdmissionQueue(pol.decide)
    pol.defer("a", until=10.0, node="booting-node")  # waits for a node: closes nothing
    q.push(req("a"))
    q.push(req("b"))
    out: list = []
    q.offer(0.0, done(out))
    assert pol.asked == ["a", "b"] and [o[0] for o in out] == ["b"] and q.next_retry_s() == 10.0
    pol.asked.clear()
    q.offer(5.0, done(out))
    assert pol.asked == []  # not its time, nothing reopened
    q.reopen()  # capacity changed: asked again before its time
    q.offer(6.0, done(out))
    assert pol.asked == ["a"] and q.next_retry_s() == 10.0
    pol.asked.clear()
    pol.place("a")
    q.offer(10.0, done(out))  # its time
    assert pol.asked == ["a"] and len(q) == 0 and q.next_retry_s() is None


def test_defer_without_time_waits_for_reopen():
    pol = Script()
    q = AdmissionQueue(pol.decide)
    pol.defer("a")
    q.push(req("a"))
    q.offer(0.0, done([]))
    pol.asked.clear()
    q.offer(1e9, done([]))
    assert pol.asked == [] and q.next_retry_s() is None
    q.reopen()
    q.offer(2e9, done([]))
    assert pol.asked == ["a"]


def test_capacity_defer_closes_larger_tasks_until_reopen_or_its_time():
    pol = Script()
    q = AdmissionQueue(pol.decide)
    pol.defer("mid", until=50.0)  # no room or headroom: names no node
    for tid, c, g in (("mid", 2.0, 0.0), ("big", 4.0, 0.0), ("gpu", 2.0, 1.0), ("small", 1.0, 0.0)):
        q.push(req(tid, c, g))
    out: list = []
    q.offer(0.0, done(out))
    assert pol.asked == ["mid", "small"]  # big and gpu ask at least as much: closed; small backfills
    pol.asked.clear()
    q.push(req("big2", 3.0))
    q.offer(1.0, done(out), new_only=True)  # still closed: nothing changed
    assert pol.asked == []
    q.reopen()
    q.offer(2.0, done(out))
    # reopened: mid is asked first, defers and closes again; the larger ones wait once more
    assert pol.asked == ["mid"]
    pol.asked.clear()
    pol.place("mid")
    q.offer(50.0, done(out))  # its time: the closure ends with it
    assert pol.asked == ["mid", "big", "gpu", "big2"] and len(q) == 0


def test_defer_of_a_task_with_a_deadline_closes_nothing_and_it_skips_the_room_check():
    pol = Script()
    room = {"ok": False}
    q = AdmissionQueue(pol.decide, room=lambda c, g: room["ok"])
    pol.defer("later", until=3600.0)
    q.push(req("later", 2.0, deadline=7200.0))
    q.push(req("now", 2.0))
    q.offer(0.0, done([]))
    assert pol.asked == ["later"]  # "now" has no room: not offered (no oversubscription)
    room["ok"] = True
    q.reopen()
    q.offer(1.0, done([]))
    assert pol.asked == ["later", "later", "now"]  # the deadline task's DEFER closed nothing


def test_place_the_caller_cannot_carry_out_stays_and_closes():
    pol = Script()
    q = AdmissionQueue(pol.decide)
    for t, c in (("a", 2.0), ("b", 2.0), ("c", 1.0)):
        q.push(req(t, c), item=t)
    got: list = []

    def refuse_a(r, d, item):
        got.append(item)
        return item != "a"

    assert q.offer(0.0, refuse_a) == 1
    assert got == ["a", "c"] and [r.task_id for r in q.pending()] == ["a", "b"]
    assert q.discard("b") and not q.discard("b") and [r.task_id for r in q.pending()] == ["a"]


def test_queue_over_a_real_controller_drains_as_capacity_frees():
    ctl = Controller(TYPES, ControllerConfig(lambda_j_per_s=0.0))
    ctl.add_node("s", "small")  # 8 CPUs
    q = AdmissionQueue(ctl.decide, room=ctl.has_room)
    placed: list = []

    def carry_out(r, d, item):
        assert d.action == Action.PLACE and d.node_id == "s"
        ctl.task_started(r.task_id, now_s=now)
        placed.append(r.task_id)
        return True

    now = 0.0
    for k in range(6):
        q.push(TaskRequest(f"t{k}", "g", cpus=3.0, duration_hint_s=10.0))
    q.offer(now, carry_out)
    assert placed == ["t0", "t1"] and len(q) == 4  # 8 CPUs hold two 3-CPU tasks
    assert q.offers == 2  # no room is left for a third: it is not even asked
    assert all(r.task_id not in placed for r in q.pending())
    for k in range(2, 6, 2):
        now += 10.0
        for t in placed[-2:]:
            ctl.task_finished(t, now_s=now)
        q.reopen()
        q.offer(now, carry_out)
    assert placed == [f"t{k}" for k in range(6)] and len(q) == 0
    assert ctl.running == 2 and ctl.reserved("s")[0] == 6.0


def test_queue_is_oversubscription_free_under_a_power_budget():
    big = TYPES[0]
    # room for CPUs, but watts for about two 1-CPU tasks above idle
    budget = (big.idle_w + 2.5 * (big.power_w(1 / 32) - big.idle_w)) / 0.98
    ctl = Controller(TYPES, ControllerConfig(power_budget_w=budget, lambda_j_per_s=0.0))
    ctl.add_node("b", "big")
    q = AdmissionQueue(ctl.decide, room=ctl.has_room)
    for k in range(5):
        q.push(TaskRequest(f"t{k}", "g", cpus=1.0, duration_hint_s=10.0))
    n = q.offer(0.0, lambda r, d, i: d.action == Action.PLACE)
    assert 1 <= n <= 2 and ctl.predicted_power_w() < budget
    assert q.offers == n + 1  # one DEFER for headroom closed the queue to the others
    assert ctl.node_state("b") == NodeState.ON
