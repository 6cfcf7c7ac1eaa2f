"""CPU temperature in kelvin from Linux hwmon or thermal zones.

Preferred: ``<sysfs>/class/hwmon/hwmonN`` whose ``name`` is ``coretemp`` (Intel; one device
per socket, ``temp1_label`` "Package id N"), ``k10temp`` or ``zenpower`` (AMD; ``Tctl`` /
``Tdie``). Otherwise ``<sysfs>/class/thermal/thermal_zoneN`` of a CPU type
(``x86_pkg_temp``, ``cpu-thermal``, ``cpu_thermal``, ``soc_thermal``; ``acpitz`` as a last
resort). Files hold millidegrees Celsius; TAO reports kelvin (``C + 273.15``).
``sysfs_root`` (default ``/sys``) can point to a test tree.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

__all__ = ["CpuThermal", "ThermalDiagnosis", "diagnose_thermal", "CPU_HWMON_NAMES"]

CPU_HWMON_NAMES = ("coretemp", "k10temp", "zenpower")
CPU_ZONE_TYPES = ("x86_pkg_temp", "cpu-thermal", "cpu_thermal", "soc_thermal", "cpu0-thermal")
FALLBACK_ZONE_TYPES = ("acpitz",)
KELVIN_OFFSET = 273.15


@dataclass
class ThermalDiagnosis:
    available: bool
    reason: str
    sensors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"available": self.available, "reason": self.reason, "sensors": list(self.sensors)}


def _read(path: Path) -> Optional[str]:
    try:
        with open(path) as f:
            return f.read().strip()
    except (OSError, UnicodeDecodeError):
        return None


@dataclass(frozen=True)
class _Sensor:
    key: str  #: ``cpu-0``, ``cpu-1`` (socket) or ``cpu`` when the socket is unknown
    path: Path  #: file in millidegrees Celsius
    label: str


class CpuThermal:
    """CPU temperature sensors found under ``sysfs_root``. :meth:`read_k` gives kelvin per
    socket key (``cpu-0``, ``cpu-1``, ...)."""

    def __init__(self, sysfs_root: "str | os.PathLike[str]" = "/sys") -> None:
        self.sysfs_root = Path(sysfs_root)
        self.sensors: list[_Sensor] = self._find_hwmon() or self._find_zones()
        self.origin = "hwmon" if self.sensors and "hwmon" in str(self.sensors[0].path) else (
            "thermal_zone" if self.sensors else "none"
        )

    def _find_hwmon(self) -> list[_Sensor]:
        base = self.sysfs_root / "class" / "hwmon"
        out: list[_Sensor] = []
        try:
            devs = sorted(os.listdir(base), key=lambda n: int(re.sub(r"\D", "", n) or 0))
        except OSError:
            return out
        amd_i = 0
        for d in devs:
            p = base / d
            name = _read(p / "name")
            if name not in CPU_HWMON_NAMES:
                continue
            inputs = sorted(p.glob("temp*_input"), key=lambda q: int(re.sub(r"\D", "", q.name) or 0))
            if not inputs:
                continue
            if name == "coretemp":
                chosen = None
                for q in inputs:
                    label = _read(q.with_name(q.name.replace("_input", "_label"))) or ""
                    m = re.match(r"(?:Package id|Physical id)\s+(\d+)", label)
                    if m:
                        chosen = _Sensor(f"cpu-{m.group(1)}", q, f"coretemp {label}")
                        break
                if chosen is None:
                    chosen = _Sensor("cpu", inputs[0], f"coretemp {inputs[0].name}")
                out.append(chosen)
            else:
                labels = {q: (_read(q.with_name(q.name.replace("_input", "_label"))) or "") for q in inputs}
                pick = next((q for q in inputs if labels[q] == "Tdie"), None) or next(
                    (q for q in inputs if labels[q] == "Tctl"), inputs[0]
                )
                out.append(_Sensor(f"cpu-{amd_i}", pick, f"{name} {labels[pick] or pick.name}"))
                amd_i += 1
        return out

    def _find_zones(self) -> list[_Sensor]:
        base = self.sysfs_root / "class" / "thermal"
        try:
            zones = sorted(d for d in os.listdir(base) if d.startswith("thermal_zone"))
        except OSError:
            return []
        cpu, fallback = [], []
        for z in zones:
            typ = _read(base / z / "type") or ""
            if typ in CPU_ZONE_TYPES:
                cpu.append((z, typ))
            elif typ in FALLBACK_ZONE_TYPES:
                fallback.append((z, typ))
        chosen = cpu or fallback[:1]
        return [
            _Sensor(f"cpu-{i}" if len(chosen) > 1 else "cpu", base / z / "temp", f"thermal {z} ({typ})")
            for i, (z, typ) in enumerate(chosen)
        ]

    def read_k(self) -> dict[str, float]:
        """Kelvin per sensor key; a sensor that cannot be read now is left out."""
        out: dict[str, float] = {}
        for s in self.sensors:
            v = _read(s.path)
            try:
                out[s.key] = int(v) / 1000.0 + KELVIN_OFFSET  # type: ignore[arg-type]
            except (TypeError, ValueError):
                continue
        return out

    def max_k(self) -> Optional[float]:
        """Hottest CPU sensor in kelvin, or ``None``."""
        vals = self.read_k()
        return max(vals.values()) if vals else None


def diagnose_thermal(sysfs_root: "str | os.PathLike[str]" = "/sys") -> ThermalDiagnosis:
    th = CpuThermal(sysfs_root)
    root = Path(sysfs_root)
    if not th.sensors:
        why = []
        if not (root / "class" / "hwmon").is_dir():
            why.append(f"no {root / 'class' / 'hwmon'}")
        else:
            why.append(f"no coretemp/k10temp/zenpower device in {root / 'class' / 'hwmon'}")
        tz = root / "class" / "thermal"
        if not tz.is_dir() or not any(d.startswith("thermal_zone") for d in os.listdir(tz)):
            why.append(f"no thermal zones in {tz}")
        else:
            why.append(f"no CPU thermal zone in {tz}")
        return ThermalDiagnosis(False, "; ".join(why))
    vals = th.read_k()
    if not vals:
        return ThermalDiagnosis(False, "CPU sensors found but unreadable", [s.label for s in th.sensors])
    return ThermalDiagnosis(
        True, f"{th.origin}: " + ", ".join(f"{k} {v:.1f} K" for k, v in vals.items()), [s.label for s in th.sensors]
    )
