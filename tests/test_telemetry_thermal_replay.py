"""CPU temperature from fake hwmon / thermal trees; replay from CSV and JSON lines;
composite sources; detect() on this machine."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tao_core.errors import InputError
from tao_core.telemetry.base import DomainReading, Reading, SourceKind
from tao_core.telemetry.composite import CompositeSource
from tao_core.telemetry.detect import detect
from tao_core.telemetry.replay import ReplaySource, write_csv
from tao_core.telemetry.thermal import CpuThermal, diagnose_thermal


def hwmon(root: Path, n: int, name: str, temps: dict[int, tuple[str, int]]) -> None:
    d = root / "class" / "hwmon" / f"hwmon{n}"
    d.mkdir(parents=True)
    (d / "name").write_text(name + "\n")
    for i, (label, milli) in temps.items():
        (d / f"temp{i}_input").write_text(f"{milli}\n")
        if label:
            (d / f"temp{i}_label").write_text(label + "\n")


def test_coretemp_per_socket_in_kelvin(tmp_path):
    hwmon(tmp_path, 0, "acpitz", {1: ("", 30000)})
    hwmon(tmp_path, 1, "coretemp", {1: ("Package id 0", 55000), 2: ("Core 0", 53000)})
    hwmon(tmp_path, 2, "coretemp", {1: ("Package id 1", 61500)})
    th = CpuThermal(tmp_path)
    assert th.read_k() == {"cpu-0": pytest.approx(328.15), "cpu-1": pytest.approx(334.65)}
    assert th.max_k() == pytest.approx(334.65)


def test_k10temp_prefers_tdie(tmp_path):
    hwmon(tmp_path, 0, "k10temp", {1: ("Tctl", 70000), 2: ("Tdie", 60000)})
    assert CpuThermal(tmp_path).read_k() == {"cpu-0": pytest.approx(333.15)}


def test_thermal_zone_fallback_and_diagnosis(tmp_path):
    assert not diagnose_thermal(tmp_path).available
    z = tmp_path / "class" / "thermal" / "thermal_zone0"
    z.mkdir(parents=True)
    (z / "type").write_text("x86_pkg_temp\n")
    (z / "temp").write_text("45000\n")
    d = diagnose_thermal(tmp_path)
    assert d.available and "318.1 K" in d.reason
    assert CpuThermal(tmp_path).read_k() == {"cpu": pytest.approx(318.15)}


def _readings():
    out = []
    for i, t in enumerate([0.0, 1.0, 3.0]):
        out.append(Reading(t, {
            "package-0": DomainReading("package-0", 10.0 * i, SourceKind.MEASURED_RAPL, "powercap", power_w=10.0, uncertainty=0.05),
            "core-0": DomainReading("core-0", 5.0 * i, SourceKind.MEASURED_RAPL, "powercap", parent="package-0"),
        }))
    return out


def test_csv_round_trip_labels_replay(tmp_path):
    p = tmp_path / "r.csv"
    write_csv(p, _readings())
    src = ReplaySource.from_csv(p)
    got = [src.read() for _ in range(4)]
    assert [r.t_s for r in got] == [0.0, 1.0, 3.0, 3.0]
    d = got[2].domains["package-0"]
    assert d.energy_j == 20.0 and d.source is SourceKind.REPLAY and "measured-rapl" in d.method
    assert got[2].domains["core-0"].parent == "package-0"
    assert got[2].total_energy_j() == 20.0
    kept = ReplaySource.from_csv(p, keep_source=True).read()
    assert kept.domains["package-0"].source is SourceKind.MEASURED_RAPL


def test_csv_bad_input_names_the_problem(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("t_s,energy_j\n0,1\n")
    with pytest.raises(InputError, match="domain"):
        ReplaySource.from_csv(p)
    p.write_text("t_s,domain,energy_j\n0,node,5\n1,node,4\n")
    with pytest.raises(InputError, match="cumulative"):
        ReplaySource.from_csv(p)
    p.write_text("t_s,domain,energy_j\n0,node,x\n")
    with pytest.raises(InputError, match="row 2"):
        ReplaySource.from_csv(p)


def test_realtime_replay_interpolates():
    t = [100.0]
    src = ReplaySource(_readings(), realtime=True, clock=lambda: t[0])
    t[0] = 102.0  # file time 2.0: between 10 J at 1 s and 20 J at 3 s
    r = src.read()
    assert r.t_s == 102.0 and r.domains["package-0"].energy_j == pytest.approx(15.0)


def test_jsonl_from_tao_monitor(tmp_path):
    p = tmp_path / "m.jsonl"
    lines = [
        {"t_s": 1.0, "domains": {"package-0": {"energy_j": 5.0, "power_w": 5.0, "source": "measured-rapl"},
                                  "core-0": {"energy_j": 2.0, "power_w": 2.0, "source": "measured-rapl"}}},
        {"t_s": 2.0, "domains": {"package-0": {"energy_j": 9.0, "power_w": 4.0, "source": "measured-rapl"},
                                  "core-0": {"energy_j": 3.0, "power_w": 1.0, "source": "measured-rapl"}}},
    ]
    p.write_text("".join(json.dumps(x) + "\n" for x in lines))
    src = ReplaySource.from_jsonl(p, keep_source=True)
    src.read()
    r = src.read()
    assert r.total_energy_j() == 9.0 and r.domains["core-0"].parent == "package-0"
    assert r.domains["package-0"].source is SourceKind.MEASURED_RAPL


def test_composite_merges_and_attaches_temperature(tmp_path):
    hwmon(tmp_path, 0, "coretemp", {1: ("Package id 0", 50000)})
    a = ReplaySource(_readings())
    b = ReplaySource([Reading(0.0, {"gpu-0": DomainReading("gpu-0", 1.0, SourceKind.MEASURED_NVML, "nvml")})])
    r = CompositeSource([a, b], thermal=CpuThermal(tmp_path)).read()
    assert set(r.domains) == {"package-0", "core-0", "gpu-0"}
    assert r.domains["package-0"].temperature_k == pytest.approx(323.15)
    assert r.domains["gpu-0"].temperature_k is None


def test_detect_on_this_kind_of_machine_reports_every_candidate(tmp_path):
    with detect(tmp_path / "no-powercap", sysfs_root=tmp_path, use_nvml=True) as det:
        names = [c.name for c in det.candidates]
        assert names == ["rapl", "pyrapl", "nvml", "thermal", "modeled"]
        assert all(c.reason for c in det.candidates)
        assert "no powercap tree" in det.candidate("rapl").reason
        assert det.candidate("modeled").chosen
        assert det.to_dict()["chosen"][0] == "modeled"


@pytest.mark.parametrize("row,needle", [
    ("1,node,nan", "row 3: energy_j: 'nan' is not a finite number"),
    ("inf,node,5", "row 3: t_s: 'inf' is not a finite number"),
    ("1,node,-5", "row 3: energy_j: '-5' is out of range"),
    ("1,no\x01de,5", "row 3: domain: 'no\\x01de' holds control characters"),
    ("1,node," + "5" * 140_000, "row 3: malformed CSV (a field is longer than 131072"),
])
def test_csv_hostile_rows_name_row_and_field(tmp_path, row, needle):
    p = tmp_path / "r.csv"
    p.write_text(f"t_s,domain,energy_j\n0,node,1\n{row}\n")
    with pytest.raises(InputError) as ei:
        ReplaySource.from_csv(p)
    assert needle in str(ei.value) and "\n" not in str(ei.value)


@pytest.mark.parametrize("line,needle", [
    ('{"t_s": 1, "domains": {"node": {"energy_j": NaN}}}', "not a JSON number"),
    ('{"t_s": 1, "domains": {"node": {"energy_j": 1e400}}}', "energy_j: inf is not a finite number"),
    ('{"t_s": 1, "domains": ' + "[" * 5000 + "]" * 5000 + "}", "nested too deeply"),
    ('{"t_s": 1, "domains": {"node": 5}}', "expected an object with energy_j"),
    ('[1, 2]', "not a tao monitor JSON line"),
    ('{"t_s": 1, "domains": {"node": {"energy_j": 1, "power_w": -3}}}', "power_w: -3 is out of range"),
])
def test_jsonl_hostile_lines_name_the_line(tmp_path, line, needle):
    p = tmp_path / "m.jsonl"
    p.write_text('{"t_s": 0, "domains": {"node": {"energy_j": 0}}}\n' + line + "\n")
    with pytest.raises(InputError) as ei:
        ReplaySource.from_jsonl(p)
    assert "line 2" in str(ei.value) and needle in str(ei.value) and "\n" not in str(ei.value)


def test_write_csv_refuses_what_is_not_a_regular_file(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (tmp_path / "link.csv").symlink_to(victim)
    with pytest.raises(InputError, match="symbolic link"):
        write_csv(tmp_path / "link.csv", _readings())
    assert victim.read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.csv", "victim"]
