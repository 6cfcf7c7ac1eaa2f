"""The driver side of a live session: the grants it holds, the tasks waiting for one, and
the batches it exchanges with the :class:`~tao_core.live.session.ControllerSession`.

- open admission (no power budget): a grant is a *slot* the driver reuses for every task of
  its group, in round robin over the group's slots; when all are busy the task still goes
  to a slot's node (the engine queues it there) and the driver asks for one more slot in
  the next sync, waiting one round trip for it (once per burst). A slot idle for
  ``linger_s`` is handed back, or at once when another group waits for slots; it is
  ended with its tasks' mean run time and mean attributed energy (the settled energies of
  its tasks, waited for up to ``energy_wait_s`` more), from which the controller learns the
  energy; each task's run time goes with the next sync as it ends (``SyncBatch.runs``), so
  run-time predictions (the spare capacity's mean hold, :mod:`tao_core.control.scaling`)
  learn each run once, while a slot stays busy.
- strict admission (a power budget): a task starts only on a grant made for it; it waits
  here (``waiting``) and is sent to the session once; its end reports its run time (its
  energy settles later: the prediction stands).
- actors and bundles: one grant each, held until ``alive()`` says the thing is gone.

Thread safe: the engine's submitting threads, its completion callbacks and the sync thread
share it. Times are the pool's clock (wall-clock seconds).
"""
from __future__ import annotations

import itertools
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional

from tao_core.control.types import TaskRequest
from tao_core.live.sampler import SPAN_LAG_S
from tao_core.live.session import Ended, SlotWant, SyncBatch, SyncReply
from tao_core.live.values import Grant
from tao_core.live.values import TaskEnergy

#: most engine task ids kept waiting for their settled energy
MAX_TRACKED = 100_000
#: how long an idle slot waits for its tasks' energy to settle (s): a span reaches its
#: sampler within ``SPAN_LAG_S``; as long again covers the sampling and the collection
ENERGY_WAIT_S = 2 * SPAN_LAG_S


@dataclass
class Slot:
    """Use of one open-admission grant (seconds, joules)."""

    grant: Grant
    idle_since: float
    inflight: int = 0
    tasks: int = 0
    busy_s: float = 0.0
    started: bool = False
    settled: int = 0
    settled_j: float = 0.0
    settled_s: float = 0.0
    reported: int = 0  #: tasks whose run time went with a sync (``SyncBatch.runs``)

    def ended(self) -> Ended:
        """Mean run time and energy of the tasks whose energy settled, else the mean time
        seen; ``run_learned`` when every task's run time was reported as it ended."""
        learned = self.reported >= self.tasks
        if self.settled:
            return Ended(self.grant.gid, self.settled_s / self.settled, self.settled_j / self.settled, learned)
        return Ended(self.grant.gid, self.busy_s / self.tasks if self.tasks else None, None, learned)


@dataclass(frozen=True)
class Waiting:
    """A strictly admitted task waiting for its grant; ``call``: the engine's handle."""

    request: TaskRequest
    call: Any


@dataclass(frozen=True)
class Held:
    grant: Grant
    since: float
    alive: Callable[[], bool]


@dataclass
class _Want:
    cpus: float
    gpus: float
    job: Optional[str]
    n: int = 0


class GrantPool:
    """See the module doc. ``wake()`` asks for a sync soon."""

    def __init__(self, *, linger_s: float = 0.5, energy_wait_s: float = ENERGY_WAIT_S, wake: Callable[[], None] = lambda: None,
                 clock: Callable[[], float] = time.time) -> None:
        self.linger_s = linger_s
        self.energy_wait_s = energy_wait_s
        self.wake = wake
        self.clock = clock
        self.lock = threading.RLock()
        self._granted = threading.Condition(self.lock)
        self.slots: dict[str, Slot] = {}
        self._by_group: dict[str, list[str]] = {}
        self._rr: dict[str, itertools.count] = {}
        self.strict: dict[str, tuple[Grant, float]] = {}  # running strict grants -> start
        self.held: list[Held] = []
        self.waiting: "OrderedDict[str, Waiting]" = OrderedDict()
        self._unsent: list[TaskRequest] = []
        self._want: dict[str, _Want] = {}
        self._asked: list[str] = []
        self._denied: dict[str, float] = {}  # group -> when the session last gave no slot
        self._of_task: "OrderedDict[str, str]" = OrderedDict()  # engine task id -> slot id
        self._started: list[str] = []
        self._ended: list[Ended] = []
        self._runs: list[tuple[str, float]] = []  # (slot id, run time s) of tasks ended on slots
        self._cancel: list[str] = []
        self.syncs = 0
        self.released = 0  #: actor and bundle reservations handed back

    # ------------------------------------------------------------------ open admission
    def take_slot(self, group: str, cpus: float, gpus: float, job: Optional[str], *, wait_s: float,
                  available: Callable[[], bool] = lambda: True) -> Optional[Slot]:
        """A slot of ``group`` for one task, counted in flight; when all are busy, ask for one
        more and wait up to ``wait_s`` (two syncs) for it, unless the session just said no.
        None: the group has no slot."""
        with self.lock:
            s = self._pick(group)
            if (s is None or s.inflight) and self.clock() - self._denied.get(group, -1e18) > self.linger_s:
                w = self._want.setdefault(group, _Want(cpus, gpus, job))
                w.n = min(w.n + 1, 64)
                self.wake()
                seq, end = self.syncs, self.clock() + wait_s
                while self.clock() < end and available() and self.syncs < seq + 2:
                    s = self._pick(group)
                    if s is not None and s.inflight == 0:
                        break
                    self._granted.wait(timeout=max(end - self.clock(), 0.001))
                s = self._pick(group)
            if s is None:
                return None
            s.inflight += 1
            s.tasks += 1
            if not s.started:
                s.started = True
                self._started.append(s.grant.gid)
            return s

    def _pick(self, group: str) -> Optional[Slot]:
        """The group's next free slot in round robin, else its least busy one."""
        ids = self._by_group.get(group)
        if not ids:
            return None
        k, n, best = next(self._rr.setdefault(group, itertools.count())), len(ids), None
        for i in range(n):
            s = self.slots[ids[(k + i) % n]]
            if s.inflight == 0:
                return s
            if best is None or s.inflight < best.inflight:
                best = s
        return best

    def ran(self, slot: Slot, task_id: str) -> None:
        """The engine's id of a task run on ``slot`` (its settled energy comes back by it)."""
        with self.lock:
            self._of_task[task_id] = slot.grant.gid
            if len(self._of_task) > MAX_TRACKED:
                self._of_task.popitem(last=False)

    def slot_done(self, slot: Slot, t0: float) -> None:
        now = self.clock()
        with self.lock:
            slot.inflight = max(slot.inflight - 1, 0)
            slot.busy_s += now - t0
            if len(self._runs) < MAX_TRACKED:
                self._runs.append((slot.grant.gid, now - t0))
                slot.reported += 1
            if slot.inflight == 0:
                slot.idle_since = now

    def settled(self, energies: Iterable[TaskEnergy]) -> None:
        """Settled energies of tasks (from the samplers); those of slots count toward them."""
        with self.lock:
            for e in energies:
                s = self.slots.get(self._of_task.pop(e.task_id, ""))
                if s is not None:
                    s.settled += 1
                    s.settled_j += e.energy_j
                    s.settled_s += e.run_s

    # ------------------------------------------------------------------ strict admission
    def wait(self, request: TaskRequest, call: Any) -> None:
        with self.lock:
            self.waiting[request.task_id] = Waiting(request, call)
            self._unsent.append(request)
        self.wake()

    def strict_done(self, tid: str) -> None:
        with self.lock:
            g = self.strict.pop(tid, None)
            if g is not None:
                self._ended.append(Ended(tid, self.clock() - g[1]))
        self.wake()

    # ------------------------------------------------------------------ actors, bundles
    def hold(self, grant: Grant, alive: Callable[[], bool]) -> None:
        with self.lock:
            self.held.append(Held(grant, self.clock(), alive))

    def check_held(self) -> None:
        """Hand back the reservations whose actor or group is gone (an error: kept)."""
        with self.lock:
            held = list(self.held)
        gone = [h for h in held if not _alive(h)]
        if gone:
            now = self.clock()
            with self.lock:
                self.held = [h for h in self.held if h not in gone]
                self._ended.extend(Ended(h.grant.gid, now - h.since) for h in gone)
                self.released += len(gone)
            self.wake()

    def hand_back(self, grants: Iterable[Grant]) -> None:
        """Cancel grants never used."""
        with self.lock:
            self._cancel.extend(g.gid for g in grants)
        self.wake()

    # ------------------------------------------------------------------ sync
    def busy(self) -> bool:
        """Anything to tell the session or to wait for."""
        with self.lock:
            return bool(self.waiting or self._ended or self._started or self._cancel)

    def batch(self) -> SyncBatch:
        """What to send now (each item once)."""
        with self.lock:
            self._hand_back_idle()
            b = SyncBatch(self._started, self._ended, self._cancel, self._unsent,
                          [SlotWant(g, w.cpus, w.gpus, w.job, w.n) for g, w in self._want.items() if w.n > 0],
                          self._runs)
            self._asked = [w.group for w in b.slots]
            self._want = {}
            self._started, self._ended, self._cancel, self._unsent, self._runs = [], [], [], [], []
            return b

    def _hand_back_idle(self) -> None:
        now = self.clock()
        asking = set(self._want)
        for group, ids in self._by_group.items():
            linger = 0.0 if asking - {group} else self.linger_s
            keep = []
            for gid in ids:
                s = self.slots[gid]
                idle = now - s.idle_since if s.inflight == 0 and group not in asking else -1.0
                if idle >= linger and (linger == 0.0 or s.settled >= s.tasks or idle >= linger + self.energy_wait_s):
                    del self.slots[gid]
                    if s.tasks:
                        self._ended.append(s.ended())
                    else:
                        self._cancel.append(gid)
                else:
                    keep.append(gid)
            self._by_group[group] = keep

    def apply(self, reply: SyncReply) -> list[tuple[Waiting, Optional[Grant]]]:
        """Take the reply's slots; the waiting tasks to run now with their grants (None:
        rejected, to run unmanaged)."""
        now = self.clock()
        run = []
        with self.lock:
            got = {g.group for g in reply.slots}
            self._denied.update((g, now) for g in self._asked if g not in got)
            for g in reply.slots:
                self._denied.pop(g.group, None)
                self.slots[g.gid] = Slot(g, idle_since=now)
                self._by_group.setdefault(g.group, []).append(g.gid)
            for tid, g in reply.admitted:
                w = self.waiting.pop(tid, None)
                if w is None:  # no longer waiting (run unmanaged meanwhile)
                    if g is not None:
                        self._cancel.append(tid)
                    continue
                if g is not None:
                    self.strict[tid] = (g, now)
                    self._started.append(tid)
                run.append((w, g))
            self.syncs += 1
            self._granted.notify_all()
        return run

    def clear(self, keep_waiting: bool) -> list[Waiting]:
        """Forget every grant (the session is gone or new). ``keep_waiting``: the waiting
        tasks are sent again (a new session), else they are returned (to run unmanaged)."""
        with self.lock:
            out = [] if keep_waiting else list(self.waiting.values())
            if not keep_waiting:
                self.waiting.clear()
            self._unsent = [w.request for w in self.waiting.values()]
            for d in (self.slots, self._by_group, self.strict, self._want, self._of_task):
                d.clear()
            self.held = []
            self._started, self._ended, self._cancel = [], [], []
            self._granted.notify_all()
        return out


def _alive(h: Held) -> bool:
    try:
        return bool(h.alive())
    except Exception:  # noqa: BLE001 - unknown: keep the reservation
        return True

