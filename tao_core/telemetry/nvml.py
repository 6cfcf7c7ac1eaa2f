"""NVIDIA GPU energy, power, temperature and utilization through NVML (``import pynvml``,
the ``nvidia-ml-py`` distribution; the ``nvidia`` extra).

Per GPU, the best of (decided when the source opens, and again if a method starts failing):

1. ``nvmlDeviceGetTotalEnergyConsumption`` (millijoules since the driver loaded; Volta and
   newer): joules = counter - counter at open. Source ``measured-nvml``.
2. ``nvmlDeviceGetPowerUsage`` (milliwatts) polled at each read and integrated with the
   trapezoid rule. Source ``measured-nvml``; the error grows with the read period, since
   power between two polls is taken as linear.
3. Utilization only (``nvmlDeviceGetUtilizationRates``): power modeled linearly between the
   GPU's idle and max watts (from ``tao_core/data/gpu_power.csv`` by name, else the power
   limit as max and 25 % of it as idle). Source ``modeled``.

Also read: temperature (kelvin), utilization (fraction), enforced power limit and its
min/max constraints (watts), per-process SM utilization share where NVML gives it
(``nvmlDeviceGetProcessUtilization``); see :class:`GpuStatus`. ``NOT_SUPPORTED`` and
``GPU_IS_LOST`` answers are recorded in :attr:`GpuStatus.errors`, never raised; a lost GPU
keeps its joules so far and is flagged in its domain's ``method``.

Tests pass a stand-in module as ``nvml=``; it must offer the functions used here, the
``NVMLError`` class and the ``NVML_ERROR_*`` and ``NVML_TEMPERATURE_GPU`` constants.
"""
from __future__ import annotations

import csv
import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Callable, Optional

from tao_core.telemetry.base import DomainReading, EnergySource, Reading, SourceKind
from tao_core.telemetry.estimator import GPU_MODEL_UNCERTAINTY, gpu_power_from_util

__all__ = ["NvmlSource", "GpuStatus", "NvmlUnavailable", "diagnose_nvml", "load_pynvml"]

KELVIN_OFFSET = 273.15
#: relative standard uncertainty of NVML joules. NVML's documentation gives the power
#: reading as accurate to within +/- 5 % on Fermi and Kepler, and nvidia-smi's help gives
#: power.draw as accurate to within +/- 5 W; a study of 70+ GPUs (Yang et al., SC24,
#: "Accurate and Convenient Energy Measurements for GPUs") found that on A100 and H100 the
#: power reading samples only about 25 % of the runtime, so polls can miss short bursts.
#: Hence 5 % for the energy counter and 10 % for integrated power polls.
ENERGY_COUNTER_UNCERTAINTY = 0.05
POWER_POLL_UNCERTAINTY = 0.10
#: idle watts as a fraction of the power limit when the GPU's idle draw is unknown
IDLE_FRACTION_OF_LIMIT = 0.25

MODE_ENERGY = "energy-counter"
MODE_POWER = "power-poll"
MODE_UTIL = "utilization-model"
MODE_NONE = "none"


class NvmlUnavailable(RuntimeError):
    """NVML cannot be used here; the message says why."""


def load_pynvml() -> Any:
    """``import pynvml`` or :class:`NvmlUnavailable` naming the fix."""
    try:
        import pynvml  # noqa: PLC0415
    except ImportError as exc:
        raise NvmlUnavailable(
            "pynvml not installed (pip install 'tao-energy[nvidia]', which installs nvidia-ml-py)"
        ) from exc
    return pynvml


def _init_reason(nvml: Any, exc: Exception) -> str:
    v = getattr(exc, "value", None)
    if v == getattr(nvml, "NVML_ERROR_LIBRARY_NOT_FOUND", object()):
        return "no GPU: no NVIDIA driver (libnvidia-ml.so not found)"
    if v == getattr(nvml, "NVML_ERROR_DRIVER_NOT_LOADED", object()):
        return "no GPU: NVIDIA driver not loaded"
    if v == getattr(nvml, "NVML_ERROR_NO_PERMISSION", object()):
        return "no permission to use NVML"
    return f"NVML init failed: {exc}"


@dataclass
class GpuStatus:
    """What NVML said about one GPU at the last read. Watts, joules, kelvin, fractions."""

    index: int
    name: str
    mode: str  #: energy-counter, power-poll, utilization-model or none
    energy_j: float = 0.0
    power_w: Optional[float] = None
    temperature_k: Optional[float] = None
    utilization: Optional[float] = None
    power_limit_w: Optional[float] = None
    min_power_limit_w: Optional[float] = None
    max_power_limit_w: Optional[float] = None
    process_share: dict[int, float] = field(default_factory=dict)  #: pid -> SM utilization share 0..1
    lost: bool = False
    errors: dict[str, str] = field(default_factory=dict)  #: NVML call -> error it answered

    @property
    def domain(self) -> str:
        return f"gpu-{self.index}"


def _gpu_table() -> dict[str, tuple[float, float]]:
    out: dict[str, tuple[float, float]] = {}
    try:
        with resources.files("tao_core").joinpath("data/gpu_power.csv").open() as f:
            for row in csv.DictReader(f):
                try:
                    out[row["gpu"].lower()] = (float(row["idle_w"]), float(row["default_limit_w"]))
                except (KeyError, ValueError):
                    continue
    except (OSError, FileNotFoundError):
        pass
    return out


class NvmlSource(EnergySource):
    """Cumulative joules per GPU (domains ``gpu-0``, ``gpu-1``, ...) since the source opened.

    ``nvml``: the pynvml module (default: imported here) or a stand-in. ``indices``: GPUs
    to read (default all). ``process_utilization``: also read per-process shares.
    """

    kind = SourceKind.MEASURED_NVML

    def __init__(
        self,
        nvml: Any = None,
        *,
        indices: Optional[list[int]] = None,
        process_utilization: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.nvml = nvml if nvml is not None else load_pynvml()
        self._clock = clock
        self._lock = threading.Lock()
        self._proc_util = process_utilization
        try:
            self.nvml.nvmlInit()
        except self.nvml.NVMLError as exc:
            raise NvmlUnavailable(_init_reason(self.nvml, exc)) from exc
        except OSError as exc:
            raise NvmlUnavailable(f"no NVIDIA driver ({exc})") from exc
        self._open = True
        try:
            count = int(self.nvml.nvmlDeviceGetCount())
        except self.nvml.NVMLError as exc:
            self.close()
            raise NvmlUnavailable(f"nvmlDeviceGetCount failed: {exc}") from exc
        if count == 0:
            self.close()
            raise NvmlUnavailable("NVIDIA driver present but no GPU")
        self._table = _gpu_table()
        self.gpus: list[GpuStatus] = []
        self._handles: dict[int, Any] = {}
        self._base_mj: dict[int, int] = {}
        self._last_w: dict[int, Optional[float]] = {}
        self._last_counter_mj: dict[int, int] = {}
        self._last_proc_ts: dict[int, int] = {}
        self._model: dict[int, tuple[float, float]] = {}
        t = self._clock()
        for i in indices if indices is not None else range(count):
            st = GpuStatus(index=i, name=f"gpu{i}", mode=MODE_NONE)
            try:
                h = self.nvml.nvmlDeviceGetHandleByIndex(i)
            except self.nvml.NVMLError as exc:
                st.errors["nvmlDeviceGetHandleByIndex"] = self._err(exc)
                st.lost = self._is_lost(exc)
                self.gpus.append(st)
                continue
            self._handles[i] = h
            name = self._call(st, "nvmlDeviceGetName", h)
            if name is not None:
                st.name = name.decode() if isinstance(name, bytes) else str(name)
            self._read_limits(st, h)
            self._choose_mode(st, h)
            self.gpus.append(st)
        self._last_t = t

    # --- helpers -----------------------------------------------------------------------
    def _err(self, exc: Exception) -> str:
        v = getattr(exc, "value", None)
        if v == self.nvml.NVML_ERROR_NOT_SUPPORTED:
            return "NOT_SUPPORTED"
        if v == self.nvml.NVML_ERROR_GPU_IS_LOST:
            return "GPU_IS_LOST"
        return str(exc) or type(exc).__name__

    def _is_lost(self, exc: Exception) -> bool:
        return getattr(exc, "value", None) == self.nvml.NVML_ERROR_GPU_IS_LOST

    def _call(self, st: GpuStatus, fn: str, *args: Any) -> Any:
        """Call an NVML function; on NVMLError record it on ``st`` and return ``None``."""
        try:
            return getattr(self.nvml, fn)(*args)
        except self.nvml.NVMLError as exc:
            st.errors[fn] = self._err(exc)
            if self._is_lost(exc):
                st.lost = True
            return None

    def _read_limits(self, st: GpuStatus, h: Any) -> None:
        lim = self._call(st, "nvmlDeviceGetEnforcedPowerLimit", h)
        st.power_limit_w = lim / 1000.0 if lim is not None else None
        cons = self._call(st, "nvmlDeviceGetPowerManagementLimitConstraints", h)
        if cons is not None:
            st.min_power_limit_w, st.max_power_limit_w = cons[0] / 1000.0, cons[1] / 1000.0

    def _choose_mode(self, st: GpuStatus, h: Any) -> None:
        mj = self._call(st, "nvmlDeviceGetTotalEnergyConsumption", h)
        if mj is not None:
            st.mode = MODE_ENERGY
            self._base_mj[st.index] = int(mj)
            self._last_counter_mj[st.index] = int(mj)
            return
        mw = self._call(st, "nvmlDeviceGetPowerUsage", h)
        if mw is not None:
            st.mode = MODE_POWER
            self._last_w[st.index] = mw / 1000.0
            st.power_w = mw / 1000.0
            return
        util = self._call(st, "nvmlDeviceGetUtilizationRates", h)
        if util is not None:
            key = st.name.lower().replace("nvidia ", "").replace(" ", "-")
            idle_max = next((v for k, v in self._table.items() if k == key or k in key), None)
            if idle_max is None and st.power_limit_w:
                idle_max = (IDLE_FRACTION_OF_LIMIT * st.power_limit_w, st.power_limit_w)
            if idle_max is not None:
                st.mode = MODE_UTIL
                self._model[st.index] = idle_max
                self._last_w[st.index] = gpu_power_from_util(util.gpu / 100.0, *idle_max)
                return
        st.mode = MODE_NONE

    # --- reading -----------------------------------------------------------------------
    def read(self) -> Reading:
        with self._lock:
            t = self._clock()
            dt = t - self._last_t
            domains: dict[str, DomainReading] = {}
            for st in self.gpus:
                h = self._handles.get(st.index)
                if h is not None and not st.lost:
                    self._read_one(st, h, dt)
                if st.mode == MODE_NONE and st.energy_j == 0.0:
                    continue
                src, method, unc = self._label(st)
                domains[st.domain] = DomainReading(
                    name=st.domain, energy_j=st.energy_j, source=src, method=method,
                    power_w=None if st.lost else st.power_w, temperature_k=st.temperature_k, uncertainty=unc,
                )
            self._last_t = t
            return Reading(t_s=t, domains=domains)

    def _label(self, st: GpuStatus) -> tuple[SourceKind, str, float]:
        if st.mode == MODE_ENERGY:
            out = (SourceKind.MEASURED_NVML, "NVML total energy counter", ENERGY_COUNTER_UNCERTAINTY)
        elif st.mode == MODE_POWER:
            out = (SourceKind.MEASURED_NVML, "NVML power polls, trapezoid integration", POWER_POLL_UNCERTAINTY)
        elif st.mode == MODE_UTIL:
            i, m = self._model[st.index]
            out = (SourceKind.MODELED, f"NVML utilization x ({i:g} W idle .. {m:g} W max), linear", GPU_MODEL_UNCERTAINTY)
        else:
            out = (SourceKind.MEASURED_NVML, "no NVML power reading", 1.0)
        if st.lost:
            return out[0], out[1] + "; GPU LOST: energy held at last reading", out[2]
        return out

    def _integrate(self, st: GpuStatus, w: float, dt: float) -> None:
        """Add ``dt`` seconds at power linear from the last reading to ``w`` watts (trapezoid)."""
        prev = self._last_w.get(st.index)
        if dt > 0:
            st.energy_j += ((prev if prev is not None else w) + w) / 2.0 * dt
        self._last_w[st.index] = w
        st.power_w = w

    def _read_one(self, st: GpuStatus, h: Any, dt: float) -> None:
        if st.mode == MODE_ENERGY:
            mj = self._call(st, "nvmlDeviceGetTotalEnergyConsumption", h)
            if mj is not None:
                mj = int(mj)
                st.power_w = (mj - self._last_counter_mj[st.index]) / 1000.0 / dt if dt > 0 else st.power_w
                self._last_counter_mj[st.index] = mj
                st.energy_j = (mj - self._base_mj[st.index]) / 1000.0
        elif st.mode == MODE_POWER:
            mw = self._call(st, "nvmlDeviceGetPowerUsage", h)
            if mw is not None:
                self._integrate(st, mw / 1000.0, dt)
        if st.lost:
            return
        temp = self._call(st, "nvmlDeviceGetTemperature", h, self.nvml.NVML_TEMPERATURE_GPU)
        st.temperature_k = temp + KELVIN_OFFSET if temp is not None else None
        util = self._call(st, "nvmlDeviceGetUtilizationRates", h)
        st.utilization = util.gpu / 100.0 if util is not None else None
        if st.mode == MODE_UTIL:
            idle, mx = self._model[st.index]
            self._integrate(st, gpu_power_from_util(st.utilization or 0.0, idle, mx), dt)
        if st.lost:
            return
        lim = self._call(st, "nvmlDeviceGetEnforcedPowerLimit", h)
        st.power_limit_w = lim / 1000.0 if lim is not None else st.power_limit_w
        if self._proc_util and "nvmlDeviceGetProcessUtilization" not in st.errors:
            samples = self._call(st, "nvmlDeviceGetProcessUtilization", h, self._last_proc_ts.get(st.index, 0))
            if samples is not None:
                acc: dict[int, list[float]] = {}
                for s in samples:
                    acc.setdefault(int(s.pid), []).append(float(s.smUtil) / 100.0)
                    self._last_proc_ts[st.index] = max(self._last_proc_ts.get(st.index, 0), int(s.timeStamp))
                st.process_share = {pid: sum(v) / len(v) for pid, v in acc.items()}
            elif st.errors.get("nvmlDeviceGetProcessUtilization") not in ("NOT_SUPPORTED", "GPU_IS_LOST"):
                # e.g. NOT_FOUND: no sample since the last read; try again next time
                st.errors.pop("nvmlDeviceGetProcessUtilization", None)
                st.process_share = {}

    def status(self) -> list[GpuStatus]:
        """Per-GPU details as of the last read."""
        with self._lock:
            return [GpuStatus(**{**st.__dict__, "process_share": dict(st.process_share), "errors": dict(st.errors)})
                    for st in self.gpus]

    def close(self) -> None:
        if getattr(self, "_open", False):
            self._open = False
            try:
                self.nvml.nvmlShutdown()
            except Exception:
                pass


def diagnose_nvml(nvml: Any = None) -> tuple[bool, str, list[dict]]:
    """(usable, reason, per-GPU details) without keeping NVML open."""
    try:
        src = NvmlSource(nvml, process_utilization=False)
    except NvmlUnavailable as exc:
        return False, str(exc), []
    try:
        src.read()
        gpus = src.status()
        details = [
            {"domain": g.domain, "name": g.name, "mode": g.mode, "lost": g.lost,
             "power_limit_w": g.power_limit_w, "errors": g.errors}
            for g in gpus
        ]
        usable = [g for g in gpus if g.mode != MODE_NONE and not g.lost]
        if not usable:
            return False, f"{len(gpus)} GPU(s) but none gives energy, power or utilization", details
        return True, f"{len(usable)} GPU(s): " + ", ".join(f"{g.domain} {g.name} ({g.mode})" for g in usable), details
    finally:
        src.close()
