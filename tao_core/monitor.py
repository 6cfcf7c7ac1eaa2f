"""EnergyMonitor: energy of named code windows over a background sampler.

Windows may nest and overlap: each window reads the source when it begins and when it
ends (no wait for the next sample), and its energy per domain is the difference. The
background thread reads the source every ``period_s`` seconds so that counters that wrap
(RAPL) are never read too rarely, power polls (NVML without an energy counter) are
integrated finely, and a timeline of readings is kept (for attribution and peak power).

Units: joules, seconds, watts.

Usage::

    from tao_core import EnergyMonitor
    with EnergyMonitor(period_s=0.5) as mon:
        mon.begin_window("train")
        with mon.window("epoch-1"):
            work()
        r = mon.end_window("train")
        print(r.total_energy_j, r.energy_j, r.sources)

        @mon.measure("step")
        def step(): ...
        print(mon.to_dataframe())
"""
from __future__ import annotations

import collections
import functools
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional

import pandas as pd

from tao_core.telemetry.base import EnergySource, Reading

__all__ = ["EnergyMonitor", "WindowResult", "DEFAULT_PERIOD_S"]

#: default sampler period, seconds. At 0.5 s the sampler costs well under 1 % of one CPU
#: (see benchmarks/sampler_cost.py) and a 262 kJ RAPL counter cannot wrap unseen below
#: 500 kW.
DEFAULT_PERIOD_S = 0.5

RESULT_COLUMNS = ["window", "domain", "parent", "energy_j", "time_s", "power_w", "source", "method",
                  "uncertainty", "start_s", "end_s"]


@dataclass(frozen=True)
class WindowResult:
    """Energy of one window. Per-domain dicts are keyed by domain name (``package-0``,
    ``dram-0``, ``gpu-0``, ``node``). ``total_energy_j`` sums top-level domains only."""

    name: str
    start_s: float  #: monotonic seconds at begin
    end_s: float  #: monotonic seconds at end
    energy_j: dict[str, float]
    power_w: dict[str, float]  #: mean watts over the window
    sources: dict[str, str]  #: measured-rapl, measured-nvml, modeled, replay
    methods: dict[str, str]
    uncertainty: dict[str, float]  #: relative standard uncertainty
    parents: dict[str, Optional[str]] = field(default_factory=dict)

    @property
    def time_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def total_energy_j(self) -> float:
        return sum(e for d, e in self.energy_j.items() if self.parents.get(d) is None)

    @property
    def average_power_w(self) -> float:
        """Mean watts over the window, top-level domains summed."""
        return self.total_energy_j / self.time_s if self.time_s > 0 else 0.0

    @property
    def method(self) -> str:
        return "; ".join(sorted(set(self.methods.values())))

    def to_dataframe(self) -> pd.DataFrame:
        rows = [
            {"window": self.name, "domain": d, "parent": self.parents.get(d), "energy_j": e,
             "time_s": self.time_s, "power_w": self.power_w.get(d), "source": self.sources.get(d),
             "method": self.methods.get(d), "uncertainty": self.uncertainty.get(d),
             "start_s": self.start_s, "end_s": self.end_s}
            for d, e in self.energy_j.items()
        ]
        return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def _diff(name: str, a: Reading, b: Reading) -> WindowResult:
    dt = b.t_s - a.t_s
    energy, power, src, meth, unc, par = {}, {}, {}, {}, {}, {}
    for d, rb in b.domains.items():
        ra = a.domains.get(d)
        e = rb.energy_j - (ra.energy_j if ra is not None else rb.energy_j)
        energy[d] = e
        power[d] = e / dt if dt > 0 else 0.0
        src[d] = str(rb.source)
        meth[d] = rb.method
        unc[d] = rb.uncertainty
        par[d] = rb.parent
    return WindowResult(name, a.t_s, b.t_s, energy, power, src, meth, unc, par)


class EnergyMonitor:
    """Named energy windows over ``source`` (default: :func:`tao_core.telemetry.detect.detect`
    on this machine), with a background sampler every ``period_s`` seconds.

    ``keep_samples``: how many sampler readings to keep for :meth:`timeline` (oldest dropped).
    A ``source`` you pass stays yours to close; one the monitor detected is closed by
    :meth:`close`. Window results keep the domains present at the window's end.
    """

    def __init__(
        self,
        source: Optional[EnergySource] = None,
        *,
        period_s: float = DEFAULT_PERIOD_S,
        keep_samples: int = 100_000,
        powercap_root: Any = None,
        start: bool = True,
    ) -> None:
        if not period_s > 0:
            raise ValueError("period_s: the sampler period must be > 0 seconds")
        self._detection = None
        if source is None:
            from tao_core.telemetry.detect import detect  # noqa: PLC0415

            self._detection = detect(powercap_root)
            source = self._detection.source()
        self.source = source
        self.period_s = float(period_s)
        self._lock = threading.RLock()
        self._open: dict[str, Reading] = {}
        self._samples: collections.deque[Reading] = collections.deque(maxlen=keep_samples)
        self.results: list[WindowResult] = []
        #: CPU seconds the sampler thread has used (``time.thread_time`` inside it)
        self.sampler_cpu_s = 0.0
        #: sampler reads that raised, with the last error
        self.sampler_errors = 0
        self.last_error: Optional[str] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._read()  # first reading: baseline for everything after
        if start:
            self.start()

    # --- sampler -------------------------------------------------------------------------
    def start(self) -> None:
        """Start the background sampler (no-op when running)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="tao-energy-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        t_cpu0 = time.thread_time()
        next_t = time.monotonic() + self.period_s
        while not self._stop.wait(max(next_t - time.monotonic(), 0.0)):
            next_t += self.period_s
            if next_t < time.monotonic():  # fell behind (suspended): do not burst
                next_t = time.monotonic() + self.period_s
            try:
                self._read()
            except Exception as exc:  # a failing read must never kill the sampler
                self.sampler_errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
            self.sampler_cpu_s = time.thread_time() - t_cpu0

    def _read(self) -> Reading:
        with self._lock:
            r = self.source.read()
            self._samples.append(r)
            return r

    def stop(self) -> None:
        """Stop the sampler thread (windows still work: they read at their boundaries)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(5.0, 4 * self.period_s))
            self._thread = None

    def close(self) -> None:
        """Stop the sampler and close the sources this monitor opened."""
        self.stop()
        if self._detection is not None:
            self._detection.close()

    def __enter__(self) -> "EnergyMonitor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- windows -------------------------------------------------------------------------
    def begin_window(self, name: str) -> None:
        """Open window ``name`` (reads the source now). Names must be unique among open windows."""
        with self._lock:
            if name in self._open:
                raise ValueError(f"window {name!r} is already open; end it first or use another name")
            self._open[name] = self._read()

    def end_window(self, name: str) -> WindowResult:
        """Close window ``name`` (reads the source now) and return its energy."""
        with self._lock:
            if name not in self._open:
                raise KeyError(f"window {name!r} is not open; call begin_window({name!r}) first")
            end = self._read()
            res = _diff(name, self._open.pop(name), end)
            self.results.append(res)
            return res

    @property
    def open_windows(self) -> list[str]:
        with self._lock:
            return list(self._open)

    @contextmanager
    def window(self, name: str) -> Iterator["_WindowHandle"]:
        """``with mon.window("x") as w: ...``; ``w.result`` is set at exit."""
        h = _WindowHandle(name)
        self.begin_window(name)
        try:
            yield h
        finally:
            h.result = self.end_window(name)

    def measure(self, name: Optional[str] = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: each call of the function is a window (``name`` or the function's
        qualified name, with a call counter so concurrent calls do not clash)."""

        def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
            base = name or fn.__qualname__
            counter = iter(range(1 << 62))
            lock = threading.Lock()

            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                with lock:
                    n = next(counter)
                with self.window(base if n == 0 else f"{base}#{n}"):
                    return fn(*args, **kwargs)

            return wrapper

        return deco

    # --- results -------------------------------------------------------------------------
    def latest(self) -> Reading:
        """The most recent reading (sampler or window boundary)."""
        with self._lock:
            return self._samples[-1]

    def timeline(self) -> list[Reading]:
        """Readings kept so far, oldest first (sampler and window boundaries)."""
        with self._lock:
            return list(self._samples)

    def to_dataframe(self) -> pd.DataFrame:
        """Finished windows, one row per window and domain (columns ``RESULT_COLUMNS``)."""
        frames = [r.to_dataframe() for r in self.results]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=RESULT_COLUMNS)


@dataclass
class _WindowHandle:
    name: str
    result: Optional[WindowResult] = None
