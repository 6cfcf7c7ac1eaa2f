"""Actuators: dry run never writes, opt-in writes through the faked boundary and restores,
also when the process is interrupted; out-of-range values are refused."""
from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pynvml
import pytest

from tao_core.actuators import ActuatorError, CpuFrequencyCap, GpuPowerLimit


def make_cpufreq(root: Path, policies: int = 2, cur: int = 3_000_000) -> Path:
    """A cpufreq tree laid out like /sys/devices/system/cpu/cpufreq (values in kHz)."""
    for i in range(policies):
        p = root / f"policy{i}"
        p.mkdir(parents=True)
        (p / "cpuinfo_min_freq").write_text("800000\n")
        (p / "cpuinfo_max_freq").write_text("3500000\n")
        (p / "scaling_max_freq").write_text(f"{cur}\n")
    return root


class FakeGpu:
    def __init__(self, limit_mw: int, lo_mw: int, hi_mw: int, permitted: bool = True) -> None:
        self.limit_mw, self.lo_mw, self.hi_mw, self.permitted = limit_mw, lo_mw, hi_mw, permitted
        self.writes: list[int] = []


def fake_nvml(gpus: list[FakeGpu]) -> types.SimpleNamespace:
    """Stands in for the pynvml functions the actuator calls, raising pynvml's real error class."""

    def set_limit(h: FakeGpu, mw: int) -> None:
        if not h.permitted:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NO_PERMISSION)
        h.writes.append(mw)
        h.limit_mw = mw

    return types.SimpleNamespace(
        NVMLError=pynvml.NVMLError,
        NVML_ERROR_NO_PERMISSION=pynvml.NVML_ERROR_NO_PERMISSION,
        NVML_ERROR_NOT_SUPPORTED=pynvml.NVML_ERROR_NOT_SUPPORTED,
        nvmlInit=lambda: None,
        nvmlShutdown=lambda: None,
        nvmlDeviceGetCount=lambda: len(gpus),
        nvmlDeviceGetHandleByIndex=lambda i: gpus[i],
        nvmlDeviceGetPowerManagementLimit=lambda h: h.limit_mw,
        nvmlDeviceGetPowerManagementLimitConstraints=lambda h: (h.lo_mw, h.hi_mw),
        nvmlDeviceSetPowerManagementLimit=set_limit,
    )


def test_gpu_dry_run_never_writes_and_records() -> None:
    gpu = FakeGpu(300_000, 150_000, 300_000)
    events = []
    act = GpuPowerLimit(nvml=fake_nvml([gpu]), event_sink=events.append)
    change = act.set("gpu-0", 200)
    assert gpu.writes == [] and gpu.limit_mw == 300_000
    assert not change.applied and change.old == 300 and change.new == 200
    assert events[0].kind == "actuate" and events[0].detail["applied"] is False
    assert act.restore() == []


def test_gpu_apply_writes_and_restores() -> None:
    gpus = [FakeGpu(300_000, 150_000, 300_000), FakeGpu(250_000, 100_000, 250_000)]
    events = []
    with GpuPowerLimit(apply=True, nvml=fake_nvml(gpus), event_sink=events.append) as act:
        act.set("gpu-0", 200)
        act.set("gpu-0", 175)
        act.set("gpu-1", 125.5)
        assert act.read("gpu-0") == 175 and gpus[1].limit_mw == 125_500
    assert gpus[0].limit_mw == 300_000 and gpus[1].limit_mw == 250_000  # original values, not the middle one
    assert [e.reason for e in events].count("restored") == 2


@pytest.mark.parametrize("watts", [149.9, 300.1, 0])
def test_gpu_out_of_range_refused(watts: float) -> None:
    gpu = FakeGpu(300_000, 150_000, 300_000)
    act = GpuPowerLimit(apply=True, nvml=fake_nvml([gpu]))
    with pytest.raises(ActuatorError, match="outside the allowed range 150..300 W"):
        act.set("gpu-0", watts)
    assert gpu.writes == []


def test_gpu_permission_error_is_clear() -> None:
    act = GpuPowerLimit(apply=True, nvml=fake_nvml([FakeGpu(300_000, 150_000, 300_000, permitted=False)]))
    with pytest.raises(ActuatorError, match="no permission.*root"):
        act.set("gpu-0", 200)
    with pytest.raises(ActuatorError, match="no GPU named 'gpu-7'"):
        act.read("gpu-7")


def test_cpufreq_dry_run_and_apply(tmp_path: Path) -> None:
    root = make_cpufreq(tmp_path / "cpufreq")
    dry = CpuFrequencyCap(root=root)
    assert dry.targets() == ["policy0", "policy1"]
    dry.set("policy0", 2_000_000)
    assert (root / "policy0" / "scaling_max_freq").read_text().strip() == "3000000"
    with pytest.raises(ActuatorError, match="outside the allowed range"):
        dry.set("policy1", 4_000_000)
    with CpuFrequencyCap(apply=True, root=root) as act:
        act.set("policy1", 1_200_000)
        assert (root / "policy1" / "scaling_max_freq").read_text().strip() == "1200000"
    assert (root / "policy1" / "scaling_max_freq").read_text().strip() == "3000000"


def test_cpufreq_missing_tree(tmp_path: Path) -> None:
    with pytest.raises(ActuatorError, match="no cpufreq tree"):
        CpuFrequencyCap(root=tmp_path / "absent")


CHILD = textwrap.dedent("""
    import sys, time
    from tao_core.actuators import CpuFrequencyCap, restore_on_exit
    act = restore_on_exit(CpuFrequencyCap(apply=True, root=sys.argv[1]))
    act.set("policy0", 1_000_000)
    print("set", flush=True)
    time.sleep(60)
""")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_restored_when_interrupted(tmp_path: Path, sig: signal.Signals) -> None:
    root = make_cpufreq(tmp_path / "cpufreq", policies=1)
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(root)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "set"
        assert (root / "policy0" / "scaling_max_freq").read_text().strip() == "1000000"
        proc.send_signal(sig)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert (root / "policy0" / "scaling_max_freq").read_text().strip() == "3000000"
    assert proc.returncode == -sig


def test_cli_dry_run_apply_and_bad_value(tmp_path: Path) -> None:
    root = make_cpufreq(tmp_path / "cpufreq", policies=1)
    base = [sys.executable, "-m", "tao_core.cli.main", "actuate", "cpu-freq", "--cpufreq-root", str(root)]
    dry = subprocess.run(base + ["--policy", "0", "--khz", "1500000", "--json"], capture_output=True, text=True)
    assert dry.returncode == 0 and '"applied": false' in dry.stdout
    assert (root / "policy0" / "scaling_max_freq").read_text().strip() == "3000000"
    real = subprocess.run(base + ["--policy", "0", "--khz", "1500000", "--apply", "--hold", "0"],
                          capture_output=True, text=True)
    assert real.returncode == 0 and "3000000 -> 1500000 kHz" in real.stdout
    assert (root / "policy0" / "scaling_max_freq").read_text().strip() == "3000000"
    bad = subprocess.run(base + ["--policy", "0", "--khz", "99"], capture_output=True, text=True)
    assert bad.returncode == 2 and "outside the allowed range 800000..3500000 kHz" in bad.stderr


@pytest.mark.parametrize("flags,needle", [
    (["--policy", "0", "--khz", "1500000", "--apply", "--hold", "nan"], "--hold: 'nan' is not a finite number"),
    (["--policy", "0", "--khz", "1500000", "--apply", "--hold", "inf"], "--hold: 'inf' is not a finite number"),
    (["--policy", "0", "--khz", "1500000", "--apply", "--hold", "-1"], "--hold: '-1' is out of range"),
    (["--policy", "0", "--khz", "nan", "--apply", "--hold", "0"], "--khz: 'nan' is not a finite number"),
    (["--policy", "-1", "--khz", "1500000"], "--policy: '-1' is out of range"),
])
def test_cli_checks_every_flag_before_writing(tmp_path: Path, flags, needle) -> None:
    root = make_cpufreq(tmp_path / "cpufreq", policies=1)
    r = subprocess.run([sys.executable, "-m", "tao_core.cli.main", "actuate", "cpu-freq", "--cpufreq-root", str(root),
                        *flags], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stdout == "" and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert needle in r.stderr
    assert (root / "policy0" / "scaling_max_freq").read_text() == "3000000\n"  # never written, so nothing to restore


@pytest.mark.parametrize("name,text", [("cpuinfo_max_freq", "abc"), ("cpuinfo_min_freq", "nan"),
                                       ("scaling_max_freq", "\xff"), ("cpuinfo_max_freq", "")])
def test_cpufreq_attributes_that_are_not_frequencies(tmp_path: Path, name, text) -> None:
    root = make_cpufreq(tmp_path / "cpufreq", policies=1)
    (root / "policy0" / name).write_bytes(text.encode("latin-1"))
    act = CpuFrequencyCap(root=root, apply=True)
    with pytest.raises(ActuatorError, match=f"{name} of policy0 does not hold a frequency in kHz"):
        act.set("policy0", 1_500_000)
    assert act.changes == []


def test_cpufreq_ignores_folders_that_are_not_policies(tmp_path: Path) -> None:
    root = make_cpufreq(tmp_path / "cpufreq", policies=2)
    (root / "policyX").mkdir()
    (root / "policyX" / "scaling_max_freq").write_text("1\n")
    assert CpuFrequencyCap(root=root).targets() == ["policy0", "policy1"]


def test_gpu_index_must_name_a_gpu() -> None:
    act = GpuPowerLimit(nvml=fake_nvml([FakeGpu(300_000, 150_000, 300_000)]))
    with pytest.raises(ActuatorError, match="no GPU named 'gpu-1'"):
        act.read("gpu-1")
