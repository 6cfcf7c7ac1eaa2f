"""Forecasts of the work that will arrive, from the history of arrivals.

Arrivals (CPUs and GPUs asked) are counted in bins of ``bin_s`` seconds over the last
``history_s``. A forecast is a quantile of "CPUs (GPUs) that arrive within the next
``window_s``", taken from the past windows that resemble now. Four ways to choose them:

- ``all``: every past window (the arrival process has no memory);
- ``recent``: past windows that followed a window with about as many arrivals as the last
  ``window_s`` had (bursts persist; a quiet spell is followed by quiet): the preceding
  arrivals in the same power-of-two bucket as now's;
- ``hourly`` and ``daily``: past windows at the same phase of the hour or of the day
  (within one bin), once ``min_periods`` periods are in the history (a cron job, a
  working day).

Which one is used is decided by its track record: once per bin each one forecasts the
next ``eval_window_s`` at quantile ``eval_q``; when that window has passed the forecast is
scored by the pinball loss (the loss a quantile forecast minimises) against what arrived,
and the way with the lowest exponentially weighted loss wins (``recent`` before any score).
The choice is general: a memoryless trace picks ``all`` or ``recent``, a periodic one the
period, and a forecast that stops working loses its place.

Units: seconds, CPUs, GPUs (the engine's units).
"""
from __future__ import annotations

import math
from collections import deque
from typing import Optional

import numpy as np

METHODS = ("all", "recent", "hourly", "daily")
_PERIODS = {"hourly": 3600.0, "daily": 86400.0}
_MIN_SAMPLES = 5
#: at most this many past windows are read for one quantile (evenly spaced, newest kept)
_MAX_SAMPLES = 2048


class ArrivalForecast:
    """Arrival history and quantile forecasts of the arrivals in a coming window."""

    def __init__(self, *, bin_s: float = 60.0, history_s: float = 8 * 86400.0, min_periods: int = 3,
                 eval_window_s: float = 300.0, eval_q: float = 0.8, score_halflife_bins: float = 240.0,
                 min_scored: float = 20.0, periodic_margin: float = 0.2) -> None:
        if not (bin_s > 0 and history_s >= bin_s):
            raise ValueError("bin_s must be > 0 and history_s >= bin_s")
        self.bin_s = float(bin_s)
        self.n_bins = int(math.ceil(history_s / bin_s))
        self.min_periods = int(min_periods)
        self.eval_bins = max(1, int(round(eval_window_s / bin_s)))
        self.eval_q = float(eval_q)
        self.min_scored = float(min_scored)
        self.periodic_margin = float(periodic_margin)
        self._decay = 0.5 ** (1.0 / max(score_halflife_bins, 1e-9))
        self._c = np.zeros(self.n_bins)  # ring buffer of CPUs asked per bin
        self._g = np.zeros(self.n_bins)
        self._first: Optional[int] = None  #: absolute index of the oldest bin kept
        self._cur: Optional[int] = None    #: absolute index of the current (open) bin
        self._cache: dict[tuple, tuple[float, float]] = {}
        self._chrono: Optional[tuple[np.ndarray, np.ndarray, int]] = None  # cumsums of complete bins, first bin
        self.loss = {m: 0.0 for m in METHODS}
        self.scored = {m: 0.0 for m in METHODS}
        self._pending: deque[tuple[int, dict[str, float]]] = deque()  # (bin the window ends at, forecasts)
        self.tasks = 0
        self.cpus_asked = 0.0
        self.gpus_asked = 0.0

    # ------------------------------------------------------------------ history
    def _bin(self, t: float) -> int:
        return int(math.floor(t / self.bin_s + 1e-9))

    def note(self, now_s: float, cpus: float, gpus: float = 0.0) -> None:
        """One arrival asking ``cpus`` CPUs and ``gpus`` GPUs at ``now_s``."""
        b = self._bin(now_s)
        self._advance(b)
        if b < self._cur:  # a late report for a past bin still held: count it where it belongs
            if b < self._first:
                return
            self._chrono = None
        k = b % self.n_bins
        self._c[k] += cpus
        self._g[k] += gpus
        self.tasks += 1
        self.cpus_asked += cpus
        self.gpus_asked += gpus
        self._cache.clear()

    def _advance(self, b: int) -> None:
        """Open bin ``b`` (zeroing the bins skipped); score the forecasts whose window closed."""
        if self._cur is None:
            self._cur = self._first = b
            return
        if b <= self._cur:
            return
        gap = b - self._cur
        if gap >= self.n_bins:
            self._c[:] = 0.0
            self._g[:] = 0.0
        else:
            for j in range(self._cur + 1, b + 1):
                self._c[j % self.n_bins] = 0.0
                self._g[j % self.n_bins] = 0.0
        closed_to = b  # bins before b are complete now
        self._cur = b
        self._first = max(self._first, b - self.n_bins + 1)
        self._chrono = None
        self._cache.clear()
        self._score(closed_to)

    def _complete(self) -> tuple[np.ndarray, np.ndarray, int]:
        """Cumulative sums (CPUs, GPUs) over the complete bins, oldest first, with a leading
        0, and the absolute index of the first of them."""
        if self._chrono is None:
            first, cur = self._first, self._cur
            idx = np.arange(first, cur) % self.n_bins
            c = np.concatenate(([0.0], np.cumsum(self._c[idx])))
            g = np.concatenate(([0.0], np.cumsum(self._g[idx])))
            self._chrono = (c, g, first)
        return self._chrono

    # ------------------------------------------------------------------ forecasts
    def _samples(self, method: str, w: int, now_bin: int, c: np.ndarray, first: int,
                 recent_c: float) -> Optional[np.ndarray]:
        """Start positions (into the complete bins) of the past windows of ``w`` bins that
        ``method`` deems like now; None when it has too few."""
        n = c.size - 1  # complete bins
        last_start = n - w  # a window must be complete
        if last_start < 0:
            return None
        if method == "all":
            return _thin(np.arange(0, last_start + 1))
        if method == "recent":
            starts = np.arange(w, last_start + 1)
            if starts.size < _MIN_SAMPLES:
                return None
            before = c[starts] - c[starts - w]
            want = _bucket(recent_c)
            got = np.floor(np.log2(1.0 + np.maximum(before, 0.0)))
            sel = starts[got == want]
            if sel.size < _MIN_SAMPLES:
                sel = starts[np.abs(got - want) <= 1]
            return _thin(sel) if sel.size >= _MIN_SAMPLES else None
        period = int(round(_PERIODS[method] / self.bin_s))
        if period <= w or n < self.min_periods * period:
            return None
        rel_now = now_bin - first  # position of now in bin coordinates
        pos = []
        for k in range(1, n // period + 2):
            p0 = rel_now - k * period
            for p in (p0 - 1, p0, p0 + 1):
                if 0 <= p <= last_start:
                    pos.append(p)
        return np.asarray(pos) if len(pos) >= self.min_periods else None

    def _recent(self, w: int) -> float:
        """CPUs asked in the last ``w`` bins, the open one included."""
        cur = self._cur
        lo = max(self._first, cur - w + 1)
        idx = np.arange(lo, cur + 1) % self.n_bins
        return float(self._c[idx].sum())

    def method(self) -> str:
        """The way of choosing past windows with the best track record: of those scored on
        at least ``min_scored`` windows, the lowest mean loss; a periodic one must beat the
        best of ``all`` and ``recent`` by ``periodic_margin`` (a period is a stronger claim
        than persistence, and a few lucky windows must not make it)."""
        mean = {m: self.loss[m] / self.scored[m] for m in METHODS if self.scored[m] >= self.min_scored - 1e-9}
        base = [m for m in ("recent", "all") if m in mean]
        if not base:
            return "recent"
        best = min(base, key=mean.get)
        for m in ("hourly", "daily"):
            if m in mean and mean[m] < (1.0 - self.periodic_margin) * mean[best]:
                best = m
        return best

    def quantile(self, now_s: float, window_s: float, q: float, method: Optional[str] = None) -> tuple[float, float]:
        """The ``q`` quantile of (CPUs, GPUs) asked within ``[now_s, now_s + window_s]``
        (0 with no history)."""
        if self._cur is None:
            return 0.0, 0.0
        self._advance(self._bin(now_s))
        w = max(1, int(math.ceil(window_s / self.bin_s - 1e-9)))
        q = min(max(q, 0.0), 1.0)
        m = method or self.method()
        key = (w, round(q, 3), m, self._bin(now_s))
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        now_bin = self._bin(now_s)
        out = self._quantile(w, q, m, now_bin)
        if out is None and m != "all":
            out = self._quantile(w, q, "all", now_bin)
        out = out or (0.0, 0.0)
        self._cache[key] = out
        return out

    def remaining(self, now_s: float, window_s: float, q: float, method: Optional[str] = None) -> tuple[float, float]:
        """The ``q`` quantile of (CPUs, GPUs) still to arrive within ``window_s``, net of
        what already came: the quantile of the arrivals in ``[now, now + window]``, at most
        the quantile over ``[now - window, now + window]`` less the arrivals of
        ``[now - window, now]`` (at least 0). A burst that has begun is partly arrived
        already; only the rest is demand to come."""
        if self._cur is None:
            return 0.0, 0.0
        self._advance(self._bin(now_s))
        w = max(1, int(math.ceil(window_s / self.bin_s - 1e-9)))
        m = method or self.method()
        key = ("rest", w, round(q, 3), m, self._bin(now_s))
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        now_bin = self._bin(now_s)
        got = self._quantile(2 * w, q, m, now_bin - w) or self._quantile(2 * w, q, "all", now_bin - w) or (0.0, 0.0)
        cur = self._cur
        lo = max(self._first, cur - w + 1)
        idx = np.arange(lo, cur + 1) % self.n_bins
        seen_c, seen_g = float(self._c[idx].sum()), float(self._g[idx].sum())
        ahead = self.quantile(now_s, window_s, q, m)
        out = (min(ahead[0], max(0.0, got[0] - seen_c)), min(ahead[1], max(0.0, got[1] - seen_g)))
        self._cache[key] = out
        return out

    def _quantile(self, w: int, q: float, m: str, now_bin: int) -> Optional[tuple[float, float]]:
        c, g, first = self._complete()
        starts = self._samples(m, w, now_bin, c, first, self._recent(w))
        if starts is None or starts.size == 0:
            return None
        sc = c[starts + w] - c[starts]
        sg = g[starts + w] - g[starts]
        return float(np.quantile(sc, q)), float(np.quantile(sg, q))

    # ------------------------------------------------------------------ track record
    def _score(self, closed_to: int) -> None:
        """Score forecasts whose window ended by bin ``closed_to``; make the next one (one
        per ``eval_window_s``: the windows scored do not overlap)."""
        if self._pending and self._pending[-1][0] > closed_to:
            return  # the last forecast's window is still open
        c, _, first = self._complete()
        d = self._decay
        while self._pending and self._pending[0][0] <= closed_to:
            end, fc = self._pending.popleft()
            lo, hi = end - self.eval_bins - first, end - first
            if lo < 0 or hi >= c.size:
                continue
            actual = c[hi] - c[lo]
            for m, f in fc.items():
                e = actual - f
                loss = max(self.eval_q * e, (self.eval_q - 1.0) * e)
                self.loss[m] = self.loss[m] * d + loss
                self.scored[m] = self.scored[m] * d + 1.0
        fc = {}
        recent = self._recent(self.eval_bins)
        for m in METHODS:
            starts = self._samples(m, self.eval_bins, self._cur, c, first, recent)
            if starts is not None and starts.size:
                fc[m] = float(np.quantile(c[starts + self.eval_bins] - c[starts], self.eval_q))
        if fc:
            self._pending.append((self._cur + self.eval_bins, fc))

    @property
    def mean_cpus(self) -> float:
        """Mean CPUs asked per arrival (1.0 before any)."""
        return self.cpus_asked / self.tasks if self.tasks else 1.0


def _thin(starts: np.ndarray) -> np.ndarray:
    """At most :data:`_MAX_SAMPLES` of ``starts``, evenly spaced, the newest kept."""
    if starts.size <= _MAX_SAMPLES:
        return starts
    step = int(math.ceil(starts.size / _MAX_SAMPLES))
    return starts[::-1][::step][::-1]


def _bucket(x: float) -> float:
    return math.floor(math.log2(1.0 + max(x, 0.0)))
