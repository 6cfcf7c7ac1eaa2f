"""tao_core imports neither ray nor distributed, not even lazily at import time."""
from __future__ import annotations

import subprocess
import sys
import textwrap


def test_tao_core_imports_no_engine():
    code = textwrap.dedent(
        """
        import importlib, pkgutil, sys
        import tao_core
        failed = []
        for m in pkgutil.walk_packages(tao_core.__path__, "tao_core."):
            try:
                importlib.import_module(m.name)
            except Exception as e:  # a module that fails to import is reported, not hidden
                failed.append(f"{m.name}: {e!r}")
        bad = sorted(n for n in sys.modules if n.split(".")[0] in ("ray", "distributed"))
        print("FAILED", failed)
        print("BAD", bad)
        assert not bad, bad
        assert "tao_core.control.controller" in sys.modules
        """
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
