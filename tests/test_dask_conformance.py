"""Dask distributed's own tests, a quick part of them, with TAO preloaded into every
scheduler they start (``engine-tests/distributed/run.sh`` of the shared test data beside
this checkout: it runs each module without and with ``tao_dask`` and lists the tests TAO
breaks). The whole set, and the tests allowed to differ, are in the README's Dask section.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("distributed")

RUN_SH = Path(__file__).resolve().parents[2] / "shared" / "engine-tests" / "distributed" / "run.sh"
QUICK = ["test_resources", "test_reschedule", "test_priorities", "test_worker_plugin"]


def _broken(out: Path, modules: list[str]) -> set[str]:
    r = subprocess.run(["bash", str(RUN_SH), sys.executable, *modules], capture_output=True, text=True,
                       timeout=800, env={**os.environ, "TAO_CONFORMANCE_OUT": str(out)})
    assert "broken by TAO:" in r.stdout, r.stdout[-4000:] + r.stderr[-2000:]
    return set((out / "broken.txt").read_text().split())


@pytest.mark.timeout(1800)
def test_distributed_own_tests_pass_with_tao_preloaded(tmp_path):
    if not RUN_SH.exists():
        pytest.skip(f"Dask distributed's own tests are not beside this checkout: {RUN_SH} is absent")
    pytest.importorskip("pytest_rerunfailures", reason="run.sh needs pytest-rerunfailures (the test extra)")
    broken = _broken(tmp_path / "first", QUICK)
    if broken:  # the machine may be loaded: a test broken by TAO fails again alone
        again = _broken(tmp_path / "again", sorted({b.split("::")[0] for b in broken}))
        broken &= again
    assert not broken, f"tests TAO breaks: {sorted(broken)}"
