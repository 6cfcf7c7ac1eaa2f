"""GPU power limits through NVML (``nvmlDeviceSetPowerManagementLimit``).

Values are watts; NVML speaks milliwatts. Setting a limit needs root (or the
``nvidia-smi -pm``-style administrator rights NVML asks for); without them NVML answers
NVML_ERROR_NO_PERMISSION and :class:`ActuatorError` says so.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from tao_core.actuators.base import Actuator, ActuatorError
from tao_core.control.types import DecisionEvent


def _load_pynvml() -> Any:
    try:
        import pynvml  # type: ignore[import-not-found]
    except ImportError as exc:
        raise ActuatorError("GPU power limits need nvidia-ml-py: pip install 'tao-energy[nvidia]'") from exc
    return pynvml


class GpuPowerLimit(Actuator):
    """Power limit of each NVIDIA GPU, targets ``gpu-0``, ``gpu-1``, ...

    ``nvml`` is the pynvml module (or a stand-in exposing the same functions, for tests).
    """

    name = "gpu-power-limit"
    unit = "W"

    def __init__(self, *, apply: bool = False, nvml: Any = None,
                 event_sink: Optional[Callable[[DecisionEvent], None]] = None) -> None:
        super().__init__(apply=apply, event_sink=event_sink)
        self.nvml = nvml if nvml is not None else _load_pynvml()
        try:
            self.nvml.nvmlInit()
            self._handles = [self.nvml.nvmlDeviceGetHandleByIndex(i) for i in range(self.nvml.nvmlDeviceGetCount())]
        except self.nvml.NVMLError as exc:
            raise ActuatorError(f"NVML could not be initialised ({exc}): is the NVIDIA driver loaded?") from exc

    def targets(self) -> list[str]:
        return [f"gpu-{i}" for i in range(len(self._handles))]

    def _handle(self, target: str) -> Any:
        try:
            index = int(target.removeprefix("gpu-"))
            return self._handles[index]
        except (ValueError, IndexError):
            raise ActuatorError(f"no GPU named {target!r}; this machine has {self.targets() or 'none'}") from None

    def _call(self, what: str, target: str, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(self._handle(target), *args)
        except self.nvml.NVMLError as exc:
            code = getattr(exc, "value", None)
            if code == getattr(self.nvml, "NVML_ERROR_NO_PERMISSION", object()):
                raise ActuatorError(
                    f"{what} on {target}: NVML refused (no permission); run the sampler or "
                    "`tao actuate` as root, or leave power limits alone"
                ) from exc
            if code == getattr(self.nvml, "NVML_ERROR_NOT_SUPPORTED", object()):
                raise ActuatorError(f"{what} on {target}: this GPU does not support power limits") from exc
            raise ActuatorError(f"{what} on {target}: NVML error {exc}") from exc

    def read(self, target: str) -> float:
        return self._call("reading the power limit", target, self.nvml.nvmlDeviceGetPowerManagementLimit) / 1000.0

    def bounds(self, target: str) -> tuple[float, float]:
        lo, hi = self._call("reading the power-limit range", target,
                            self.nvml.nvmlDeviceGetPowerManagementLimitConstraints)
        return lo / 1000.0, hi / 1000.0

    def _write(self, target: str, value: float) -> None:
        self._call("setting the power limit", target, self.nvml.nvmlDeviceSetPowerManagementLimit,
                   int(round(value * 1000)))

    def close(self) -> None:
        """Shut NVML down (after :meth:`restore`)."""
        try:
            self.nvml.nvmlShutdown()
        except self.nvml.NVMLError:
            pass
