"""CPU frequency caps through cpufreq sysfs (``scaling_max_freq``).

Targets are the kernel's cpufreq policies (``policy0``, ``policy1``, ...) under
``/sys/devices/system/cpu/cpufreq`` (or ``root``, or ``TAO_CPUFREQ_ROOT``). Values are kHz,
as the kernel gives them; bounds are ``cpuinfo_min_freq`` .. ``cpuinfo_max_freq``.
Writing needs root.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional

from tao_core.actuators.base import Actuator, ActuatorError
from tao_core.control.types import DecisionEvent

DEFAULT_ROOT = "/sys/devices/system/cpu/cpufreq"


class CpuFrequencyCap(Actuator):
    """Maximum frequency of each cpufreq policy, in kHz."""

    name = "cpu-frequency-cap"
    unit = "kHz"

    def __init__(self, *, apply: bool = False, root: Optional[str | os.PathLike[str]] = None,
                 event_sink: Optional[Callable[[DecisionEvent], None]] = None) -> None:
        super().__init__(apply=apply, event_sink=event_sink)
        self.root = Path(root or os.environ.get("TAO_CPUFREQ_ROOT") or DEFAULT_ROOT)
        if not self.root.is_dir():
            raise ActuatorError(f"no cpufreq tree at {self.root}: this machine (or VM) exposes no CPU frequency control")

    def targets(self) -> list[str]:
        return sorted((p.name for p in self.root.glob("policy*") if (p / "scaling_max_freq").exists()),
                      key=lambda n: int(n.removeprefix("policy") or 0))

    def _file(self, target: str, name: str) -> Path:
        path = self.root / target / name
        if not target.startswith("policy") or not path.exists():
            raise ActuatorError(f"no cpufreq policy {target!r} with {name}; known: {self.targets() or 'none'}")
        return path

    def _read_int(self, target: str, name: str) -> float:
        try:
            return float(self._file(target, name).read_text().strip())
        except PermissionError as exc:
            raise ActuatorError(f"reading {name} of {target}: permission denied; run as root") from exc

    def read(self, target: str) -> float:
        return self._read_int(target, "scaling_max_freq")

    def bounds(self, target: str) -> tuple[float, float]:
        return self._read_int(target, "cpuinfo_min_freq"), self._read_int(target, "cpuinfo_max_freq")

    def _write(self, target: str, value: float) -> None:
        try:
            self._file(target, "scaling_max_freq").write_text(f"{int(value)}\n")
        except PermissionError as exc:
            raise ActuatorError(f"writing scaling_max_freq of {target}: permission denied; run as root") from exc
