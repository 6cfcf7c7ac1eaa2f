"""Moving deferrable work to cleaner hours without piling it onto one window.

:class:`CarbonShifter` keeps the runs it has planned (start, predicted end, CPUs). For a new
deferrable task with a deadline it walks the candidate starts from the cleanest one and
takes the first whose window, with the runs already planned there, stays within
``max_fill`` of the cluster's CPUs; the window must also be ``min_saving`` cleaner than
starting now. Tasks waiting for their planned start are not demand for scaling: booting
nodes for them hours early would burn the energy the shift saves.

Units: seconds, CPUs, gCO2e/kWh.
"""
from __future__ import annotations

from typing import Optional

from tao_core.carbon import CarbonSignal, ranked_starts


class CarbonShifter:
    """Plans start times of deferrable tasks against a carbon-intensity signal."""

    def __init__(self, signal: CarbonSignal, *, min_saving: float, max_fill: float = 0.8) -> None:
        self.signal = signal
        self.min_saving = min_saving
        self.max_fill = max_fill
        self._planned: dict[str, tuple[float, float, float]] = {}  # task id -> (start, end, cpus)

    def plan(self, task_id: str, *, now_s: float, latest_s: float, run_s: float, cpus: float,
             capacity_cpus: float) -> Optional[tuple[float, float, float]]:
        """(start, mean intensity there, intensity now) for ``task_id``, or None to run now.
        An already planned task keeps its start."""
        if task_id in self._planned:
            start = self._planned[task_id][0]
            if start > now_s:
                return start, self.signal.mean_intensity(start, start + run_s), self.signal.mean_intensity(now_s, now_s + run_s)
            return None
        if latest_s <= now_s:
            return None
        now_mean = self.signal.mean_intensity(now_s, now_s + run_s)
        starts, means = ranked_starts(self.signal, earliest_s=now_s, latest_s=latest_s, duration_s=run_s)
        limit = self.max_fill * capacity_cpus
        self._expire(now_s)
        for s, m in zip(starts.tolist(), means.tolist()):
            if m > now_mean * (1.0 - self.min_saving):
                return None  # the rest are dirtier still
            if s <= now_s:
                return None  # now is as clean as any start with room
            if self._load(s, s + run_s) + cpus <= limit:
                self._planned[task_id] = (s, s + run_s, cpus)
                return s, m, now_mean
        return None

    def planned(self, task_id: str) -> bool:
        """Whether a start was planned for ``task_id`` (its window is chosen)."""
        return task_id in self._planned

    def waiting(self, task_id: str, now_s: float) -> bool:
        """True while ``task_id`` waits for its planned start."""
        p = self._planned.get(task_id)
        return p is not None and p[0] > now_s

    def _load(self, a: float, b: float) -> float:
        """CPUs of planned runs overlapping [a, b] (an upper bound on the peak there)."""
        return sum(c for s, e, c in self._planned.values() if s < b and e > a)

    def _expire(self, now_s: float) -> None:
        done = [k for k, (_, e, _) in self._planned.items() if e < now_s]
        for k in done:
            del self._planned[k]
