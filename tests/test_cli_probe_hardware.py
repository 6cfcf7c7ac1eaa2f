"""``tao probe`` prints the discovered hardware and the model it leads to (text and
``--json``), here read from fake machines through ``TAO_HOST_ROOT``."""
from __future__ import annotations

import json

import pytest

from hardware_fixtures import ARM, R740
from tao_core.cli.main import main


@pytest.fixture
def env(monkeypatch, tmp_path):
    monkeypatch.setenv("TAO_POWERCAP_ROOT", str(tmp_path / "no-powercap"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return monkeypatch


def test_probe_text_shows_hardware_and_model(env, tmp_path, capsys):
    env.setenv("TAO_HOST_ROOT", str(R740.lay(tmp_path / "r740")))
    assert main(["probe"]) == 0
    out = capsys.readouterr().out
    assert "TAO telemetry probe" in out  # the telemetry part is unchanged
    hw = out[out.index("hardware:"):]
    assert "Intel(R) Xeon(R) Platinum 8280 CPU @ 2.70GHz (x86_64): 2 socket(s), 56 core(s), 112 thread(s)" in hw
    assert "bare-metal, DMI PowerEdge R740" in hw
    assert "node type  xeon-platinum-8280-2s-112t-192g (112 CPUs)" in hw
    assert "curve      [50, 114, 137, 159, 182, 208, 240, 277, 319, 376, 432] W" in hw
    assert "origin     discovered, uncertainty 10%" in hw
    assert "power_ssj2008-20190409-00952" in hw


def test_probe_json_has_the_hardware_section(env, tmp_path, capsys):
    env.setenv("TAO_HOST_ROOT", str(ARM.lay(tmp_path / "arm")))
    assert main(["probe", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert "domains" in doc
    hw = doc["hardware"]
    assert hw["cpu"]["model"] == "ARM Neoverse-N1" and hw["cpu"]["threads"] == 80
    assert hw["platform"]["kind"] == "bare-metal"
    assert hw["model"]["curve_origin"] == "discovered" and hw["model"]["cpu_method"] == "per-thread"
    assert hw["node_type"]["name"] == "arm-neoverse-n1-1s-80t-256g" and len(hw["node_type"]["power_curve_w"]) == 11


def test_detect_without_a_curve_models_the_discovered_hardware(tmp_path):
    """With nothing given and nothing measured, the estimator uses the curve of this
    machine's discovered hardware, and says so."""
    from tao_core.hardware import describe_this_node
    from tao_core.telemetry.detect import detect

    det = detect(powercap_root=tmp_path, use_nvml=False, sysfs_root=tmp_path)
    modeled = next(c for c in det.candidates if c.name == "modeled")
    want = describe_this_node(cpus=None)
    assert modeled.chosen and "discovered hardware" in modeled.reason and want.node_type.name in modeled.reason
    src = det.sources[0]
    assert src.power_curve.points_w == want.node_type.power_curve.points_w
    assert src.uncertainty == want.model.provenance.uncertainty
