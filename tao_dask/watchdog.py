"""The watchdog: parked tasks never wait for good.

A task TAO parked (the controller deferred it for an energy reason) goes back to Dask's
placement, with a warning naming it and the controller's last reason, when it has
waited ``watchdog_s`` while nothing the controller admitted is running and a worker has
stood idle that long: TAO's admission has stalled, and a stall is TAO's failure, so it
fails open. A deferral the controller timed (``defer_until_s``, a cleaner hour ahead) is
waited out first. Whatever the reason, a parked task is handed back before half of
Dask's own ``no-workers-timeout`` has passed, so Dask never fails a task TAO held.

Tasks TAO pins never need the watchdog: their restriction is soft, so Dask places them
elsewhere when their worker goes, and work stealing may move them.

Units: seconds (wall clock, ``time.time()``).
"""
from __future__ import annotations

import logging
import time
from typing import Any, Optional

from tao_dask.placement import Placement
from tao_dask.state import Hold

logger = logging.getLogger("tao_dask")


class Watchdog:
    """Checks the parked tasks of ``placement`` once per tick."""

    def __init__(self, placement: Placement, watchdog_s: float) -> None:
        if not watchdog_s > 0:
            raise ValueError("watchdog_s: must be a positive number of seconds")
        self.p = placement
        self.watchdog_s = float(watchdog_s)
        self.idle_since: dict[str, float] = {}  # worker -> since when it runs nothing

    def tick(self) -> None:
        if not self.p.holds:
            self.idle_since.clear()
            return
        now = time.time()
        self._track_idle(now)
        due, stalled = self.due(now)
        if due:
            self._warn(due, stalled, now)
            self.p.counts["watchdog"] += self.p.hand_back([k for k, _ in due], "watchdog")

    def _track_idle(self, now: float) -> None:
        from distributed.core import Status

        workers = self.p.s.workers
        idle = self.idle_since
        for addr, ws in workers.items():
            if ws.status == Status.running and not ws.processing:
                idle.setdefault(addr, now)
            else:
                idle.pop(addr, None)
        for addr in [a for a in idle if a not in workers]:
            del idle[addr]

    def limits_s(self) -> tuple[float, Optional[float]]:
        """(the wait of a stalled parked task, the most any parked task waits: half of
        Dask's no-workers-timeout, None without one), seconds."""
        nwt = getattr(self.p.s, "no_workers_timeout", None)
        limit = None if not nwt else 0.5 * float(nwt)
        return (self.watchdog_s if limit is None else min(self.watchdog_s, limit)), limit

    def due(self, now: float) -> tuple[list[tuple[Any, Hold]], Optional[str]]:
        """Parked tasks to hand back now, and the idle worker that shows the stall (None
        when only the no-workers-timeout calls for it)."""
        bound, limit = self.limits_s()
        idle = [a for a, t in self.idle_since.items() if now - t >= bound]
        stalled = idle[0] if idle and not self.p.running() else None
        out = []
        for key, h in self.p.holds.items():
            if h.reject is not None:
                continue
            waited = now - h.since_s
            if limit is not None and waited >= limit:
                out.append((key, h))
            elif stalled and waited >= bound and (h.until_s is None or now >= h.until_s):
                out.append((key, h))
        return out, stalled

    @staticmethod
    def _warn(due: list[tuple[Any, Hold]], stalled: Optional[str], now: float) -> None:
        names = ", ".join(repr(k) for k, _ in due[:5]) + (f" and {len(due) - 5} more" if len(due) > 5 else "")
        h0 = due[0][1]
        why = (f"worker {stalled} stood idle and nothing TAO admitted was running" if stalled
               else "Dask's no-workers-timeout drew near")
        logger.warning("TAO: watchdog: task %s waited %.1f s parked (controller: %s) while %s; "
                       "Dask places %s now", names, now - h0.since_s, h0.reason, why,
                       "it" if len(due) == 1 else "them")
