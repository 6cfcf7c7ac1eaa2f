"""Carbon-intensity signals and the choice of the cleanest start time.

A signal gives grid carbon intensity in grams of CO2-equivalent per kilowatt-hour
(gCO2e/kWh) against time in seconds on the caller's clock (the simulator's time, or
``time.time()`` for live use). A time series is a step function: each value holds from
its time until the next one; before the first point the first value holds, after the
last the last value.

Three kinds: :class:`ConstantCarbon`, :class:`SeriesCarbon` (from a CSV of measurements or
of a forecast), and :class:`ProviderCarbon`, which asks a :class:`CarbonProvider` (a live
service client the user supplies) for a fresh forecast every ``refresh_s`` seconds.

CSV format: a header, then one row per point, columns ``t_s`` (seconds) or ``timestamp``
(ISO 8601; converted to seconds after the first row's time) and ``g_co2e_per_kwh``.
Limits: at most :data:`MAX_POINTS` points (a year at one a minute is 525,600) in a file of
at most 64 MiB; intensities from 0 to :data:`MAX_INTENSITY` gCO2e/kWh; times within
:data:`MAX_ABS_TIME_S` seconds of 0 (or of the first timestamp).
"""
from __future__ import annotations

import abc
import math
from datetime import datetime
from pathlib import Path
from typing import Callable, Optional, Protocol, Sequence

import numpy as np

from tao_core.errors import InputError
from tao_core.files import read_csv
from tao_core.files.values import number

J_PER_KWH = 3.6e6
#: points of a carbon series read from a file
MAX_POINTS = 1_000_000
#: bytes of a carbon CSV file
MAX_CSV_BYTES = 64 * 1024 * 1024
#: highest intensity accepted, gCO2e/kWh (coal plants emit about 1,000)
MAX_INTENSITY = 1e5
#: times accepted, seconds either side of 0 (about 317 years)
MAX_ABS_TIME_S = 1e10


class CarbonSignal(abc.ABC):
    """Grid carbon intensity over time."""

    #: where the figures come from, for reports ("constant", "csv:FILE", a provider's name)
    source: str = ""

    @abc.abstractmethod
    def series(self, t0_s: float, t1_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Step-function breakpoints covering [t0_s, t1_s]: times (first == t0_s) and the
        intensity in gCO2e/kWh holding from each time to the next."""

    def intensity(self, t_s: float) -> float:
        """gCO2e/kWh at time ``t_s``."""
        return float(self.series(t_s, t_s)[1][0])

    def mean_intensity(self, t0_s: float, t1_s: float) -> float:
        """Time-averaged gCO2e/kWh over [t0_s, t1_s] (the value at t0_s if the interval is empty)."""
        if t1_s <= t0_s:
            return self.intensity(t0_s)
        times, vals = self.series(t0_s, t1_s)
        edges = np.append(times, t1_s)
        return float(np.sum(vals * np.diff(edges)) / (t1_s - t0_s))

    def emissions_g(self, energy_j: float, t0_s: float, t1_s: float) -> float:
        """Grams CO2e of ``energy_j`` joules drawn evenly over [t0_s, t1_s]."""
        return energy_j / J_PER_KWH * self.mean_intensity(t0_s, t1_s)


class ConstantCarbon(CarbonSignal):
    """The same intensity at all times."""

    def __init__(self, g_co2e_per_kwh: float, *, where: str = "carbon intensity") -> None:
        self.value = number(g_co2e_per_kwh, where, lo=0.0, hi=MAX_INTENSITY,
                            fix=f"give gCO2e/kWh from 0 to {MAX_INTENSITY:g}")
        self.source = f"constant {self.value:g} gCO2e/kWh"

    def series(self, t0_s: float, t1_s: float) -> tuple[np.ndarray, np.ndarray]:
        return np.array([t0_s]), np.array([self.value])


class SeriesCarbon(CarbonSignal):
    """A step-function time series of intensity (measured or forecast)."""

    def __init__(self, times_s: Sequence[float], g_co2e_per_kwh: Sequence[float], *, source: str = "series") -> None:
        t = np.asarray(times_s, dtype=float)
        v = np.asarray(g_co2e_per_kwh, dtype=float)
        if t.ndim != 1 or t.size == 0 or t.size != v.size:
            raise InputError("carbon series: give one intensity per time, at least one point")
        if np.any(~np.isfinite(t)) or np.any(np.abs(t) > MAX_ABS_TIME_S):
            raise InputError(f"carbon series: times must be finite seconds within {MAX_ABS_TIME_S:g} of 0")
        if np.any(np.diff(t) <= 0):
            raise InputError("carbon series: times must strictly increase")
        if np.any(~np.isfinite(v)) or np.any(v < 0) or np.any(v > MAX_INTENSITY):
            raise InputError(f"carbon series: intensities must be from 0 to {MAX_INTENSITY:g} gCO2e/kWh")
        self.times_s, self.values = t, v
        self.source = source

    @classmethod
    def from_csv(cls, path: str | Path, *, field: str = "carbon CSV") -> "SeriesCarbon":
        """Read ``t_s`` or ``timestamp`` and ``g_co2e_per_kwh`` columns (see the module doc);
        ``field`` names the file in errors (``--carbon``)."""
        path = Path(path)
        where = f"{field} {path}"
        cols, rows = read_csv(path, field, max_bytes=MAX_CSV_BYTES, max_rows=MAX_POINTS, what="point")
        if "g_co2e_per_kwh" not in cols or not ({"t_s", "timestamp"} & set(cols)):
            raise InputError(f"{where}: header must have g_co2e_per_kwh and t_s (seconds) or timestamp (ISO 8601); "
                             f"got {','.join(c[:40] for c in cols[:10])}")
        i_v = cols.index("g_co2e_per_kwh")
        i_t = cols.index("t_s") if "t_s" in cols else None
        i_ts = cols.index("timestamp") if i_t is None else None
        times: list[float] = []
        vals: list[float] = []
        t_first: Optional[datetime] = None
        for line, row in rows:
            w = f"{where}: row {line}"
            if i_t is not None:
                t = number(row[i_t], f"{w}: t_s", lo=-MAX_ABS_TIME_S, hi=MAX_ABS_TIME_S)
            else:
                raw = row[i_ts].strip()
                try:
                    ts = datetime.fromisoformat(raw)
                    t_first = t_first or ts
                    t = (ts - t_first).total_seconds()
                except (TypeError, ValueError, OverflowError):
                    raise InputError(f"{w}: timestamp: {raw[:40]!r} is not an ISO 8601 time like the first row's "
                                     "(e.g. 2024-01-01T00:00:00+00:00); fix the row") from None
            times.append(t)
            vals.append(number(row[i_v], f"{w}: g_co2e_per_kwh", lo=0.0, hi=MAX_INTENSITY))
        try:
            return cls(times, vals, source=f"csv:{path.name}")
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None

    def series(self, t0_s: float, t1_s: float) -> tuple[np.ndarray, np.ndarray]:
        i0 = max(int(np.searchsorted(self.times_s, t0_s, side="right")) - 1, 0)
        i1 = int(np.searchsorted(self.times_s, t1_s, side="left"))
        times = np.concatenate(([t0_s], self.times_s[i0 + 1:max(i1, i0 + 1)]))
        vals = self.values[i0:i0 + len(times)]
        return times, vals


class CarbonProvider(Protocol):
    """A live source of intensity forecasts (a client of a grid-data service)."""

    name: str

    def forecast(self, now_s: float) -> SeriesCarbon:
        """The forecast from ``now_s`` on, as a series on the same clock."""


class ProviderCarbon(CarbonSignal):
    """Asks ``provider`` for a fresh forecast at most every ``refresh_s`` seconds; keeps the
    last good forecast when the provider fails (and says so through ``on_error``)."""

    def __init__(self, provider: CarbonProvider, *, refresh_s: float = 900.0,
                 clock: Callable[[], float], on_error: Optional[Callable[[Exception], None]] = None) -> None:
        self.provider, self.refresh_s, self.clock, self.on_error = provider, refresh_s, clock, on_error
        self.source = f"provider:{provider.name}"
        self._cached: Optional[SeriesCarbon] = None
        self._fetched_at = -math.inf

    def _current(self) -> SeriesCarbon:
        now = self.clock()
        if self._cached is None or now - self._fetched_at >= self.refresh_s:
            try:
                self._cached = self.provider.forecast(now)
                self._fetched_at = now
            except Exception as exc:
                if self.on_error is not None:
                    self.on_error(exc)
                if self._cached is None:
                    raise
        return self._cached

    def series(self, t0_s: float, t1_s: float) -> tuple[np.ndarray, np.ndarray]:
        return self._current().series(t0_s, t1_s)


def emissions_of_power_g(signal: CarbonSignal, times_s: np.ndarray, power_w: np.ndarray, end_s: float) -> float:
    """Grams CO2e of a power step function: ``power_w[i]`` watts from ``times_s[i]`` to the
    next time (the last to ``end_s``), each step at the signal's mean intensity over it."""
    t = np.asarray(times_s, dtype=float)
    w = np.asarray(power_w, dtype=float)
    if t.size == 0:
        return 0.0
    edges = np.append(t, max(end_s, float(t[-1])))
    grams = 0.0
    for a, b, p in zip(edges[:-1], edges[1:], w):
        if b > a and p != 0.0:
            grams += p * (b - a) / J_PER_KWH * signal.mean_intensity(a, b)
    return grams


def ranked_starts(signal: CarbonSignal, *, earliest_s: float, latest_s: float,
                  duration_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Candidate start times in [earliest_s, latest_s] for a run of ``duration_s`` seconds,
    cleanest first (ties: earliest first), with the mean intensity over each run (gCO2e/kWh).

    The mean over [s, s + d] of a step function is piecewise linear in s, with kinks where
    s or s + d meets a breakpoint, so the optimum is at the window's ends or at such a kink;
    those are the candidates.
    """
    if latest_s < earliest_s:
        latest_s = earliest_s
    d = max(duration_s, 1e-9)
    times, _ = signal.series(earliest_s, latest_s + d)
    cand = np.concatenate(([earliest_s, latest_s], times, times - d))
    cand = np.unique(cand[(cand >= earliest_s) & (cand <= latest_s)])
    means = np.array([signal.mean_intensity(s, s + d) for s in cand])
    order = np.lexsort((cand, np.round(means, 9)))
    return cand[order], means[order]


def best_start(signal: CarbonSignal, *, earliest_s: float, latest_s: float, duration_s: float) -> tuple[float, float]:
    """The start time in [earliest_s, latest_s] that minimises the mean intensity over a
    run of ``duration_s`` seconds, and that mean (gCO2e/kWh). Ties go to the earliest start."""
    starts, means = ranked_starts(signal, earliest_s=earliest_s, latest_s=latest_s, duration_s=duration_s)
    return float(starts[0]), float(means[0])
