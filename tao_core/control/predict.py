"""Task predictions learned online per task group: run time and an energy correction on
each node type.

Run time (seconds) on node type ``k``:

1. the task's own ``duration_hint_s`` (run time at speed 1.0) divided by the speed of
   ``k``, when given;
2. else the EWMA of run times measured for (group, k), if any;
3. else the EWMA of the group's reference run time (measured run time x speed of the
   node type it ran on) divided by the speed of ``k``;
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

import math
from collections import OrderedDict
from typing import Optional, Sequence

import numpy as np


class _Group:
    __slots__ = ("dur", "dur_seen", "ref_dur", "ref_dur_max", "ratio", "ratio_seen", "ref_ratio", "n", "cache",
                 "ratio_arr")

    def __init__(self, k: int) -> None:
        self.dur = [0.0] * k
        self.dur_seen = [False] * k
        self.ref_dur: Optional[float] = None
        self.ref_dur_max = 0.0  #: longest run time seen, at speed 1.0, s
        self.ratio = [1.0] * k
        self.ratio_seen = [False] * k
        self.ref_ratio: Optional[float] = None
        self.n = 0
        self.cache: Optional[tuple[np.ndarray, np.ndarray]] = None
        self.ratio_arr: Optional[np.ndarray] = None


class TaskPredictor:
    """Online per-group predictions of run time (s) and energy correction (ratio), per node type."""

    def __init__(self, speeds: Sequence[float], *, default_duration_s: float = 10.0,
                 alpha: float = 0.3, max_groups: int = 10_000) -> None:
        self.speeds = np.asarray(speeds, dtype=float)
        self._speeds = [float(x) for x in self.speeds]
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

    def add_type(self, speed: float) -> None:
        """A node type was added: extend every group's per-type figures."""
        self._speeds.append(float(speed))
        self.speeds = np.asarray(self._speeds, dtype=float)
        self.k = len(self._speeds)
        self._cold_cache.clear()
        for g in self._groups.values():
            g.dur.append(0.0)
            g.dur_seen.append(False)
            g.ratio.append(1.0)
            g.ratio_seen.append(False)
            if g.ratio_arr is not None:
                rr = g.ref_ratio if g.ref_ratio is not None else 1.0
                g.ratio_arr = np.append(g.ratio_arr, max(rr, 1e-6))
            self._build(g)

    def correction(self, group: str) -> np.ndarray:
        """Learned measured/predicted energy ratio per node type (1.0 where nothing learned)."""
        dur, edur = self.predict(group)
        return edur / dur

    def predict(self, group: str, duration_hint_s: Optional[float] = None) -> tuple[np.ndarray, np.ndarray]:
        """``(run time per node type in s, run time x energy correction per node type in
        s)``; the arrays must not be modified by the caller. A task's own
        ``duration_hint_s`` wins over the group's learned run times."""
        g = self._groups.get(group)
        if duration_hint_s is not None and 0 < duration_hint_s < math.inf:  # an unusable hint is no hint
            dur = self._cold(duration_hint_s)[0]
            if g is None or g.ratio_arr is None:
                return dur, dur
            return dur, dur * g.ratio_arr
        if g is None:
            return self._cold(None)
        if g.cache is not None:
            return g.cache
        return self._build(g)

    def _build(self, g: _Group) -> tuple[np.ndarray, np.ndarray]:
        ref = g.ref_dur if g.ref_dur is not None else self.default_duration_s
        rr = 1.0 if g.ref_ratio is None else g.ref_ratio
        durs = []
        edurs = []
        for k, sp in enumerate(self._speeds):
            d = g.dur[k] if g.dur_seen[k] else ref / sp
            if d < 1e-9:
                d = 1e-9
            r = g.ratio[k] if g.ratio_seen[k] else rr
            if r < 1e-6:
                r = 1e-6
            durs.append(d)
            edurs.append(d * r)
        g.cache = (np.array(durs), np.array(edurs))
        return g.cache

    def longest_s(self, group: str, min_seen: int = 3) -> Optional[float]:
        """The longest run time seen for ``group`` at speed 1.0 (s), once at least
        ``min_seen`` of its tasks finished; else None (too little is known to promise a
        deadline)."""
        g = self._groups.get(group)
        if g is None or g.n < min_seen or g.ref_dur_max <= 0:
            return None
        return g.ref_dur_max

    def observe(self, group: str, type_index: int, *, duration_s: Optional[float] = None,
                energy_ratio: Optional[float] = None) -> None:
        """Learn from one finished task: its run time (s) on node type ``type_index`` and
        the ratio measured / predicted energy."""
        g = self._groups.get(group)
        if g is None:
            g = _Group(self.k)
            self._groups[group] = g
            while len(self._groups) > self.max_groups:
                self._groups.popitem(last=False)
        else:
            self._groups.move_to_end(group)
        a = self.alpha
        k = type_index
        if duration_s is not None and math.isfinite(duration_s) and duration_s >= 0:
            g.dur[k] = duration_s if not g.dur_seen[k] else (1 - a) * g.dur[k] + a * duration_s
            g.dur_seen[k] = True
            ref = duration_s * self._speeds[k]
            g.ref_dur = ref if g.ref_dur is None else (1 - a) * g.ref_dur + a * ref
            g.ref_dur_max = max(g.ref_dur_max, ref)
            g.n += 1
        if energy_ratio is not None and math.isfinite(energy_ratio) and energy_ratio >= 0:
            r = min(energy_ratio, 100.0)
            g.ratio[k] = r if not g.ratio_seen[k] else (1 - a) * g.ratio[k] + a * r
            g.ratio_seen[k] = True
            g.ref_ratio = r if g.ref_ratio is None else (1 - a) * g.ref_ratio + a * r
        if g.ratio_seen[k] or g.ref_ratio is not None:
            rr = g.ref_ratio
            g.ratio_arr = np.array([max(g.ratio[j] if g.ratio_seen[j] else rr, 1e-6) for j in range(self.k)])
        self._build(g)
