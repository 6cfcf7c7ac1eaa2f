"""pyRAPL as an optional RAPL backend (the ``rapl`` extra), used only when asked for
(``detect(prefer_pyrapl=True)`` or ``PyRaplSource()`` directly); the default RAPL reader is
:mod:`tao_core.telemetry.rapl`, which needs no extra package.

pyRAPL's ``Sensor`` reads the package and DRAM ``energy_uj`` counters of every socket (in
microjoules, raw). Domains: ``package-N`` and ``dram-N``, both top level. pyRAPL gives no
wrap range, so a counter that goes back is counted as a dropped interval (flagged in the
domain's method) rather than guessed.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Optional

from tao_core.telemetry.base import DomainReading, EnergySource, Reading, SourceKind
from tao_core.telemetry.rapl import RAPL_UNCERTAINTY

__all__ = ["PyRaplSource", "PyRaplUnavailable", "load_pyrapl"]


class PyRaplUnavailable(RuntimeError):
    """pyRAPL is missing or cannot read the counters; the message says why."""


def load_pyrapl() -> Any:
    try:
        import pyRAPL  # noqa: PLC0415
    except ImportError as exc:
        raise PyRaplUnavailable("pyRAPL not installed (pip install 'tao-energy[rapl]')") from exc
    return pyRAPL


class PyRaplSource(EnergySource):
    """Cumulative joules per package and DRAM domain through pyRAPL."""

    kind = SourceKind.MEASURED_RAPL

    def __init__(self, socket_ids: Optional[list[int]] = None, *, clock: Callable[[], float] = time.monotonic,
                 pyrapl: Any = None) -> None:
        mod = pyrapl if pyrapl is not None else load_pyrapl()
        try:
            from pyRAPL.sensor import Sensor  # noqa: PLC0415
        except ImportError as exc:  # pragma: no cover - pyRAPL layout changed
            raise PyRaplUnavailable(f"pyRAPL has no sensor module ({exc})") from exc
        try:
            self._sensor = Sensor(socket_ids=socket_ids)
        except Exception as exc:  # pyRAPL raises its own exception types
            raise PyRaplUnavailable(f"pyRAPL cannot read RAPL: {type(exc).__name__}: {exc}") from exc
        self._mod = mod
        self._clock = clock
        self._lock = threading.Lock()
        self._last = list(self._sensor.energy())
        self._energy = [0.0] * len(self._last)
        self._dropped = [0] * len(self._last)
        self._last_t = clock()

    @staticmethod
    def _name(i: int) -> str:
        return f"{'package' if i % 2 == 0 else 'dram'}-{i // 2}"

    def read(self) -> Reading:
        with self._lock:
            cur = list(self._sensor.energy())
            t = self._clock()
            dt = t - self._last_t
            domains = {}
            for i, (c, p) in enumerate(zip(cur, self._last)):
                if c < 0:  # pyRAPL's marker for a device not monitored on that socket
                    continue
                d = c - p
                if d < 0:
                    self._dropped[i] += 1
                    d = 0
                self._energy[i] += d * 1e-6
                method = "pyRAPL Sensor energy_uj"
                if self._dropped[i]:
                    method += f"; {self._dropped[i]} interval(s) dropped at counter wrap"
                name = self._name(i)
                domains[name] = DomainReading(
                    name=name, energy_j=self._energy[i], source=SourceKind.MEASURED_RAPL, method=method,
                    power_w=d * 1e-6 / dt if dt > 0 else None, uncertainty=RAPL_UNCERTAINTY,
                )
            self._last = cur
            self._last_t = t
            return Reading(t_s=t, domains=domains)
