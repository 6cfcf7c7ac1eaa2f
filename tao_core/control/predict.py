"""Task predictions learned online per task group: run time and an energy correction on
each node type.

Run time (seconds) on node type ``k``:

1. the task's own ``duration_hint_s`` (run time at speed 1.0) divided by the speed of
   ``k``, when given;
2. else the group's reference run time (measured run time x speed of the node type it ran
   on, a geometric mean over every type) divided by the speed of ``k``, times a per-type
   correction;
3. else ``default_duration_s`` divided by the speed.

One reference time shared by every type is the best guess for a type few of the group's
tasks ran on: run times of one group vary from task to task (a lognormal spread of 50 %
is common), so a handful of runs on one type says little about that type. A type's own
correction (the geometric mean of measured / predicted there) counts in proportion to its
evidence: ``c_k ** (n_k / (n_k + evidence))``, ``n_k`` runs measured there. Types of equal
speed then get equal predictions until one of them has proved different.

Run times are averaged in log space (a geometric mean, the median of a lognormal spread):
in a group whose runs span seconds to days, an arithmetic mean is set by the few longest
runs and jumps with each one, and would make every task of the group look days long. The
means are running means of every measurement until ``1 / alpha`` of them were seen, then
exponentially weighted with weight ``alpha`` (a drift is followed; early ones are not
noisier than later ones).

Energy: the controller predicts a task's attributed energy from the node power model
(marginal watts x run time plus its share of idle watts). When a measurement comes back,
the ratio measured / predicted is learned per group, and per (group, type) as a
correction shrunk the same way. The correction multiplies the model's prediction.

Memory is bounded: at most ``max_groups`` groups are kept, least recently used first out.
Predictions are handed out as per-type numpy arrays, cached per group until the group
learns something new.
"""
from __future__ import annotations

import math
from collections import OrderedDict, deque
from typing import Optional, Sequence

import numpy as np


#: finished tasks whose run times :meth:`TaskPredictor.held_s` averages over
RECENT_RUNS = 256


class _Mean:
    """A running mean that turns into an EWMA of weight ``alpha`` after ``1/alpha`` samples."""

    __slots__ = ("value", "n")

    def __init__(self) -> None:
        self.value = 0.0
        self.n = 0

    def add(self, x: float, alpha: float) -> None:
        self.n += 1
        w = max(alpha, 1.0 / self.n)
        self.value += w * (x - self.value)


class _Group:
    __slots__ = ("ref", "ref_max", "type_dur", "ratio", "type_ratio", "n", "cache", "ratio_arr")

    def __init__(self, k: int) -> None:
        self.ref = _Mean()                                   #: log of the run time at speed 1.0
        self.ref_max = 0.0                                   #: longest run time seen at speed 1.0, s
        self.type_dur = [_Mean() for _ in range(k)]          #: log of measured / predicted run time per type
        self.ratio = _Mean()                                 #: measured / predicted energy, every type
        self.type_ratio = [_Mean() for _ in range(k)]        #: measured / group-predicted energy per type
        self.n = 0
        self.cache: Optional[tuple[np.ndarray, np.ndarray]] = None
        self.ratio_arr: Optional[np.ndarray] = None


def _shrunk(m: _Mean, evidence: float) -> float:
    """A per-type correction counted in proportion to its evidence (1.0 with none)."""
    if m.n == 0:
        return 1.0
    return 1.0 + (m.value - 1.0) * m.n / (m.n + evidence)


def _shrunk_log(m: _Mean, evidence: float) -> float:
    """A per-type run-time factor from a mean of log ratios, shrunk towards 1 by evidence."""
    if m.n == 0:
        return 1.0
    return math.exp(m.value * m.n / (m.n + evidence))


_MIN_S = 1e-3  # run times are floored at a millisecond before their log is taken


class TaskPredictor:
    """Online per-group predictions of run time (s) and energy correction (ratio), per node type.

    ``evidence``: runs on one type at which that type's own correction counts half."""

    def __init__(self, speeds: Sequence[float], *, default_duration_s: float = 10.0,
                 alpha: float = 0.3, max_groups: int = 10_000, evidence: float = 10.0) -> None:
        self._speeds = [float(x) for x in speeds]
        self.speeds = np.asarray(self._speeds, dtype=float)
        self.k = len(self._speeds)
        self.default_duration_s = float(default_duration_s)
        self.alpha = float(alpha)
        self.max_groups = int(max_groups)
        self.evidence = float(evidence)
        self._groups: "OrderedDict[str, _Group]" = OrderedDict()
        self._cold_cache: dict[Optional[float], tuple[np.ndarray, np.ndarray]] = {}
        self._all = _Mean()  #: run time at speed 1.0 over every group, s
        self._recent: deque[float] = deque(maxlen=RECENT_RUNS)  #: latest run times at speed 1.0, s
        self._recent_arr: Optional[np.ndarray] = None

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
            g.type_dur.append(_Mean())
            g.type_ratio.append(_Mean())
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
        ref = math.exp(g.ref.value) if g.ref.n else self.default_duration_s
        ev = self.evidence
        durs = np.array([max(ref / sp * _shrunk_log(td, ev), 1e-9) for sp, td in zip(self._speeds, g.type_dur)])
        if g.ratio.n:
            rr = g.ratio.value
            g.ratio_arr = np.array([max(rr * _shrunk(tr, ev), 1e-6) for tr in g.type_ratio])
            g.cache = (durs, durs * g.ratio_arr)
        else:
            g.ratio_arr = None
            g.cache = (durs, durs)
        return g.cache

    def overall_mean_s(self) -> float:
        """Mean run time at speed 1.0 over every finished task (``default_duration_s`` before
        any), s."""
        return self._all.value if self._all.n else self.default_duration_s

    def held_s(self, horizon_s: float) -> float:
        """Mean of ``min(run time, horizon_s)`` over the latest :data:`RECENT_RUNS` finished
        tasks at speed 1.0 (s): how long, on average, a task arriving now holds its CPUs
        within the next ``horizon_s`` (all of it before any task finished: nothing says yet
        that tasks free their CPUs sooner)."""
        h = max(float(horizon_s), 0.0)
        if not self._recent:
            return h
        if self._recent_arr is None:
            self._recent_arr = np.fromiter(self._recent, float, len(self._recent))
        return float(np.minimum(self._recent_arr, h).mean())

    def mean_s(self, group: str) -> Optional[float]:
        """The group's reference run time at speed 1.0 (s; a geometric mean), None before any
        run finished."""
        g = self._groups.get(group)
        return math.exp(g.ref.value) if g is not None and g.ref.n else None

    def longest_s(self, group: str, min_seen: int = 3) -> Optional[float]:
        """The longest run time seen for ``group`` at speed 1.0 (s), once at least
        ``min_seen`` of its tasks finished; else None (too little is known to promise a
        deadline)."""
        g = self._groups.get(group)
        if g is None or g.n < min_seen or g.ref_max <= 0:
            return None
        return g.ref_max

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
            sp = self._speeds[k]
            ref = duration_s * sp
            lr = math.log(max(ref, _MIN_S))
            if g.ref.n:
                g.type_dur[k].add(lr - g.ref.value, a)  # log of measured / shared prediction on this type
            g.ref.add(lr, a)
            self._all.add(ref, min(a, 0.05))
            self._recent.append(ref)
            self._recent_arr = None
            g.ref_max = max(g.ref_max, ref)
            g.n += 1  # a task counts once, with its run time (its energy may come later)
        if energy_ratio is not None and math.isfinite(energy_ratio) and energy_ratio >= 0:
            r = min(energy_ratio, 100.0)
            if g.ratio.n and g.ratio.value > 0:
                g.type_ratio[k].add(r / g.ratio.value, a)
            g.ratio.add(r, a)
        self._build(g)
