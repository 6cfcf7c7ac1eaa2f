"""GPUs: model, count, power limits and their range, MIG mode.

:func:`discover_gpus` is a factory in the manner of Zeus' ``get_gpus()``: it returns
:class:`NvmlGpus` when NVML answers, :class:`DriverGpus` when only the NVIDIA driver's
``/proc/driver/nvidia/gpus/*/information`` names them (no NVML: no limits), and
:class:`NoGpus` (a null object with the reason) otherwise. Each has ``devices`` and
``reason``; callers need no ``None`` checks. NVML calls that answer ``NOT_SUPPORTED`` leave
the field ``None``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from tao_core.hardware.root import HostRoot

__all__ = ["GpuInfo", "Gpus", "NvmlGpus", "DriverGpus", "NoGpus", "discover_gpus"]


@dataclass(frozen=True)
class GpuInfo:
    """One GPU. Watts; ``mig_enabled`` ``None`` where the GPU has no MIG."""

    index: int
    name: str
    uuid: Optional[str] = None
    memory_bytes: Optional[int] = None
    power_limit_w: Optional[float] = None  #: enforced limit
    default_limit_w: Optional[float] = None
    min_limit_w: Optional[float] = None
    max_limit_w: Optional[float] = None
    mig_enabled: Optional[bool] = None
    mig_pending: Optional[bool] = None


class Gpus:
    """GPUs of this node; ``source``: nvml, driver or none."""

    source = "none"

    def __init__(self, devices: tuple[GpuInfo, ...] = (), reason: str = "") -> None:
        self.devices = devices
        self.reason = reason

    def __len__(self) -> int:
        return len(self.devices)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self.devices)} GPU(s), {self.reason!r})"


class NvmlGpus(Gpus):
    source = "nvml"


class DriverGpus(Gpus):
    source = "driver"


class NoGpus(Gpus):
    """No GPU found; ``reason`` says why."""


def _w(mw: Any) -> Optional[float]:
    return None if mw is None else float(mw) / 1000.0


def _call(nvml: Any, fn: str, *args: Any) -> Any:
    try:
        return getattr(nvml, fn)(*args)
    except nvml.NVMLError:
        return None
    except AttributeError:  # an older pynvml without this function
        return None


def _text(v: Any) -> Optional[str]:
    return v.decode() if isinstance(v, bytes) else (None if v is None else str(v))


def _nvml_device(nvml: Any, i: int) -> GpuInfo:
    h = nvml.nvmlDeviceGetHandleByIndex(i)
    cons = _call(nvml, "nvmlDeviceGetPowerManagementLimitConstraints", h)
    mig = _call(nvml, "nvmlDeviceGetMigMode", h)
    mem = _call(nvml, "nvmlDeviceGetMemoryInfo", h)
    enabled = getattr(nvml, "NVML_DEVICE_MIG_ENABLE", 1)
    return GpuInfo(
        index=i, name=_text(_call(nvml, "nvmlDeviceGetName", h)) or f"gpu{i}",
        uuid=_text(_call(nvml, "nvmlDeviceGetUUID", h)),
        memory_bytes=int(mem.total) if mem is not None and hasattr(mem, "total") else None,
        power_limit_w=_w(_call(nvml, "nvmlDeviceGetEnforcedPowerLimit", h)),
        default_limit_w=_w(_call(nvml, "nvmlDeviceGetPowerManagementDefaultLimit", h)),
        min_limit_w=_w(cons[0]) if cons else None, max_limit_w=_w(cons[1]) if cons else None,
        mig_enabled=None if mig is None else mig[0] == enabled,
        mig_pending=None if mig is None else mig[1] == enabled,
    )


def _from_nvml(nvml: Any) -> Gpus:
    try:
        nvml.nvmlInit()
    except Exception as exc:  # NVMLError or OSError: no driver, no permission
        return NoGpus(reason=f"NVML init failed: {exc}")
    try:
        count = int(nvml.nvmlDeviceGetCount())
        devs = tuple(_nvml_device(nvml, i) for i in range(count))
    except nvml.NVMLError as exc:
        return NoGpus(reason=f"NVML: {exc}")
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:  # shutting down a half-initialised NVML: nothing to keep
            pass
    if not devs:
        return NoGpus(reason="NVIDIA driver present but no GPU")
    return NvmlGpus(devs, reason=f"{len(devs)} GPU(s) through NVML")


def _from_driver(root: HostRoot, why: str) -> Gpus:
    devs = []
    for i, p in enumerate(root.glob("/proc/driver/nvidia/gpus/*/information")):
        for line in (root.read(p) or "").splitlines():
            k, _, v = line.partition(":")
            if k.strip() == "Model" and v.strip():
                devs.append(GpuInfo(index=i, name=v.strip()))
    if devs:
        return DriverGpus(tuple(devs), reason=f"{len(devs)} GPU(s) named by the NVIDIA driver ({why})")
    return NoGpus(reason=why)


def discover_gpus(root: Optional[HostRoot] = None, nvml: Any = None) -> Gpus:
    """GPUs of the machine under ``root``. ``nvml``: the pynvml module or a stand-in
    (default: ``import pynvml`` on a live machine; never on another root)."""
    root = root or HostRoot()
    if nvml is None and root.live:
        try:
            import pynvml as nvml  # noqa: PLC0415
        except ImportError:
            nvml = None
            why = "pynvml not installed (pip install 'tao-energy[nvidia]')"
        else:
            why = ""
    else:
        why = "no NVML on this root" if nvml is None else ""
    if nvml is not None:
        found = _from_nvml(nvml)
        if found.devices:
            return found
        why = found.reason
    return _from_driver(root, why)
