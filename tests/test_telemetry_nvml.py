"""NVML source over a stand-in for the pynvml functions TAO calls. Errors are the real
pynvml error classes and constants, so the semantics are those of nvidia-ml-py."""
from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Optional

import pynvml
import pytest

from tao_core.telemetry.base import SourceKind
from tao_core.telemetry.detect import detect
from tao_core.telemetry.nvml import NvmlSource, NvmlUnavailable

NS = pynvml.NVML_ERROR_NOT_SUPPORTED
LOST = pynvml.NVML_ERROR_GPU_IS_LOST


@dataclass
class FakeGpu:
    name: str
    energy_mj: Optional[int] = None  # None: NOT_SUPPORTED (pre-Volta)
    power_mw: Optional[int] = None  # None: NOT_SUPPORTED
    util: Optional[int] = 0  # percent; None: NOT_SUPPORTED
    temp_c: Optional[int] = 40
    limit_mw: Optional[int] = 300_000
    constraints_mw: Optional[tuple] = (100_000, 300_000)
    processes: Optional[list] = None  # None: NOT_SUPPORTED
    lost: bool = False


@dataclass
class FakeNvml:
    """Module-like stand-in: the pynvml functions NvmlSource uses, nothing else."""

    gpus: list
    init_error: Optional[int] = None
    calls: list = field(default_factory=list)

    NVMLError = pynvml.NVMLError
    NVML_ERROR_NOT_SUPPORTED = pynvml.NVML_ERROR_NOT_SUPPORTED
    NVML_ERROR_GPU_IS_LOST = pynvml.NVML_ERROR_GPU_IS_LOST
    NVML_ERROR_LIBRARY_NOT_FOUND = pynvml.NVML_ERROR_LIBRARY_NOT_FOUND
    NVML_ERROR_DRIVER_NOT_LOADED = pynvml.NVML_ERROR_DRIVER_NOT_LOADED
    NVML_ERROR_NO_PERMISSION = pynvml.NVML_ERROR_NO_PERMISSION
    NVML_TEMPERATURE_GPU = pynvml.NVML_TEMPERATURE_GPU

    def _g(self, h) -> FakeGpu:
        g = self.gpus[h]
        if g.lost:
            raise pynvml.NVMLError(LOST)
        return g

    @staticmethod
    def _val(v):
        if v is None:
            raise pynvml.NVMLError(NS)
        return v

    def nvmlInit(self):
        if self.init_error is not None:
            raise pynvml.NVMLError(self.init_error)

    def nvmlShutdown(self):
        self.calls.append("shutdown")

    def nvmlDeviceGetCount(self):
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetName(self, h):
        return self._g(h).name

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        return self._val(self._g(h).energy_mj)

    def nvmlDeviceGetPowerUsage(self, h):
        return self._val(self._g(h).power_mw)

    def nvmlDeviceGetTemperature(self, h, sensor):
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return self._val(self._g(h).temp_c)

    def nvmlDeviceGetUtilizationRates(self, h):
        return SimpleNamespace(gpu=self._val(self._g(h).util), memory=0)

    def nvmlDeviceGetEnforcedPowerLimit(self, h):
        return self._val(self._g(h).limit_mw)

    def nvmlDeviceGetPowerManagementLimitConstraints(self, h):
        return list(self._val(self._g(h).constraints_mw))

    def nvmlDeviceGetProcessUtilization(self, h, ts):
        return self._val(self._g(h).processes)


class Clock:
    def __init__(self):
        self.t = 10.0

    def __call__(self):
        return self.t


def test_volta_energy_counter_and_extras():
    g = FakeGpu("Tesla V100-SXM2-32GB", energy_mj=5_000_000, power_mw=120_000, util=80, temp_c=60,
                processes=[SimpleNamespace(pid=42, smUtil=50, timeStamp=7), SimpleNamespace(pid=42, smUtil=70, timeStamp=9)])
    nv, clock = FakeNvml([g]), Clock()
    src = NvmlSource(nv, clock=clock)
    g.energy_mj += 250_000
    clock.t += 2.0
    r = src.read()
    d = r.domains["gpu-0"]
    assert d.energy_j == pytest.approx(250.0)
    assert d.power_w == pytest.approx(125.0)
    assert d.source is SourceKind.MEASURED_NVML and "energy counter" in d.method
    assert d.temperature_k == pytest.approx(333.15)
    st = src.status()[0]
    assert st.mode == "energy-counter" and st.utilization == pytest.approx(0.8)
    assert (st.power_limit_w, st.min_power_limit_w, st.max_power_limit_w) == (300.0, 100.0, 300.0)
    assert st.process_share == {42: pytest.approx(0.6)}
    src.close()
    assert nv.calls == ["shutdown"]


def test_older_gpu_power_polls_integrated_by_trapezoid():
    g = FakeGpu("Tesla P100-PCIE-16GB", energy_mj=None, power_mw=100_000)
    nv, clock = FakeNvml([g]), Clock()
    src = NvmlSource(nv, clock=clock)
    g.power_mw = 200_000
    clock.t += 1.0
    assert src.read().domains["gpu-0"].energy_j == pytest.approx(150.0)
    clock.t += 2.0
    d = src.read().domains["gpu-0"]
    assert d.energy_j == pytest.approx(550.0)
    assert d.source is SourceKind.MEASURED_NVML and "trapezoid" in d.method
    st = src.status()[0]
    assert st.mode == "power-poll"
    assert st.errors["nvmlDeviceGetTotalEnergyConsumption"] == "NOT_SUPPORTED"
    assert st.errors["nvmlDeviceGetProcessUtilization"] == "NOT_SUPPORTED"


def test_not_supported_everywhere_is_reported_not_fatal():
    g = FakeGpu("GeForce GT 710", util=None, temp_c=None, limit_mw=None, constraints_mw=None)
    other = FakeGpu("A100-SXM4-80GB", energy_mj=1000)
    src = NvmlSource(FakeNvml([g, other]), clock=Clock())
    r = src.read()
    assert "gpu-0" not in r.domains and "gpu-1" in r.domains
    st = src.status()[0]
    assert st.mode == "none"
    assert st.errors["nvmlDeviceGetPowerUsage"] == "NOT_SUPPORTED"
    assert st.errors["nvmlDeviceGetTemperature"] == "NOT_SUPPORTED"


def test_utilization_only_gpu_is_modeled():
    g = FakeGpu("A100-SXM4-80GB", util=50)
    clock = Clock()
    src = NvmlSource(FakeNvml([g]), clock=clock)
    clock.t += 1.0
    d = src.read().domains["gpu-0"]
    # gpu_power.csv: A100-SXM4-80GB idle 85 W, limit 400 W -> 242.5 W at 50 %
    assert d.source is SourceKind.MODELED
    assert d.energy_j == pytest.approx(242.5)


def test_gpu_lost_mid_run_keeps_its_joules_and_is_flagged():
    g = FakeGpu("H100", energy_mj=0)
    other = FakeGpu("H100", energy_mj=0)
    clock = Clock()
    src = NvmlSource(FakeNvml([g, other]), clock=clock)
    g.energy_mj += 100_000
    other.energy_mj += 50_000
    clock.t += 1.0
    src.read()
    g.lost = True
    other.energy_mj += 50_000
    clock.t += 1.0
    r = src.read()
    assert r.domains["gpu-0"].energy_j == pytest.approx(100.0)
    assert "LOST" in r.domains["gpu-0"].method and r.domains["gpu-0"].power_w is None
    assert r.domains["gpu-1"].energy_j == pytest.approx(100.0)
    assert src.status()[0].lost and src.status()[0].errors["nvmlDeviceGetTotalEnergyConsumption"] == "GPU_IS_LOST"


def test_init_failures_give_reasons_and_detect_reports_them(tmp_path):
    with pytest.raises(NvmlUnavailable, match="no NVIDIA driver"):
        NvmlSource(FakeNvml([], init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND))
    with pytest.raises(NvmlUnavailable, match="no GPU"):
        NvmlSource(FakeNvml([]))
    with detect(tmp_path / "none", sysfs_root=tmp_path, nvml=FakeNvml([])) as det:
        c = det.candidate("nvml")
        assert not c.found and "no GPU" in c.reason
    with detect(tmp_path / "none", sysfs_root=tmp_path, nvml=FakeNvml([FakeGpu("H100", energy_mj=0)])) as det:
        assert det.candidate("nvml").chosen
        assert det.source().read().domains["gpu-0"].source is SourceKind.MEASURED_NVML
