"""RAPL reader over a fake powercap tree laid out as the kernel lays it out."""
from __future__ import annotations

import builtins
import os
from pathlib import Path

import pytest

from tao_core.telemetry import rapl
from tao_core.telemetry.base import SourceKind
from tao_core.telemetry.detect import detect
from tao_core.telemetry.rapl import RaplPermissionError, RaplSource, RaplUnavailable, discover_zones

MAX_UJ = 262143328850  # a real max_energy_range_uj value


def zone(path: Path, name: str, energy_uj: int, max_uj: int = MAX_UJ) -> Path:
    path.mkdir(parents=True)
    (path / "name").write_text(name + "\n")
    (path / "energy_uj").write_text(f"{energy_uj}\n")
    (path / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return path


def two_socket_tree(root: Path, *, flat_links: bool = True) -> dict[str, Path]:
    """intel-rapl:0 (package-0) with core and dram subzones, intel-rapl:1 (package-1) with
    dram; plus the flat symlinks /sys/class/powercap holds, when asked."""
    z = {
        "package-0": zone(root / "intel-rapl:0", "package-0", 1_000_000),
        "core-0": zone(root / "intel-rapl:0" / "intel-rapl:0:0", "core", 500_000),
        "dram-0": zone(root / "intel-rapl:0" / "intel-rapl:0:1", "dram", 200_000),
        "package-1": zone(root / "intel-rapl:1", "package-1", 3_000_000),
        "dram-1": zone(root / "intel-rapl:1" / "intel-rapl:1:0", "dram", 400_000),
    }
    if flat_links:
        os.symlink(root / "intel-rapl:0" / "intel-rapl:0:0", root / "intel-rapl:0:0")
        os.symlink(root / "intel-rapl:0" / "intel-rapl:0:1", root / "intel-rapl:0:1")
        os.symlink(root / "intel-rapl:1" / "intel-rapl:1:0", root / "intel-rapl:1:0")
    return z


def bump(p: Path, uj: int) -> None:
    v = int((p / "energy_uj").read_text())
    (p / "energy_uj").write_text(str(v + uj))


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_zones_names_and_parents(tmp_path):
    two_socket_tree(tmp_path)
    zones = {z.name: z for z in discover_zones(tmp_path)}
    assert set(zones) == {"package-0", "core-0", "dram-0", "package-1", "dram-1"}
    assert zones["core-0"].parent == "package-0"
    assert zones["dram-0"].parent is None  # DRAM is metered apart from the package
    assert zones["package-1"].parent is None
    assert zones["dram-1"].max_energy_range_uj == MAX_UJ


def test_reads_joules_per_domain_and_totals(tmp_path):
    z = two_socket_tree(tmp_path)
    clock = Clock()
    src = RaplSource(tmp_path, clock=clock)
    bump(z["package-0"], 10_000_000)
    bump(z["core-0"], 6_000_000)
    bump(z["dram-0"], 2_000_000)
    bump(z["package-1"], 20_000_000)
    clock.t += 2.0
    r = src.read()
    assert r.domains["package-0"].energy_j == pytest.approx(10.0)
    assert r.domains["core-0"].energy_j == pytest.approx(6.0)
    assert r.domains["package-1"].power_w == pytest.approx(10.0)
    assert r.domains["dram-1"].energy_j == 0.0
    assert r.domains["package-0"].source is SourceKind.MEASURED_RAPL
    # core-0 lies inside package-0: not counted twice
    assert r.total_energy_j() == pytest.approx(10 + 2 + 20)


def test_wraparound_between_two_reads(tmp_path):
    p = zone(tmp_path / "intel-rapl:0", "package-0", 900_000, max_uj=1_000_000)
    clock = Clock()
    src = RaplSource(tmp_path, clock=clock)
    (p / "energy_uj").write_text("150000")  # went past 1_000_000 and wrapped
    clock.t += 1.0
    r = src.read()
    assert r.domains["package-0"].energy_j == pytest.approx(0.25)
    assert src.wraps["package-0"] == 1
    (p / "energy_uj").write_text("350000")
    clock.t += 1.0
    assert src.read().domains["package-0"].energy_j == pytest.approx(0.45)


def test_frozen_counter_gives_zero_watts_and_is_flagged(tmp_path):
    p = zone(tmp_path / "intel-rapl:0", "package-0", 5_000_000)
    clock = Clock()
    src = RaplSource(tmp_path, clock=clock)
    clock.t += 1.0
    r = src.read()
    d = r.domains["package-0"]
    assert d.power_w == 0.0 and d.energy_j == 0.0
    assert "FROZEN" in d.method and "package-0" in src.frozen
    bump(p, 1_000_000)
    clock.t += 1.0
    d = src.read().domains["package-0"]
    assert "FROZEN" not in d.method and d.power_w == pytest.approx(1.0)


def _deny_energy_uj(monkeypatch):
    """PermissionError at the open of energy_uj, as for a non-root user since CVE-2020-8694
    (the tests run as root, where chmod would not stop the read)."""
    real_open = builtins.open

    def guarded_open(file, *args, **kwargs):
        if str(file).endswith("energy_uj"):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(rapl, "open", guarded_open, raising=False)


def test_permission_denied_gives_diagnosis_with_fixes(tmp_path, monkeypatch):
    two_socket_tree(tmp_path)
    _deny_energy_uj(monkeypatch)
    with pytest.raises(RaplPermissionError) as ei:
        RaplSource(tmp_path)
    diag = ei.value.diagnosis
    assert not diag.available and "permission denied" in diag.reason
    text = " ".join(diag.fixes)
    assert "udev" in text and "chmod g+r" in text and "privileged sampler" in text
    d2 = rapl.diagnose(tmp_path)
    assert not d2.available and d2.fixes


def test_detect_falls_back_to_estimator_on_permission_denied(tmp_path, monkeypatch):
    two_socket_tree(tmp_path)
    _deny_energy_uj(monkeypatch)
    with detect(tmp_path, use_nvml=False, sysfs_root=tmp_path) as det:
        rc, mc = det.candidate("rapl"), det.candidate("modeled")
        assert not rc.chosen and "permission denied" in rc.reason and rc.fixes
        assert mc.chosen
        r = det.source().read()
        assert {d.source for d in r.domains.values()} == {SourceKind.MODELED}


def test_detect_chooses_rapl_when_readable(tmp_path, monkeypatch):
    two_socket_tree(tmp_path)
    monkeypatch.setenv("TAO_POWERCAP_ROOT", str(tmp_path))
    with detect(use_nvml=False, sysfs_root=tmp_path) as det:
        assert det.candidate("rapl").chosen
        assert not det.candidate("modeled").chosen
        assert "package-1" in det.source().read().domains


def test_missing_root_and_empty_root(tmp_path):
    with pytest.raises(RaplUnavailable, match="no powercap tree"):
        RaplSource(tmp_path / "nope")
    with pytest.raises(RaplUnavailable, match="no RAPL zone"):
        RaplSource(tmp_path)


def test_psys_contains_packages_and_mmio_duplicate_skipped(tmp_path):
    zone(tmp_path / "intel-rapl:0", "package-0", 0)
    zone(tmp_path / "intel-rapl:0" / "intel-rapl:0:0", "core", 0)
    zone(tmp_path / "intel-rapl:0" / "intel-rapl:0:2", "dram", 0)
    zone(tmp_path / "intel-rapl:1", "psys", 0)
    zone(tmp_path / "intel-rapl-mmio:0", "package-0", 0)
    zones = {z.name: z for z in discover_zones(tmp_path)}
    assert set(zones) == {"package-0", "core-0", "dram-0", "psys"}
    assert zones["package-0"].parent == "psys" and zones["dram-0"].parent == "psys"
    assert zones["psys"].parent is None and zones["core-0"].parent == "package-0"


def _set(p: Path, text: str) -> None:
    (p / "energy_uj").write_text(text + "\n")


def test_reset_is_not_taken_as_a_wrap_and_its_interval_is_modeled(tmp_path):
    # 100.5 J, then 0: as a wrap that would be 262 kJ in 0.5 s (524 kW)
    p = zone(tmp_path / "intel-rapl:0", "package-0", 100_000_000)
    clock = Clock()
    src = RaplSource(tmp_path, clock=clock)
    _set(p, "100500000")
    clock.t += 0.5
    d = src.read().domains["package-0"]
    assert d.source is SourceKind.MEASURED_RAPL and d.power_w == pytest.approx(1.0)
    _set(p, "0")
    clock.t += 0.5
    d = src.read().domains["package-0"]
    assert d.source is SourceKind.MODELED and "RESET" in d.method and "as a wrap" in d.method
    assert d.energy_j == pytest.approx(0.5 + 0.5)  # 0.5 s more at the last measured 1 W
    assert src.resets["package-0"] == 1 and src.wraps["package-0"] == 0
    _set(p, "2000000")  # counting again from the reset
    clock.t += 1.0
    d = src.read().domains["package-0"]
    assert d.source is SourceKind.MEASURED_RAPL and d.energy_j == pytest.approx(3.0)
    assert d.power_w == pytest.approx(2.0) and "includes 0.5 J modeled" in d.method


def test_plausible_wrap_still_counts_as_measured(tmp_path):
    p = zone(tmp_path / "intel-rapl:0", "package-0", MAX_UJ - 10_000_000)
    clock = Clock()
    src = RaplSource(tmp_path, clock=clock)
    _set(p, "40000000")  # 50 J in 1 s across the wrap: 50 W
    clock.t += 1.0
    d = src.read().domains["package-0"]
    assert d.source is SourceKind.MEASURED_RAPL and d.energy_j == pytest.approx(50.0)
    assert src.wraps["package-0"] == 1 and src.resets["package-0"] == 0


@pytest.mark.parametrize("value", ["-5", str(10 ** 25), "abc", "12.5", "\u0661\u0662"])
def test_impossible_values_are_flagged_and_never_counted(tmp_path, value):
    p = zone(tmp_path / "intel-rapl:0", "package-0", 1_000_000)
    clock = Clock()
    src = RaplSource(tmp_path, clock=clock)
    _set(p, value)
    clock.t += 0.5
    d = src.read().domains["package-0"]
    assert "IMPOSSIBLE" in d.method and d.energy_j == 0.0 and d.power_w is None
    assert src.impossible["package-0"] == 1
    _set(p, "3000000")  # the next good value counts the whole second since the last one
    clock.t += 0.5
    d = src.read().domains["package-0"]
    assert d.source is SourceKind.MEASURED_RAPL and "IMPOSSIBLE" not in d.method
    assert d.energy_j == pytest.approx(2.0) and d.power_w == pytest.approx(2.0)


def test_forward_jump_above_the_ceiling_is_a_reset(tmp_path):
    p = zone(tmp_path / "intel-rapl:0", "package-0", 0)
    clock = Clock()
    src = RaplSource(tmp_path, clock=clock, max_power_w=500.0)
    _set(p, "10000000")
    clock.t += 1.0
    assert src.read().domains["package-0"].source is SourceKind.MEASURED_RAPL
    _set(p, str(10_000_000 + 600_000_000))  # 600 J in 1 s
    clock.t += 1.0
    d = src.read().domains["package-0"]
    assert d.source is SourceKind.MODELED and "jumped" in d.method and d.energy_j == pytest.approx(20.0)


def test_unusable_counters_at_open_are_left_out_with_the_reason(tmp_path):
    zone(tmp_path / "intel-rapl:0", "package-0", 5)
    bad = zone(tmp_path / "intel-rapl:1", "package-1", 5)
    _set(bad, "not-a-number")
    src = RaplSource(tmp_path)
    assert [z.name for z in src.zones] == ["package-0"]
    assert "not a whole number" in src.invalid["package-1"]
    assert "unusable: package-1" in rapl.diagnose(tmp_path).reason
    (tmp_path / "intel-rapl:0" / "energy_uj").write_bytes(b"\xff\xfe1")
    with pytest.raises(RaplUnavailable, match="no usable RAPL counter"):
        RaplSource(tmp_path)
    assert not rapl.diagnose(tmp_path).available


def test_hostile_name_and_range_files_do_not_break_discovery(tmp_path):
    p = zone(tmp_path / "intel-rapl:0", "package-0", 5)
    (p / "name").write_bytes(b"\xff\n\x00")
    (p / "max_energy_range_uj").write_text("-1")
    (z,) = discover_zones(tmp_path)
    assert z.name == "intel-rapl:0-0" and z.max_energy_range_uj is None  # the zone's folder name
    (p / "energy_uj").unlink()
    (p / "energy_uj").mkdir()  # a folder where the counter should be
    with pytest.raises(RaplUnavailable, match="cannot be read"):
        RaplSource(tmp_path)


def test_non_numeric_counter_no_longer_crashes_detect_or_the_monitor(tmp_path):
    from tao_core import EnergyMonitor

    p = zone(tmp_path / "intel-rapl:0", "package-0", 0)
    _set(p, "garbage")
    with detect(tmp_path, use_nvml=False, sysfs_root=tmp_path) as det:
        assert not det.candidate("rapl").chosen and "not a whole number" in det.candidate("rapl").reason
        assert det.candidate("modeled").chosen
    _set(p, "7")
    src = RaplSource(tmp_path)
    _set(p, "garbage")
    with EnergyMonitor(src, period_s=0.01) as mon:
        with mon.window("w") as w:
            pass
    assert "IMPOSSIBLE" in w.result.methods["package-0"] and w.result.energy_j["package-0"] == 0.0
