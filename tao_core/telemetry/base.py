"""Records and the interface shared by every telemetry source.

Units: time in seconds (``time.monotonic()``), energy in joules, power in watts,
temperature in kelvin. Every figure carries the kind of source it came from, so a
modeled joule is never shown as a measured one.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from enum import Enum
from typing import Mapping, Optional


class SourceKind(str, Enum):
    """Where a figure came from."""

    MEASURED_RAPL = "measured-rapl"
    MEASURED_NVML = "measured-nvml"
    MODELED = "modeled"
    REPLAY = "replay"

    def __str__(self) -> str:  # "measured-rapl", not "SourceKind.MEASURED_RAPL"
        return self.value


@dataclass(frozen=True)
class DomainReading:
    """One power domain at one instant.

    ``energy_j`` is cumulative joules since the source was opened, already corrected
    for counter wraparound, so it never decreases. ``parent`` names the domain that
    contains this one (``core-0`` inside ``package-0``); totals add only domains
    without a parent, so nothing is counted twice.
    """

    name: str
    energy_j: float
    source: SourceKind
    method: str
    power_w: Optional[float] = None
    temperature_k: Optional[float] = None
    uncertainty: float = 0.0  #: relative standard uncertainty of energy_j (0.05 = 5 %)
    parent: Optional[str] = None


@dataclass(frozen=True)
class Reading:
    """All domains of one source (or of several, merged) at one monotonic instant ``t_s``."""

    t_s: float
    domains: Mapping[str, DomainReading] = field(default_factory=dict)

    def total_energy_j(self) -> float:
        """Joules summed over top-level domains (those with no parent)."""
        return sum(d.energy_j for d in self.domains.values() if d.parent is None)


class EnergySource(abc.ABC):
    """A source of cumulative energy readings. ``read()`` must be cheap and thread safe
    enough to be called from one background sampler thread."""

    #: what kind of figures this source yields
    kind: SourceKind

    @abc.abstractmethod
    def read(self) -> Reading:
        """Read every domain now."""

    def close(self) -> None:
        """Release handles (files, NVML). Idempotent."""

    def __enter__(self) -> "EnergySource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
