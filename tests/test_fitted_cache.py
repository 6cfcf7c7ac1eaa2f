"""A curve the controller fits to measured readings is kept per hardware model and starts
the next run calibrated; unusable cache files are ignored with a warning and rewritten."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from hardware_fixtures import R740
from tao_core.control.controller import Controller
from tao_core.control.types import NodeType
from tao_core.hardware import curve_provenance, describe_this_node
from tao_core.power.curve import PowerCurve
from tao_core.power.fitted_cache import (
    FORMAT, VERSION, FittedCurveStore, FittedCurveWarning, default_cache_dir, remember_fit,
)
from tao_core.power.provenance import CurveOrigin


def run_and_fit(desc, true_curve: PowerCurve, samples: int = 300):
    """One run: a controller over the discovered type, fed readings from ``true_curve``."""
    ctl = Controller([desc.node_type])
    ctl.add_node("n1", desc.node_type.name)
    rng = np.random.default_rng(7)
    for i in range(samples):
        u = float(rng.uniform(0, 1))
        ctl.observe_node("n1", now_s=float(i), utilization=u, power_w=float(true_curve.power_w(u)))
    return ctl.fitted_models()[desc.node_type.name]


@pytest.fixture
def machine(tmp_path):
    return R740.lay(tmp_path / "root")


def test_fit_persisted_and_reloaded_by_a_second_run(machine, tmp_path):
    store = FittedCurveStore(tmp_path / "cache")
    first = describe_this_node(root=machine, store=store)
    assert first.model.provenance.origin is CurveOrigin.DISCOVERED
    true = first.node_type.power_curve.scaled(1.2)  # the machine draws 20 % more than its SPECpower twin
    snap = run_and_fit(first, true)
    assert snap.samples == 300
    path = remember_fit(snap, first.hardware_key, "measured-rapl", store=store)
    assert path == store.path_for(first.hardware_key) and path.exists()
    doc = json.loads(path.read_text())
    assert doc["format"] == FORMAT and doc["version"] == VERSION and doc["source"] == "measured-rapl"

    second = describe_this_node(root=machine, store=store)
    assert second.model.provenance.origin is CurveOrigin.FITTED
    assert second.node_type.name == first.node_type.name
    assert second.node_type.power_curve.points_w == pytest.approx(snap.fitted_w)
    # the reloaded curve is closer to the machine than the discovered one
    err = lambda c: np.abs(np.array(c.points_w) - np.array(true.points_w)).mean()
    assert err(second.node_type.power_curve) < 0.25 * err(first.node_type.power_curve)
    assert "fitted to 300 measured-rapl samples" in second.model.provenance.method
    assert second.model.provenance.fit_samples == 300
    # and a controller of the second run starts from it
    assert Controller([second.node_type]).fitted_models()[second.node_type.name].declared_w == pytest.approx(snap.fitted_w)


def test_modeled_readings_and_short_fits_are_not_kept(machine, tmp_path):
    store = FittedCurveStore(tmp_path / "cache")
    d = describe_this_node(root=machine, store=store)
    snap = run_and_fit(d, d.node_type.power_curve, samples=300)
    assert remember_fit(snap, d.hardware_key, "modeled", store=store) is None
    short = run_and_fit(d, d.node_type.power_curve, samples=10)
    assert remember_fit(short, d.hardware_key, "measured-nvml", store=store) is None
    assert not store.path_for(d.hardware_key).exists()


@pytest.mark.parametrize("content, why", [
    ("{not json", "not valid JSON"),
    (json.dumps({"format": FORMAT, "version": VERSION + 1}), "version 2"),
    (json.dumps({"format": "something-else"}), "not a tao-fitted-curve file"),
    (None, "points_w"),
])
def test_unusable_cache_file_is_ignored_with_a_warning_and_rewritten(machine, tmp_path, content, why):
    store = FittedCurveStore(tmp_path / "cache")
    d = describe_this_node(root=machine, store=None)
    path = store.path_for(d.hardware_key)
    path.parent.mkdir(parents=True)
    if content is None:  # the right format and version, a broken curve
        content = json.dumps({"format": FORMAT, "version": VERSION, "hardware_key": d.hardware_key,
                              "points_w": [1, 2, 3], "samples": 40})
    path.write_text(content)
    with pytest.warns(FittedCurveWarning, match=why):
        again = describe_this_node(root=machine, store=store)
    assert again.model.provenance.origin is CurveOrigin.DISCOVERED
    snap = run_and_fit(d, d.node_type.power_curve.scaled(0.9))
    remember_fit(snap, d.hardware_key, "measured-rapl", store=store)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert describe_this_node(root=machine, store=store).model.provenance.origin is CurveOrigin.FITTED


def test_default_cache_folder_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "tao" / "curves"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "tao" / "curves"


def test_curve_provenance_declared_discovered_fitted(machine, tmp_path):
    declared = NodeType("mine", cpus=4, power_curve=PowerCurve.from_tdp(100))
    p = curve_provenance(declared)
    assert p.origin is CurveOrigin.DECLARED and p.to_dict()["curve_origin"] == "declared"
    assert curve_provenance(NodeType("tdp:100", cpus=4, power_curve=PowerCurve.from_tdp(100))).uncertainty == 0.25
    d = describe_this_node(root=machine, store=None)
    assert curve_provenance(d.node_type, d).origin is CurveOrigin.DISCOVERED
    snap = run_and_fit(d, d.node_type.power_curve.scaled(1.1))
    fitted = curve_provenance(d.node_type, d, snapshot=snap, source="measured-rapl")
    assert fitted.origin is CurveOrigin.FITTED and fitted.fit_samples == 300
    assert curve_provenance(d.node_type, d, snapshot=snap, source="modeled").origin is CurveOrigin.DISCOVERED
    rec = fitted.to_dict()
    assert set(rec) == {"curve_origin", "curve_method", "curve_uncertainty", "hardware_key", "fit_source", "fit_samples"}
