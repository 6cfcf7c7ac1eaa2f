"""Several sources read as one: their domains merged into one :class:`Reading`, with CPU
temperature (kelvin) from a :class:`~tao_core.telemetry.thermal.CpuThermal` attached to the
CPU domains (``package-N`` gets socket N's sensor; ``node`` and ``psys`` the hottest)."""
from __future__ import annotations

import re
import threading
import time
from dataclasses import replace
from typing import Callable, Optional, Sequence

from tao_core.telemetry.base import DomainReading, EnergySource, Reading, SourceKind
from tao_core.telemetry.thermal import CpuThermal

__all__ = ["CompositeSource"]


class CompositeSource(EnergySource):
    """Reads every source in turn; the reading's ``t_s`` is the clock after the last one."""

    def __init__(self, sources: Sequence[EnergySource], *, thermal: Optional[CpuThermal] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.sources = list(sources)
        self.thermal = thermal if thermal is not None and thermal.sensors else None
        self._clock = clock
        self._lock = threading.Lock()
        kinds = {s.kind for s in self.sources}
        # the weakest kind present: modeled if any part is modeled
        if len(kinds) == 1:
            self.kind = kinds.pop()
        else:
            self.kind = SourceKind.MODELED if (SourceKind.MODELED in kinds or not kinds) else self.sources[0].kind
        #: source -> last error text, for sources that failed a read
        self.errors: dict[int, str] = {}

    def read(self) -> Reading:
        with self._lock:
            domains: dict[str, DomainReading] = {}
            for i, s in enumerate(self.sources):
                try:
                    r = s.read()
                except Exception as exc:  # one failing source must not stop the others
                    self.errors[i] = f"{type(s).__name__}: {type(exc).__name__}: {exc}"
                    continue
                for name, d in r.domains.items():
                    domains[name if name not in domains else f"{name}#{i}"] = d
            if self.thermal is not None:
                temps = self.thermal.read_k()
                if temps:
                    hottest = max(temps.values())
                    for name, d in list(domains.items()):
                        if d.temperature_k is not None:
                            continue
                        m = re.fullmatch(r"package-(\d+)", name)
                        if m:
                            k = temps.get(f"cpu-{m.group(1)}", temps.get("cpu", hottest))
                            domains[name] = replace(d, temperature_k=k)
                        elif d.parent is None and (name == "psys" or d.source == SourceKind.MODELED) and not name.startswith("gpu"):
                            domains[name] = replace(d, temperature_k=hottest)
            return Reading(t_s=self._clock(), domains=domains)

    def close(self) -> None:
        for s in self.sources:
            try:
                s.close()
            except Exception:
                pass
