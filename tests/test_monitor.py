"""EnergyMonitor windows over a RAPL reader on a fake powercap tree whose counters the test
moves between window boundaries."""
from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest

from tao_core import EnergyMonitor
from tao_core.monitor import RESULT_COLUMNS
from tao_core.telemetry.rapl import RaplSource


def zone(path: Path, name: str) -> Path:
    path.mkdir(parents=True)
    (path / "name").write_text(name)
    (path / "energy_uj").write_text("0")
    (path / "max_energy_range_uj").write_text("262143328850")
    return path


@pytest.fixture
def tree(tmp_path):
    pkg = zone(tmp_path / "intel-rapl:0", "package-0")
    core = zone(pkg / "intel-rapl:0:0", "core")
    dram = zone(pkg / "intel-rapl:0:1", "dram")

    def add(j_pkg: float, j_core: float = 0.0, j_dram: float = 0.0) -> None:
        for p, j in ((pkg, j_pkg), (core, j_core), (dram, j_dram)):
            v = int((p / "energy_uj").read_text())
            (p / "energy_uj").write_text(str(v + int(round(j * 1e6))))

    return tmp_path, add


def test_nested_and_overlapping_windows(tree):
    root, add = tree
    # a sampler period far longer than the test: results must come from boundary reads
    with EnergyMonitor(RaplSource(root), period_s=3600) as mon:
        mon.begin_window("outer")
        add(1)
        mon.begin_window("inner")
        add(2, 1, 0.5)
        inner = mon.end_window("inner")
        add(3)
        mon.begin_window("overlap")
        outer = mon.end_window("outer")
        add(4)
        overlap = mon.end_window("overlap")
    assert inner.energy_j["package-0"] == pytest.approx(2.0)
    assert inner.energy_j["core-0"] == pytest.approx(1.0)
    assert inner.total_energy_j == pytest.approx(2.5)  # package + dram; core is inside package
    assert outer.energy_j["package-0"] == pytest.approx(6.0)
    assert overlap.energy_j["package-0"] == pytest.approx(4.0)
    assert inner.sources["package-0"] == "measured-rapl"
    assert outer.start_s <= inner.start_s <= inner.end_s <= outer.end_s
    assert outer.average_power_w == pytest.approx(outer.total_energy_j / outer.time_s)


def test_context_manager_decorator_and_dataframe(tree):
    root, add = tree
    with EnergyMonitor(RaplSource(root), period_s=0.01) as mon:
        with mon.window("ctx") as w:
            add(5)
            time.sleep(0.05)  # let the sampler read in between: it must not change the result

        @mon.measure("step")
        def step(j):
            add(j)
            return j

        assert step(1) == 1 and step(2) == 2
        df = mon.to_dataframe()
        assert mon.sampler_cpu_s >= 0.0 and len(mon.timeline()) >= 3
    assert w.result.energy_j["package-0"] == pytest.approx(5.0)
    assert list(df.columns) == RESULT_COLUMNS
    pkg = df[df.domain == "package-0"].set_index("window")["energy_j"]
    assert pkg.to_dict() == {"ctx": pytest.approx(5.0), "step": pytest.approx(1.0), "step#1": pytest.approx(2.0)}
    assert set(df["source"]) == {"measured-rapl"}
    assert isinstance(w.result.to_dataframe(), pd.DataFrame)


def test_window_misuse_is_reported(tree):
    root, _ = tree
    with EnergyMonitor(RaplSource(root), start=False) as mon:
        mon.begin_window("a")
        with pytest.raises(ValueError, match="already open"):
            mon.begin_window("a")
        with pytest.raises(KeyError, match="not open"):
            mon.end_window("b")
        assert mon.open_windows == ["a"]
    with pytest.raises(ValueError, match="period_s"):
        EnergyMonitor(RaplSource(root), period_s=0)


def test_default_monitor_uses_detection_and_labels_modeled(tmp_path, monkeypatch):
    monkeypatch.setenv("TAO_POWERCAP_ROOT", str(tmp_path / "absent"))
    with EnergyMonitor(period_s=0.05) as mon:
        with mon.window("spin") as w:
            end = time.monotonic() + 0.2
            while time.monotonic() < end:
                pass
    assert w.result.sources["node"] == "modeled"
    assert w.result.energy_j["node"] > 0
