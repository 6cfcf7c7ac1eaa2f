"""One admission queue for the simulator and the engine adapters: the tasks waiting for a
PLACE, offered to the controller (or any policy with its ``decide``) again in order.

The queue decides when to ask; the policy decides what happens; the caller carries the
decisions out (``carry_out``) and says when capacity may have changed (:meth:`reopen`).

Rules:

- **Order.** By ``priority`` (lower first: Dask's task priority), then by push order
  (first in, first out). Give a priority to every task or to none.
- **Re-asking times.** A deferred task is offered again once its DEFER's
  ``defer_until_s`` has passed, or after :meth:`reopen` (a task ended, a node came on,
  power headroom returned), whichever comes first; a DEFER without a time waits for
  :meth:`reopen`. :meth:`next_retry_s` is the earliest such time, for the caller's timer.
- **No oversubscription.** A task is offered only while some node that is on has room for
  it (``room(cpus, gpus)``; the controller's :meth:`~tao_core.control.Controller.has_room`
  or the engine's own truth): otherwise a PLACE is impossible and asking would only defer
  it again. A task with a deadline is offered anyway: the controller may plan it for later.
- **Closing on DEFER.** A DEFER for want of capacity or power headroom (it names no node,
  the task has no deadline) closes the queue to every task asking at least as many CPUs
  and GPUs, until :meth:`reopen` or that DEFER's time; smaller tasks may still go
  (backfill). A DEFER that waits for a node the penalty chose (off or booting: the
  decision names it) closes nothing, nor does the deferral of a task with a deadline:
  both are that task's own. A PLACE the caller could not carry out closes like a DEFER.
- **Leaving.** PLACE and REJECT leave the queue once ``carry_out`` returns True.

Times in seconds on the caller's clock (``now_s``), as the controller's.
"""
from __future__ import annotations

import bisect
import heapq
import itertools
import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

from tao_core.control.types import Action, Decision, TaskRequest

_EPS = 1e-9
_INF = math.inf

#: ``carry_out(request, decision, item) -> bool``: do what a PLACE or REJECT says; True
#: when done (the task leaves the queue), False to keep it waiting
CarryOut = Callable[[TaskRequest, Decision, Any], bool]


@dataclass(slots=True)
class _Entry:
    request: TaskRequest
    item: Any              #: the caller's handle (a simulator index, a Dask key, a Ray call)
    key: tuple             #: (priority, push order) or (push order,)
    not_before: float = -_INF  #: not offered before this time unless reopened
    epoch: int = -1        #: queue epoch of its last DEFER (-1: never deferred)


class AdmissionQueue:
    """Tasks waiting for a PLACE (see the module docstring for the rules).

    ``decide``: the policy's ``decide(request, now_s=...) -> Decision``. ``room``: whether
    a task of ``(cpus, gpus)`` could be placed now (default: always). ``max_closed``: most
    closed shapes remembered at once (the oldest are forgotten first)."""

    def __init__(self, decide: Callable[..., Decision], *, room: Optional[Callable[[float, float], bool]] = None,
                 max_closed: int = 32) -> None:
        self.decide = decide
        self.room = room
        self.max_closed = max_closed
        self._entries: dict[str, _Entry] = {}
        self._keys: list[tuple] = []   # sorted keys of the order list (with removed ones)
        self._ids: list[str] = []      # task ids in order, parallel to _keys
        self._new: list[str] = []      # pushed since the last offer
        self._retry: list[tuple[float, str]] = []  # heap of (not_before, task id), stale entries skipped
        self._closed: list[tuple[float, float, float]] = []  # (cpus, gpus, until)
        self._epoch = 0
        self._reopened = False
        self._seq = itertools.count()
        self._pending: Optional[list[TaskRequest]] = None
        self.offers = 0     #: decisions asked for so far
        self.deferrals = 0  #: of which DEFER

    # ------------------------------------------------------------------ contents
    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._entries

    def pending(self) -> list[TaskRequest]:
        """The waiting requests in order (for ``plan_scaling(pending=...)``); do not modify."""
        if self._pending is None:
            ents = self._entries
            self._pending = [ents[t].request for t in self._ids if t in ents]
        return self._pending

    def push(self, request: TaskRequest, *, item: Any = None, priority: Any = None) -> None:
        """Queue ``request`` (``item``: the caller's handle, given back to ``carry_out``)."""
        tid = request.task_id
        if tid in self._entries:
            raise ValueError(f"task {tid!r} is already queued")
        seq = next(self._seq)
        key = (seq,) if priority is None else (priority, seq)
        self._entries[tid] = _Entry(request, item, key)
        if not self._keys or key >= self._keys[-1]:
            self._keys.append(key)
            self._ids.append(tid)
        else:
            pos = bisect.bisect_right(self._keys, key)
            self._keys.insert(pos, key)
            self._ids.insert(pos, tid)
        self._new.append(tid)
        self._pending = None

    def discard(self, task_id: str) -> bool:
        """Forget a waiting task (cancelled, or gone with its engine); True if it was queued."""
        if self._entries.pop(task_id, None) is None:
            return False
        self._pending = None
        self._compact()
        return True

    def reopen(self) -> None:
        """Capacity or power headroom may have changed: every waiting task may be asked
        again at the next :meth:`offer`, and closed shapes open."""
        self._epoch += 1
        self._reopened = True
        self._closed.clear()

    def next_retry_s(self) -> Optional[float]:
        """The earliest time a deferred task asks to be offered again (None: none asks)."""
        h = self._retry
        ents = self._entries
        while h:
            t, tid = h[0]
            e = ents.get(tid)
            if e is None or e.not_before != t:
                heapq.heappop(h)
                continue
            return t
        return None

    # ------------------------------------------------------------------ offering
    def offer(self, now_s: float, carry_out: CarryOut, *, new_only: bool = False) -> int:
        """Offer the waiting tasks that may be asked now, in order; returns how many left
        the queue. ``new_only``: only those pushed since the last offer (a task just became
        ready and nothing else changed)."""
        full = not new_only and (self._reopened or self._due(now_s))
        if full:
            self._reopened = False
            candidates = list(self._ids)
        else:
            ents = self._entries
            candidates = sorted((t for t in self._new if t in ents), key=lambda t: ents[t].key)
        self._new = []
        if not candidates:
            return 0
        return _Pass(self, now_s, carry_out).run(candidates)

    def _due(self, now_s: float) -> bool:
        t = self.next_retry_s()
        return t is not None and t <= now_s + _EPS

    def _deferred(self, e: _Entry, d: Decision, now_s: float) -> None:
        """Record a DEFER of ``e``: when it may be asked again, and what it closes."""
        until = d.defer_until_s
        e.epoch = self._epoch
        e.not_before = until if until is not None and until > now_s else _INF
        if e.not_before < _INF:
            heapq.heappush(self._retry, (e.not_before, e.request.task_id))
        if d.node_id is None and e.request.deadline_s is None:
            self._close(e.request, e.not_before)

    def _close(self, req: TaskRequest, until: float) -> None:
        self._closed.append((float(req.cpus), float(req.gpus), until))
        if len(self._closed) > self.max_closed:
            self._closed.pop(0)

    def _left(self, task_id: str) -> None:
        self._entries.pop(task_id, None)
        self._pending = None

    def _compact(self) -> None:
        if len(self._ids) > 2 * len(self._entries) + 64:
            ents = self._entries
            keep = [(k, t) for k, t in zip(self._keys, self._ids) if t in ents]
            self._keys = [k for k, _ in keep]
            self._ids = [t for _, t in keep]


class _Pass:
    """One offer over some waiting tasks (see :meth:`AdmissionQueue.offer`)."""

    def __init__(self, q: AdmissionQueue, now_s: float, carry_out: CarryOut) -> None:
        self.q = q
        self.now_s = now_s
        self.carry_out = carry_out
        q._closed = [c for c in q._closed if c[2] > now_s + _EPS]
        self.room: dict[tuple[float, float], bool] = {}

    def _blocked(self, e: _Entry) -> bool:
        """Not to be asked now: deferred and not due, no room for it, or a closed shape."""
        q = self.q
        if e.epoch == q._epoch:
            if e.not_before > self.now_s + _EPS:
                return True
            e.epoch, e.not_before = -1, -_INF  # its time came: it may be asked from now on
        req = e.request
        if req.deadline_s is not None:
            return False  # asked anyway: the policy may plan it for later
        c, g = float(req.cpus), float(req.gpus)
        if q.room is not None:
            ok = self.room.get((c, g))
            if ok is None:
                ok = self.room[(c, g)] = bool(q.room(c, g))
            if not ok:
                return True
        for fc, fg, _ in q._closed:
            if c >= fc - _EPS and g >= fg - _EPS:
                return True
        return False

    def run(self, candidates: list[str]) -> int:
        q = self.q
        ents = q._entries
        left = 0
        for tid in candidates:
            e = ents.get(tid)
            if e is None or self._blocked(e):
                continue
            q.offers += 1
            d = q.decide(e.request, now_s=self.now_s)
            if d.action is Action.DEFER or d.action == "defer":
                q.deferrals += 1
                q._deferred(e, d, self.now_s)
            elif self.carry_out(e.request, d, e.item):
                q._left(tid)
                left += 1
                if self.room:  # room only shrinks within a pass
                    self.room = {k: v for k, v in self.room.items() if not v}
            else:
                e.epoch = q._epoch
                e.not_before = _INF
                if e.request.deadline_s is None:
                    q._close(e.request, _INF)
        q._compact()
        return left
