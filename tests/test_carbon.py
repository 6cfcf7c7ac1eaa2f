"""Carbon-intensity signals and the cleanest start."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tao_core.carbon import ConstantCarbon, ProviderCarbon, SeriesCarbon, best_start
from tao_core.errors import InputError

DAY = SeriesCarbon([0, 6, 12, 18], [400, 200, 100, 300], source="test")  # hours as seconds, for brevity


def test_step_function_and_means() -> None:
    assert DAY.intensity(-5) == 400 and DAY.intensity(6) == 200 and DAY.intensity(100) == 300
    assert DAY.mean_intensity(0, 12) == pytest.approx(300)
    assert DAY.mean_intensity(5, 7) == pytest.approx(300)
    assert DAY.emissions_g(3.6e6, 12, 18) == pytest.approx(100)  # 1 kWh at 100 g/kWh
    assert ConstantCarbon(50).mean_intensity(0, 99) == 50


def test_best_start_moves_to_cleanest_window_within_deadline() -> None:
    s, mean = best_start(DAY, earliest_s=0, latest_s=20, duration_s=4)
    assert (s, mean) == (12, 100)
    s, mean = best_start(DAY, earliest_s=0, latest_s=8, duration_s=4)  # cannot reach noon
    assert s == 6 and mean == 200
    s, _ = best_start(ConstantCarbon(100), earliest_s=3, latest_s=9, duration_s=1)
    assert s == 3  # no gain: run now


@settings(max_examples=80, deadline=None)
@given(st.lists(st.floats(0, 1000), min_size=1, max_size=12), st.floats(0, 50), st.floats(0, 50), st.floats(0.1, 30))
def test_best_start_is_optimal_and_in_window(vals: list[float], earliest: float, span: float, dur: float) -> None:
    sig = SeriesCarbon(np.arange(len(vals)) * 5.0, vals)
    s, mean = best_start(sig, earliest_s=earliest, latest_s=earliest + span, duration_s=dur)
    assert earliest <= s <= earliest + span
    grid = np.linspace(earliest, earliest + span, 200)
    assert mean <= min(sig.mean_intensity(g, g + dur) for g in grid) + 1e-6


def test_csv_loader(tmp_path: Path) -> None:
    p = tmp_path / "ci.csv"
    p.write_text("timestamp,g_co2e_per_kwh\n2026-01-01T00:00:00,300\n2026-01-01T01:00:00,120\n")
    sig = SeriesCarbon.from_csv(p)
    assert sig.intensity(3600) == 120 and sig.source == "csv:ci.csv"
    bad = tmp_path / "bad.csv"
    bad.write_text("t_s,g_co2e_per_kwh\n0,100\n10,oops\n")
    with pytest.raises(InputError, match="row 3"):
        SeriesCarbon.from_csv(bad)
    hdr = tmp_path / "hdr.csv"
    hdr.write_text("time,value\n0,1\n")
    with pytest.raises(InputError, match="header must have g_co2e_per_kwh"):
        SeriesCarbon.from_csv(hdr)
    with pytest.raises(InputError, match="strictly increase"):
        SeriesCarbon([0, 0], [1, 2])


def test_provider_refresh_and_failure() -> None:
    now = [0.0]
    calls = []

    class Prov:
        name = "fake-grid"

        def forecast(self, now_s: float) -> SeriesCarbon:
            calls.append(now_s)
            if len(calls) == 2:
                raise ConnectionError("service down")
            return SeriesCarbon([now_s], [100 + len(calls)])

    errors = []
    sig = ProviderCarbon(Prov(), refresh_s=60, clock=lambda: now[0], on_error=errors.append)
    assert sig.intensity(0) == 101
    now[0] = 30
    assert sig.intensity(30) == 101 and len(calls) == 1
    now[0] = 61
    assert sig.intensity(61) == 101 and len(errors) == 1  # kept the last good forecast
    now[0] = 200
    assert sig.intensity(200) == 103


@pytest.mark.parametrize("row,needle", [
    ("10,nan", "row 3: g_co2e_per_kwh: 'nan' is not a finite number"),
    ("inf,100", "row 3: t_s: 'inf' is not a finite number"),
    ("10,1e9", "row 3: g_co2e_per_kwh: '1e9' is out of range"),
    ("10," + "1" * 140_000, "row 3: malformed CSV (a field is longer than 131072"),
    ("10", "row 3: 1 fields, the header has 2"),
])
def test_csv_hostile_rows_name_the_row(tmp_path: Path, row: str, needle: str) -> None:
    p = tmp_path / "ci.csv"
    p.write_text(f"t_s,g_co2e_per_kwh\n0,100\n{row}\n")
    with pytest.raises(InputError) as ei:
        SeriesCarbon.from_csv(p, field="--carbon")
    assert needle in str(ei.value) and str(ei.value).startswith(f"--carbon {p}") and "\n" not in str(ei.value)


def test_csv_bad_timestamp_and_encoding(tmp_path: Path) -> None:
    p = tmp_path / "ci.csv"
    p.write_text("timestamp,g_co2e_per_kwh\n2026-01-01T00:00:00,300\nyesterday,120\n")
    with pytest.raises(InputError, match="row 3: timestamp: 'yesterday' is not an ISO 8601 time"):
        SeriesCarbon.from_csv(p)
    p.write_text("timestamp,g_co2e_per_kwh\n2026-01-01T00:00:00,300\n2026-01-01T01:00:00+00:00,120\n")
    with pytest.raises(InputError, match="row 3: timestamp"):  # naive and aware times do not mix
        SeriesCarbon.from_csv(p)
    p.write_bytes(b"t_s,g_co2e_per_kwh\n0,\xff\n")
    with pytest.raises(InputError, match="not UTF-8"):
        SeriesCarbon.from_csv(p)
    with pytest.raises(InputError, match="carbon intensity: 'x' is not a number"):
        ConstantCarbon("x")
