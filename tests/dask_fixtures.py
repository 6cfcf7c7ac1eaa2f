"""Helpers the Dask tests share: a task that burns CPU, and waiting for a condition."""
from __future__ import annotations

import time


def busy(x, seconds=0.15):
    """Burn ``seconds`` of thread CPU time; return ``x``."""
    t = time.thread_time()
    while time.thread_time() - t < seconds:
        pass
    return x


def wait_for(pred, timeout=30.0, what="condition"):
    """Return once ``pred()`` is true; AssertionError naming ``what`` after ``timeout`` s."""
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
