"""The watchdog: Dask's side of :class:`tao_core.live.parked.ParkedWatch`.

Once per tick it tells the watch which workers run nothing (running status, no task
processing), asks which parked tasks are due back (the give-up time is Dask's
``no-workers-timeout``) and hands those to Dask's placement with one warning.

Tasks TAO pins never need the watchdog: their restriction is soft, so Dask places them
elsewhere when their worker goes, and work stealing may move them.

Units: seconds (wall clock, ``time.time()``).
"""
from __future__ import annotations

import logging
import time

from tao_core.live.parked import ParkedWatch
from tao_dask.placement import Placement

logger = logging.getLogger("tao_dask")


class Watchdog:
    """Checks the parked tasks of ``placement`` once per tick."""

    def __init__(self, placement: Placement, watchdog_s: float) -> None:
        self.p = placement
        self.watch = ParkedWatch(watchdog_s)

    def tick(self) -> None:
        from distributed.core import Status

        if not self.p.holds:
            self.watch.idle_since.clear()
            return
        now = time.time()
        self.watch.track_idle(now, ((a, ws.status == Status.running and not ws.processing)
                                    for a, ws in self.p.s.workers.items()))
        due, stalled = self.watch.due(self.p.holds, now, running=self.p.running(),
                                      give_up_s=getattr(self.p.s, "no_workers_timeout", None))
        if due:
            logger.warning(ParkedWatch.warning(due, stalled, now, engine="Dask",
                                               give_up="Dask's no-workers-timeout"))
            self.p.counts["watchdog"] += self.p.hand_back([k for k, _ in due], "watchdog")
