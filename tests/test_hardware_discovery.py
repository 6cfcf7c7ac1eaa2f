"""Hardware discovery on fake machines (a /proc, /sys and DMI tree in a temp folder) and the
power model each leads to; GPUs through a stand-in for the pynvml functions."""
from __future__ import annotations

import pynvml
import pytest

from hardware_fixtures import (
    ARM, CONTAINER, EPYC, ICELAKE, OLD_XEON, R740, UNKNOWN, VM, FakeGpu, FakeNvml, Machine, write, x86_cpuinfo,
)
from tao_core.hardware import DriverGpus, NoGpus, NvmlGpus, describe_this_node, discover_hardware
from tao_core.power.families import shapes
from tao_core.power.provenance import CurveOrigin
from tao_core.power.server_model import MEMORY_W_PER_GB, calibration
from tao_core.power.specpower import named_curves


def describe(machine: Machine, tmp_path, **kw):
    return describe_this_node(root=machine.lay(tmp_path / "root"), store=None, **kw)


def test_old_xeon_two_sockets_gets_the_legacy_shape_and_a_per_thread_estimate(tmp_path):
    d = describe(OLD_XEON, tmp_path)
    cpu = d.hardware.cpu
    assert (cpu.sockets, cpu.cores, cpu.threads, cpu.arch) == (2, 12, 24, "x86_64")
    assert d.hardware.platform.kind == "bare-metal"
    assert d.model.cpu.generation == "legacy" and d.model.cpu.method == "per-thread"
    assert "not in the TDP table" in d.model.provenance.method
    t = d.node_type
    assert t.name == "xeon-x5670-2s-24t-96g" and t.cpus == 24
    # an old server idles near half its peak
    assert 0.40 < t.power_curve.idle_w / t.power_curve.peak_w < 0.55


def test_a_spec_tested_server_model_uses_its_measured_curve(tmp_path):
    d = describe(R740, tmp_path)
    assert d.model.cpu.method == "specpower-server"
    assert d.model.cpu.matched_result == "power_ssj2008-20190409-00952"
    measured = named_curves()["power_ssj2008-20190409-00952"].curve.points_w
    assert d.node_type.power_curve.points_w == pytest.approx(measured)  # 192 GiB, as tested
    assert d.model.provenance.origin is CurveOrigin.DISCOVERED and d.model.provenance.uncertainty == 0.10


def test_xeon_scalable_from_the_tdp_table(tmp_path):
    d = describe(ICELAKE, tmp_path)
    est, cal = d.model.cpu, calibration()
    assert est.method == "tdp-table" and est.tdp.tdp_w == 205 and est.generation == "xeon-scalable-3"
    assert "Intel ARK" in est.tdp.source
    peak = cal.cpu_factor * 2 * 205 + cal.platform_w + MEMORY_W_PER_GB * 504
    assert d.node_type.power_curve.peak_w == pytest.approx(peak)
    assert d.node_type.power_curve.idle_w / peak == pytest.approx(shapes()["xeon-scalable-3"].idle_fraction)
    assert d.model.provenance.uncertainty == pytest.approx(cal.tdp_rms)


def test_epyc_and_modern_servers_idle_near_a_fifth_of_peak(tmp_path):
    d = describe(EPYC, tmp_path)
    assert d.model.cpu.method == "tdp-table" and d.model.cpu.tdp.tdp_w == 280
    assert d.model.cpu.generation == "epyc-7003" and "AMD" in d.model.cpu.tdp.source
    assert 0.10 < d.node_type.power_curve.idle_w / d.node_type.power_curve.peak_w < 0.30


def test_vm_with_hypervisor_flag_is_a_share_of_its_host(tmp_path):
    d = describe(VM, tmp_path)
    p = d.hardware.platform
    assert p.kind == "vm" and p.virtual and p.hypervisor == "QEMU"
    assert any("hypervisor" in e for e in p.evidence)
    est, cal = d.model.cpu, calibration()
    assert est.host_share == pytest.approx(8 / 64)  # 8 vCPUs of a 64-thread Gold 6338 socket
    peak = (8 / 64) * (cal.cpu_factor * 205 + cal.platform_w) + MEMORY_W_PER_GB * 32
    assert d.node_type.power_curve.peak_w == pytest.approx(peak)


def test_arm_server_named_from_implementer_and_part(tmp_path):
    d = describe(ARM, tmp_path)
    cpu = d.hardware.cpu
    assert (cpu.model_name, cpu.arch, cpu.sockets, cpu.cores, cpu.threads) == ("ARM Neoverse-N1", "aarch64", 1, 80, 80)
    assert "/sys/devices/system/cpu" in cpu.sources
    assert d.model.cpu.method == "per-thread" and d.model.cpu.generation == "arm"
    assert "no SPECpower result of an Arm server" in d.model.provenance.method


def test_arm_model_name_from_lscpu_when_given(tmp_path):
    root = ARM.lay(tmp_path / "root")
    hw = discover_hardware(root, lscpu=lambda: {"Model name": "Neoverse-N1", "Socket(s)": "2"})
    # cpuinfo has no model name: lscpu's is used; the topology files still give the sockets
    assert hw.cpu.model_name == "Neoverse-N1" and hw.cpu.sockets == 1 and "lscpu" in hw.cpu.sources


def test_unknown_model_falls_back_to_a_per_thread_estimate_and_says_so(tmp_path):
    d = describe(UNKNOWN, tmp_path)
    assert d.model.cpu.method == "per-thread" and d.model.cpu.generation == "unknown"
    assert "'Hygon C86 7285 32-core Processor' not in the TDP table" in d.model.provenance.method
    cal = calibration()
    assert d.model.provenance.uncertainty == pytest.approx(cal.per_thread_rms)
    assert cal.per_thread_rms > cal.tdp_rms


def test_container_cpu_quota_makes_its_own_type_with_its_share(tmp_path):
    d = describe(CONTAINER, tmp_path)
    host = describe(EPYC, tmp_path / "host")
    p = d.hardware.platform
    assert p.kind == "container" and p.cpu_limit == 4
    assert d.node_type.cpus == 4 and d.node_type.name == host.node_type.name + "-c4"
    assert d.node_type.power_curve.peak_w == pytest.approx(host.node_type.power_curve.peak_w * 4 / 128)


def test_same_hardware_same_type_and_for_cpus(tmp_path):
    a = describe(R740, tmp_path / "a")
    b = describe(Machine(R740.cpuinfo, 187.49, dict(R740.dmi)), tmp_path / "b")  # a few MB less reserved
    assert a.node_type == b.node_type
    c = describe(Machine(R740.cpuinfo, 375.0, dict(R740.dmi)), tmp_path / "c")
    assert c.node_type.name != a.node_type.name
    part = a.for_cpus(2)
    assert part.node_type.cpus == 2 and part.node_type.name.endswith("-c2")
    assert part.node_type.power_curve.peak_w == pytest.approx(a.node_type.power_curve.peak_w * 2 / 112)


def test_missing_files_still_describe_something(tmp_path):
    (tmp_path / "empty").mkdir()
    d = describe_this_node(root=tmp_path / "empty", store=None)
    assert d.hardware.cpu.model_name == "unknown" and d.model.cpu.method == "per-thread"
    assert d.node_type.cpus == 1


# --------------------------------------------------------------------------- GPUs
def test_gpus_from_nvml_limits_and_mig(tmp_path):
    nv = FakeNvml([FakeGpu("NVIDIA A100-SXM4-80GB", enforced_mw=300_000, mig=(1, 1)) for _ in range(4)])
    d = describe(ICELAKE, tmp_path, nvml=nv)
    gpus = d.hardware.gpus
    assert isinstance(gpus, NvmlGpus) and len(gpus) == 4 and nv.calls == ["init", "shutdown"]
    g = gpus.devices[0]
    assert (g.default_limit_w, g.power_limit_w, g.min_limit_w, g.max_limit_w) == (400.0, 300.0, 100.0, 400.0)
    assert g.mig_enabled is True and g.uuid.startswith("GPU-")
    t = d.node_type
    assert (t.gpus, t.gpu_max_w, t.gpu_power_limit_w, t.gpu_idle_w) == (4, 400.0, 300.0, 85.0)  # idle: gpu_power.csv
    assert t.name.endswith("-4xa100-sxm4-80gb")


def test_gpu_without_mig_or_table_row(tmp_path):
    nv = FakeNvml([FakeGpu("Tesla T4", default_mw=70_000, enforced_mw=70_000, constraints_mw=(60_000, 70_000))])
    d = describe(EPYC, tmp_path, nvml=nv)
    g = d.hardware.gpus.devices[0]
    assert g.mig_enabled is None  # NOT_SUPPORTED
    assert d.node_type.gpu_max_w == 70.0 and d.node_type.gpu_idle_w == pytest.approx(0.25 * 70)
    assert d.node_type.gpu_power_limit_w is None
    assert "not in gpu_power.csv" in d.model.gpu.method


def test_no_nvml_driver_named_gpu_uses_the_table(tmp_path):
    machine = Machine(EPYC.cpuinfo, 251.0, extra={
        "/proc/driver/nvidia/gpus/0000:3b:00.0/information": "Model: \t\t Tesla V100-SXM2-32GB\nIRQ:   90\n"})
    nv = FakeNvml([], init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    d = describe(machine, tmp_path, nvml=nv)
    assert isinstance(d.hardware.gpus, DriverGpus) and "NVML init failed" in d.hardware.gpus.reason
    t = d.node_type
    assert (t.gpus, t.gpu_idle_w, t.gpu_max_w) == (1, 56.58, 300.0)


def test_no_gpu_is_a_null_object_with_a_reason(tmp_path):
    d = describe(EPYC, tmp_path, nvml=FakeNvml([], init_error=pynvml.NVML_ERROR_DRIVER_NOT_LOADED))
    assert isinstance(d.hardware.gpus, NoGpus) and len(d.hardware.gpus) == 0
    assert "NVML init failed" in d.hardware.gpus.reason and d.node_type.gpus == 0 and d.model.gpu is None


def test_platform_kinds_container_in_vm(tmp_path):
    root = tmp_path / "r"
    Machine(x86_cpuinfo("AMD EPYC 7763 64-Core Processor", 1, 4, 2, vendor="AuthenticAMD", hypervisor=True), 16.0,
            {"sys_vendor": "Amazon EC2", "product_name": "m6a.2xlarge"},
            extra={"/run/.containerenv": "", "/proc/1/cgroup": "0::/kubepods/burstable/pod1/abc\n"}).lay(root)
    p = discover_hardware(root).platform
    assert p.kind == "container-in-vm" and p.virtual and p.container
    assert p.dmi["sys_vendor"] == "Amazon EC2"


def test_cloud_bare_metal_is_not_a_vm(tmp_path):
    root = tmp_path / "r"
    Machine(x86_cpuinfo("Intel(R) Xeon(R) Platinum 8380 CPU @ 2.30GHz", 2, 40, 2), 512.0,
            {"sys_vendor": "Amazon EC2", "product_name": "m6i.metal"}).lay(root)
    assert discover_hardware(root).platform.kind == "bare-metal"


def test_cgroup_v1_quota(tmp_path):
    root = EPYC.lay(tmp_path / "r")
    write(root, "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "250000\n")
    write(root, "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n")
    assert discover_hardware(root).platform.cpu_limit == 2.5
