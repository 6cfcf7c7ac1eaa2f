"""The shipped power data (TDP table, SPECpower_ssj2008 results, generation shapes), the
node-type catalogue and the one JSON form of NodeType."""
from __future__ import annotations

import csv
import math
import re
from importlib import resources

import pytest

from tao_core.control.types import NodeType
from tao_core.errors import InputError
from tao_core.power.catalog import least_efficient_first, named_server, node_type_for, specpower_node_type, watts_per_work
from tao_core.power.cpu_tdp import cpu_tdp_table, lookup_tdp, normalize_model
from tao_core.power.curve import PowerCurve
from tao_core.power.families import cpu_generation, shape_for, shapes
from tao_core.power.node_json import node_type_from_dict, node_type_to_dict
from tao_core.power.server_model import calibration
from tao_core.power.specpower import named_curves


def rows(table: str) -> list[dict[str, str]]:
    return list(csv.DictReader(resources.files("tao_core").joinpath(table).read_text().splitlines()))


def test_every_tdp_row_is_sourced_and_plausible():
    table = rows("data/cpu_tdp.csv")
    assert len(table) >= 300
    for r in table:
        assert r["source"].startswith(("Intel ARK product comparison export", "AMD processor specifications export"))
        assert 5 <= float(r["tdp_w"]) <= 500, r
        if r["cores"] and r["threads"]:
            assert int(r["threads"]) >= int(r["cores"]) >= 1, r


@pytest.mark.parametrize("reported, model, tdp", [
    ("AMD EPYC 7713P 64-Core Processor", "EPYC 7713P", 225),
    ("AMD EPYC 7763 64-Core Processor", "EPYC 7763", 280),
    ("Intel(R) Xeon(R) CPU E5-2699 v4 @ 2.20GHz", "Xeon E5-2699 v4", 145),
    ("Intel(R) Xeon(R) CPU E5-2670 0 @ 2.60GHz", "Xeon E5-2670", 115),
    ("Intel(R) Xeon(R) Platinum 8380 CPU @ 2.30GHz", "Xeon Platinum 8380", 270),
    ("AMD Ryzen 9 5950X 16-Core Processor", "Ryzen 9 5950X", 105),
])
def test_model_names_as_linux_reports_them_match_the_table(reported, model, tdp):
    t = lookup_tdp(reported)
    assert t is not None and t.model == model and t.tdp_w == tdp


def test_unknown_and_partial_names_do_not_match():
    assert lookup_tdp("Intel(R) Xeon(R) Processor") is None
    assert lookup_tdp("AMD EPYC 77 Processor") is None
    assert normalize_model("Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz") == "xeon gold 6248"
    assert len(cpu_tdp_table()) >= 300


def test_specpower_results_are_cited_and_rise_with_load():
    table = rows("data/specpower_results.csv")
    assert len(table) >= 300
    for r in table:
        assert re.fullmatch(r"power_ssj2008-20\d{6}-\d{5}", r["result"]), r["result"]
        pts = [float(r[f"w_{p}"]) for p in range(0, 101, 10)]
        assert all(b >= a for a, b in zip(pts, pts[1:])) and pts[0] > 0
    recent = [r for r in table if int(r["hw_available"][-4:]) >= 2018 and re.search(r"EPYC|Platinum|Gold|Silver", r["cpu"])]
    assert len(recent) >= 100


def test_old_curves_kept_for_the_benchmarks():
    c = named_curves()["IbmX3550XeonX5675"]
    assert c.curve.points_w == (58.4, 98, 109, 118, 128, 140, 153, 170, 189, 205, 222) and c.sockets == 2
    assert specpower_node_type("IbmX3250XeonX3470", name="eff", cpus=4).power_curve.idle_w == 41.6
    assert specpower_node_type("HpProLiantMl110G3PentiumD930").cpus == 2


def test_generation_shapes_old_servers_idle_near_half_modern_near_a_fifth():
    s = shapes()
    assert 0.40 < s["legacy"].idle_fraction < 0.55
    for gen in ("xeon-e5-v3-v4", "xeon-scalable-1", "xeon-scalable-2", "xeon-scalable-3", "epyc-7002", "epyc-7003"):
        assert 0.10 <= s[gen].idle_fraction <= 0.30, gen
        assert len(s[gen].results) >= 9 and s[gen].fractions[-1] == 1.0
        assert all(b >= a for a, b in zip(s[gen].fractions, s[gen].fractions[1:]))
    assert shape_for("epyc-9004+").borrowed_from == "epyc-7003"
    assert cpu_generation("AMD EPYC 9654 96-Core Processor") == "epyc-9004+"
    assert cpu_generation("Intel(R) Xeon(R) Platinum 8480+") == "xeon-scalable-4+"


def test_tdp_model_calibration_is_fitted_to_the_results():
    cal = calibration()
    assert cal.results >= 150
    assert 0.4 < cal.cpu_factor < 1.2 and 0 < cal.platform_w < 150
    assert 0.1 < cal.tdp_rms < cal.per_thread_rms < 1.0


def test_node_type_for_names_tdp_and_errors():
    t = NodeType("mine", cpus=8, power_curve=PowerCurve.from_tdp(100))
    assert node_type_for(t, 4) is t
    assert node_type_for("tdp:200", 4).peak_w == 200 and node_type_for("tdp:200", 4).cpus == 4
    r = node_type_for("power_ssj2008-20210221-01065", 64)
    assert r.power_curve.idle_w == 58.0 and r.power_curve.peak_w == 272.0
    with pytest.raises(InputError, match="tdp:<peak watts>"):
        node_type_for("tdp:lots", 1)
    with pytest.raises(InputError, match="unknown; use a SPECpower_ssj2008 result id"):
        node_type_for("NoSuchServer", 1)
    with pytest.raises(InputError, match="IbmX3550XeonX5675"):
        named_server("x")


def test_efficiency_order_least_efficient_first():
    a = NodeType("a", cpus=4, power_curve=PowerCurve.from_tdp(400))   # 100 W per CPU
    b = NodeType("b", cpus=8, power_curve=PowerCurve.from_tdp(400))   # 50
    c = NodeType("c", cpus=4, power_curve=PowerCurve.from_tdp(400), speed=4.0)  # 25
    assert watts_per_work(b) == 50.0
    items = [("x", b), ("y", None), ("z", a), ("w", c)]
    assert [n for n, _ in least_efficient_first(items, lambda it: it[1])] == ["z", "x", "w", "y"]


FULL = NodeType("gpu-box", cpus=32, power_curve=PowerCurve.from_tdp(500), gpus=4, gpu_idle_w=60, gpu_max_w=400,
                gpu_power_limit_w=300, speed=1.5, boot_s=90, boot_w=250, off_w=12)


def test_json_form_round_trips_every_field_gpu_and_boot_included():
    d = node_type_to_dict(FULL)
    assert set(d) == {"name", "cpus", "power_curve_w", "gpus", "gpu_idle_w", "gpu_max_w", "gpu_power_limit_w",
                      "speed", "boot_s", "boot_w", "off_w"}
    assert node_type_from_dict(d) == FULL
    assert node_type_from_dict({"name": "m", "cpus": 2, "power_curve_w": list(range(11))}) == NodeType(
        "m", cpus=2, power_curve=PowerCurve(tuple(float(i) for i in range(11))))
    assert node_type_from_dict(dict(d, count=3), allow=("count",)) == FULL


@pytest.mark.parametrize("change, message", [
    ({"colour": "red"}, "unknown field"),
    ({"name": ""}, "name: missing"),
    ({"cpus": 0}, r"cpus: 0 must be > 0"),
    ({"cpus": True}, "is not a number"),
    ({"gpus": 1.5}, "whole number"),
    ({"power_curve_w": [1] * 10}, "expected 11 numbers"),
    ({"power_curve_w": [5, 4] + [6] * 9}, "must not decrease"),
    ({"gpu_max_w": 10}, "below gpu_idle_w"),
    ({"off_w": -1}, "must be >= 0"),
    ({"boot_w": math.inf}, "not finite"),
])
def test_json_form_errors_name_the_field(change, message):
    with pytest.raises(InputError, match=message):
        node_type_from_dict(dict(node_type_to_dict(FULL), **change), "cluster.json: node_types[0]")
