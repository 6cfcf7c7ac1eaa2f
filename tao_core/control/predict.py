"""Task predictions learned online per task group: run time and an energy correction on
each node type.

Run time (seconds) on node type ``k``:

1. the EWMA of run times measured for (group, k), if any;
2. else the EWMA of the group's reference run time (measured run time x speed of the
   node type it ran on) divided by the speed of ``k``;
3. else the task's ``duration_hint_s`` (run time at speed 1.0) divided by the speed;
4. else ``default_duration_s`` divided by the speed.

Energy: the controller predicts a task's dynamic energy from the node power model
(marginal watts x run time). When an attributed measurement comes back, the ratio
measured / predicted is learned (EWMA) per (group, k), falling back to the group's ratio
over all types, then 1.0. The correction multiplies the model's prediction.

Memory is bounded: at most ``max_groups`` groups are kept, least recently used first out.
Predictions are handed out as per-type numpy arrays, cached per group until the group
learns something new.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Optional, Sequence

import numpy as np


class _Group:
    __slots__ = ("dur", "dur_seen", "ref_dur", "ratio", "ratio_seen", "ref_ratio", "n", "cache")

    def __init__(self, k: int) -> None:
        self.dur = np.zeros(k)
        self.dur_seen = np.zeros(k, dtype=bool)
        self.ref_dur: Optional[float] = None
        self.ratio = np.ones(k)
        self.ratio_seen = np.zeros(k, dtype=bool)
        self.ref_ratio: Optional[float] = None
        self.n = 0
        self.cache: Optional[tuple[np.ndarray, np.ndarray]] = None


class TaskPredictor:
    """Online per-group predictions of run time (s) and energy correction (ratio), per node type."""

    def __init__(self, speeds: Sequence[float], *, default_duration_s: float = 10.0,
                 alpha: float = 0.3, max_groups: int = 10_000) -> None:
        self.speeds = np.asarray(speeds, dtype=float)
        self.k = len(self.speeds)
        self.default_duration_s = float(default_duration_s)
        self.alpha = float(alpha)
        self.max_groups = int(max_groups)
        self._groups: "OrderedDict[str, _Group]" = OrderedDict()
        self._cold_cache: dict[Optional[float], tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self._groups)

    def _cold(self, hint: Optional[float]) -> tuple[np.ndarray, np.ndarray]:
        c = self._cold_cache.get(hint)
        if c is None:
            ref = self.default_duration_s if hint is None else float(hint)
            dur = np.maximum(ref / self.speeds, 1e-9)
            c = (dur, dur.copy())
            if len(self._cold_cache) > 4096:
                self._cold_cache.clear()
            self._cold_cache[hint] = c
        return c

    def correction(self, group: str) -> np.ndarray:
        """Learned measured/predicted energy ratio per node type (1.0 where nothing learned)."""
        dur, edur = self.predict(group)
        return edur / dur

    def predict(self, group: str, duration_hint_s: Optional[float] = None) -> tuple[np.ndarray, np.ndarray]:
        """``(run time per node type in s, run time x energy correction per node type in
        s)``; the arrays must not be modified by the caller."""
        g = self._groups.get(group)
        if g is None:
            return self._cold(duration_hint_s if duration_hint_s is None or duration_hint_s > 0 else None)
        if g.cache is not None:
            return g.cache
        if g.ref_dur is not None:
            base = g.ref_dur / self.speeds
        else:
            hint = duration_hint_s if duration_hint_s is not None and duration_hint_s > 0 else self.default_duration_s
            base = hint / self.speeds
        dur = np.maximum(np.where(g.dur_seen, g.dur, base), 1e-9)
        ratio = np.maximum(np.where(g.ratio_seen, g.ratio, 1.0 if g.ref_ratio is None else g.ref_ratio), 1e-6)
        g.cache = (dur, dur * ratio)
        return g.cache

    def observe(self, group: str, type_index: int, *, duration_s: Optional[float] = None,
                energy_ratio: Optional[float] = None) -> None:
        """Learn from one finished task: its run time (s) on node type ``type_index`` and
        the ratio measured / predicted dynamic energy."""
        g = self._groups.get(group)
        if g is None:
            g = _Group(self.k)
            self._groups[group] = g
            while len(self._groups) > self.max_groups:
                self._groups.popitem(last=False)
        else:
            self._groups.move_to_end(group)
        a = self.alpha
        if duration_s is not None and np.isfinite(duration_s) and duration_s >= 0:
            k = type_index
            g.dur[k] = duration_s if not g.dur_seen[k] else (1 - a) * g.dur[k] + a * duration_s
            g.dur_seen[k] = True
            ref = duration_s * self.speeds[k]
            g.ref_dur = ref if g.ref_dur is None else (1 - a) * g.ref_dur + a * ref
        if energy_ratio is not None and np.isfinite(energy_ratio) and energy_ratio >= 0:
            r = min(energy_ratio, 100.0)
            k = type_index
            g.ratio[k] = r if not g.ratio_seen[k] else (1 - a) * g.ratio[k] + a * r
            g.ratio_seen[k] = True
            g.ref_ratio = r if g.ref_ratio is None else (1 - a) * g.ref_ratio + a * r
        g.n += 1
        g.cache = None
