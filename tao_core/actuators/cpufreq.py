"""CPU frequency caps through cpufreq sysfs (``scaling_max_freq``).

Targets are the kernel's cpufreq policies (``policy0``, ``policy1``, ...) under
``/sys/devices/system/cpu/cpufreq`` (or ``root``, or ``TAO_CPUFREQ_ROOT``). Values are kHz,
as the kernel gives them; bounds are ``cpuinfo_min_freq`` .. ``cpuinfo_max_freq``.
Writing needs root.
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Callable, Optional

from tao_core.actuators.base import Actuator, ActuatorError
from tao_core.control.types import DecisionEvent

DEFAULT_ROOT = "/sys/devices/system/cpu/cpufreq"
_POLICY_RE = re.compile(r"policy[0-9]{1,6}")
#: most bytes read from one cpufreq attribute (a frequency is a few digits)
_MAX_ATTR_BYTES = 4096


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
        try:
            names = [p.name for p in self.root.iterdir() if _POLICY_RE.fullmatch(p.name)]
        except OSError as exc:
            raise ActuatorError(f"cannot list the cpufreq tree at {self.root} ({exc.strerror})") from None
        return sorted((n for n in names if (self.root / n / "scaling_max_freq").is_file()),
                      key=lambda n: int(n.removeprefix("policy")))

    def _file(self, target: str, name: str) -> Path:
        path = self.root / target / name
        if not _POLICY_RE.fullmatch(target) or not path.is_file():
            raise ActuatorError(f"no cpufreq policy {target!r} with {name}; known: {self.targets() or 'none'}")
        return path

    def _read_int(self, target: str, name: str) -> float:
        """A frequency attribute in kHz: a finite number > 0, or an ActuatorError."""
        try:
            with open(self._file(target, name), "rb") as f:
                text = f.read(_MAX_ATTR_BYTES + 1).decode("ascii").strip()
            value = float(text) if len(text) <= 32 else math.nan
        except PermissionError as exc:
            raise ActuatorError(f"reading {name} of {target}: permission denied; run as root") from exc
        except OSError as exc:
            raise ActuatorError(f"reading {name} of {target}: {exc.strerror or exc}") from None
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            raise ActuatorError(f"{name} of {target} does not hold a frequency in kHz; is {self.root} a cpufreq tree?")
        return value

    def read(self, target: str) -> float:
        return self._read_int(target, "scaling_max_freq")

    def bounds(self, target: str) -> tuple[float, float]:
        return self._read_int(target, "cpuinfo_min_freq"), self._read_int(target, "cpuinfo_max_freq")

    def _write(self, target: str, value: float) -> None:
        try:
            self._file(target, "scaling_max_freq").write_text(f"{int(value)}\n")
        except PermissionError as exc:
            raise ActuatorError(f"writing scaling_max_freq of {target}: permission denied; run as root") from exc
        except OSError as exc:
            raise ActuatorError(f"writing scaling_max_freq of {target}: {exc.strerror or exc}") from None
