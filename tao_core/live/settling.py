"""Settled task energy, matched to the controller's tasks.

A live adapter ends a task with ``Controller.task_finished(energy_pending=True)``: its
energy is known only once the worker's sampler has settled the attribution of its
timeline. The worker then sends (task key, group, J, run s) per task run; this book hands
each to the controller's task of that key that ended on that worker first
(``Controller.task_energy``) and sums the settled joules per task group (the live
per-unit metrics). Energies of a worker that left never come: its waiting tasks are given
up (``task_energy(..., None)``), as are the oldest when more than ``max_waiting`` wait.

Units: joules, seconds.
"""
from __future__ import annotations

from collections import Counter, OrderedDict
from typing import Any, Iterable, Optional

#: (worker, key) pairs waiting for their settled energy at once
MAX_WAITING = 100_000


class EnergySettlement:
    """Controller tasks waiting for their settled energy, by (worker, task key)."""

    def __init__(self, max_waiting: int = MAX_WAITING) -> None:
        self.max_waiting = int(max_waiting)
        self.waiting: "OrderedDict[tuple[str, str], list[str]]" = OrderedDict()
        self.by_group_j: Counter = Counter()  #: settled task energy per group so far, J

    def __len__(self) -> int:
        return len(self.waiting)

    def expect(self, ctl: Any, worker: str, key: str, task_id: str) -> None:
        """Controller task ``task_id`` (task ``key``) ended on ``worker``; its energy will come."""
        self.waiting.setdefault((worker, key), []).append(task_id)
        while len(self.waiting) > self.max_waiting:
            _, ids = self.waiting.popitem(last=False)
            for tid in ids:
                ctl.task_energy(tid, None)

    def settle(self, ctl: Optional[Any], worker: str, energies: Iterable[tuple[str, str, float, float]]) -> int:
        """Settled energies from ``worker`` [(key, group, J, run s)]; how many reached a
        controller task (tasks TAO did not place only add to their group's joules)."""
        fed = 0
        for key, group, energy_j, _run_s in energies:
            self.by_group_j[group] += energy_j
            ids = self.waiting.get((worker, key))
            if not ids:
                continue
            tid = ids.pop(0)
            if not ids:
                del self.waiting[(worker, key)]
            if ctl is not None and ctl.task_energy(tid, energy_j):
                fed += 1
        return fed

    def forget(self, ctl: Optional[Any], worker: str) -> None:
        """``worker`` left: the energies it had not settled will not come."""
        for wk in [wk for wk in self.waiting if wk[0] == worker]:
            for tid in self.waiting.pop(wk):
                if ctl is not None:
                    ctl.task_energy(tid, None)
