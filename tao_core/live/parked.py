"""Parked tasks never wait for good: when a task the controller deferred goes back to the
engine's own placement.

A task parked for an energy reason (the controller deferred it while there was room) is
handed back when it has waited ``watchdog_s`` while nothing the controller admitted runs and
a worker has stood idle that long: admission has stalled, and a stall is TAO's failure, so it
fails open. A deferral the controller timed (``defer_until_s``, a cleaner hour ahead) is
waited out first. Whatever the reason, a parked task is handed back before half of the
engine's own give-up time (Dask's ``no-workers-timeout``) has passed, so the engine never
fails a task TAO held. Rejected tasks are not handed back: they fail.

Units: seconds (wall clock).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional


@dataclass(slots=True)
class Hold:
    """A task TAO parked (the controller deferred it for an energy reason)."""

    task_id: str
    since_s: float
    reason: str
    until_s: Optional[float] = None  #: the controller asked to be asked again then
    reject: Optional[str] = None  #: rejected: fail it with this reason


class ParkedWatch:
    """Which parked tasks are due back, from how long each worker has stood idle."""

    def __init__(self, watchdog_s: float) -> None:
        if not watchdog_s > 0:
            raise ValueError("watchdog_s: must be a positive number of seconds")
        self.watchdog_s = float(watchdog_s)
        self.idle_since: dict[str, float] = {}  # worker -> since when it runs nothing

    def track_idle(self, now_s: float, workers: Iterable[tuple[str, bool]]) -> None:
        """The workers there are now, each with whether it runs nothing; others are forgotten."""
        seen = set()
        for wid, idle in workers:
            seen.add(wid)
            if idle:
                self.idle_since.setdefault(wid, now_s)
            else:
                self.idle_since.pop(wid, None)
        for wid in [w for w in self.idle_since if w not in seen]:
            del self.idle_since[wid]

    def limits_s(self, give_up_s: Optional[float]) -> tuple[float, Optional[float]]:
        """(the wait of a stalled parked task, the most any parked task waits: half of the
        engine's ``give_up_s``, None without one), seconds."""
        limit = None if not give_up_s else 0.5 * float(give_up_s)
        return (self.watchdog_s if limit is None else min(self.watchdog_s, limit)), limit

    def due(self, holds: Mapping[Any, Hold], now_s: float, *, running: bool,
            give_up_s: Optional[float]) -> tuple[list[tuple[Any, Hold]], Optional[str]]:
        """Parked tasks to hand back now, and the idle worker that shows the stall (None
        when only the give-up time calls for it). ``running``: a task the controller
        admitted holds a thread now."""
        bound, limit = self.limits_s(give_up_s)
        idle = [w for w, t in self.idle_since.items() if now_s - t >= bound]
        stalled = idle[0] if idle and not running else None
        out = []
        for key, h in holds.items():
            if h.reject is not None:
                continue
            waited = now_s - h.since_s
            if limit is not None and waited >= limit:
                out.append((key, h))
            elif stalled and waited >= bound and (h.until_s is None or now_s >= h.until_s):
                out.append((key, h))
        return out, stalled

    @staticmethod
    def warning(due: list[tuple[Any, Hold]], stalled: Optional[str], now_s: float, *, engine: str,
                give_up: str) -> str:
        """One line that names the tasks handed back and why (``engine``: who places them
        now; ``give_up``: the name of its give-up time)."""
        names = ", ".join(repr(k) for k, _ in due[:5]) + (f" and {len(due) - 5} more" if len(due) > 5 else "")
        h0 = due[0][1]
        why = (f"worker {stalled} stood idle and nothing TAO admitted was running" if stalled
               else f"{give_up} drew near")
        return (f"TAO: watchdog: task {names} waited {now_s - h0.since_s:.1f} s parked (controller: {h0.reason}) "
                f"while {why}; {engine} places {'it' if len(due) == 1 else 'them'} now")
