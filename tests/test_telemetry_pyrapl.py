"""pyRAPL backend: chosen only explicitly, and a clear reason when it cannot read RAPL."""
from __future__ import annotations

import os

import pytest

from tao_core.telemetry.detect import detect
from tao_core.telemetry.pyrapl_backend import PyRaplSource, PyRaplUnavailable


@pytest.mark.skipif(os.path.isdir("/sys/class/powercap/intel-rapl"), reason="this machine has RAPL")
def test_pyrapl_without_rapl_gives_clear_reason(tmp_path):
    with pytest.raises(PyRaplUnavailable, match="pyRAPL cannot read RAPL"):
        PyRaplSource()
    with detect(tmp_path / "none", sysfs_root=tmp_path, use_nvml=False, prefer_pyrapl=True) as det:
        c = det.candidate("pyrapl")
        assert not c.chosen and "pyRAPL cannot read RAPL" in c.reason
        assert det.candidate("modeled").chosen and not det.measured


def test_pyrapl_not_chosen_unless_asked(tmp_path):
    with detect(tmp_path / "none", sysfs_root=tmp_path, use_nvml=False) as det:
        c = det.candidate("pyrapl")
        assert not c.chosen and ("explicitly" in c.reason or "not installed" in c.reason)
