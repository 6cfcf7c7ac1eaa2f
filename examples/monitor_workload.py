"""What this machine offers for power telemetry, then a CPU workload measured in
named energy windows.

1. ``tao probe``: each telemetry source found or not, chosen or not, and why.
2. An EnergyMonitor (sampler every 0.5 s) over the chosen sources plus a virtual node made
   of this process alone (the estimator in process-set mode: a 1-CPU node with a 100 W peak
   curve), so the busy phase shows even when other programs keep the machine busy. Three
   windows: the whole run, an idle phase and a busy phase (numpy work in this process), the
   busy one measured by a decorator. Every figure is printed with its source label
   (measured-rapl, measured-nvml, modeled) and method. Takes about 10 seconds.
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np

from tao_core import EnergyMonitor, detect
from tao_core.telemetry.composite import CompositeSource
from tao_core.telemetry.estimator import ModeledSource
from tao_core.cli.main import main as tao_main


def busy(seconds: float) -> int:
    """Matrix products for ``seconds`` seconds; returns how many were done."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((256, 256))
    n, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        a = np.tanh(a @ a)
        n += 1
    return n


def main() -> int:
    print("$ tao probe")
    tao_main(["probe"])
    print()
    det = detect()
    this_process = ModeledSource.from_tdp(100.0, cpus=1, processes=[os.getpid()], name="this-process")
    source = CompositeSource(det.sources + [this_process], thermal=det.thermal)
    with det, EnergyMonitor(source, period_s=0.5) as mon:
        timed_busy = mon.measure("busy")(busy)
        mon.begin_window("whole run")
        with mon.window("idle"):
            time.sleep(3.0)
        products = timed_busy(4.0)
        whole = mon.end_window("whole run")
        df = mon.to_dataframe()
    print(f"Monitored workload: 3 s idle, then 4 s of 256x256 matrix products ({products} done).")
    print(f"{'window':<11}{'domain':<13}{'seconds':>8}{'joules':>10}{'watts':>8}  {'source':<14}method")
    for r in df.itertuples(index=False):
        print(f"{r.window:<11}{r.domain:<13}{r.time_s:>8.2f}{r.energy_j:>10.1f}{r.power_w:>8.1f}  {r.source:<14}{r.method}")
    print(f"\nwhole run, {whole.time_s:.1f} s: " + "; ".join(
        f"{d} {e:.1f} J ({whole.sources[d]})" for d, e in whole.energy_j.items()))
    print("(this-process is a virtual node inside the machine: do not add it to the machine's joules)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
