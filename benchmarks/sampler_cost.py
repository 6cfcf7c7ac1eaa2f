"""CPU cost of EnergyMonitor's background sampler.

For each source and period, runs an EnergyMonitor for ``--seconds`` of wall time while the
main thread sleeps, and reports the sampler thread's own CPU time (``time.thread_time``
inside the thread) over the wall time: the share of one CPU the sampler uses. Sources:
this machine's default (``detect()``), a RAPL reader over a fake powercap tree of two
sockets (five zones, in a temporary folder: file reads like sysfs, without the kernel's MSR
reads), and the estimator in process-set mode tracking this process. Variants run
alternately, ``--rounds`` times each.

Usage: python benchmarks/sampler_cost.py [--seconds 5] [--rounds 2] [--out benchmarks/results/sampler_cost.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

from tao_core.monitor import DEFAULT_PERIOD_S, EnergyMonitor
from tao_core.power.curve import PowerCurve
from tao_core.telemetry.detect import detect
from tao_core.telemetry.estimator import ModeledSource
from tao_core.telemetry.rapl import RaplSource


def fake_tree(root: Path) -> Path:
    for zid, name in [("intel-rapl:0", "package-0"), ("intel-rapl:0/intel-rapl:0:0", "core"),
                      ("intel-rapl:0/intel-rapl:0:1", "dram"), ("intel-rapl:1", "package-1"),
                      ("intel-rapl:1/intel-rapl:1:0", "dram")]:
        p = root / zid
        p.mkdir(parents=True)
        (p / "name").write_text(name)
        (p / "energy_uj").write_text("123456789")
        (p / "max_energy_range_uj").write_text("262143328850")
    return root


def run_one(make_source, period_s: float, seconds: float) -> dict:
    src, closer = make_source()
    mon = EnergyMonitor(src, period_s=period_s)
    t0 = time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - t0
    mon.stop()
    n = len(mon.timeline()) - 1
    cpu = mon.sampler_cpu_s
    closer()
    return {"wall_s": wall, "sampler_cpu_s": cpu, "reads": n, "cpu_share": cpu / wall,
            "cpu_per_read_ms": 1000 * cpu / n if n else None, "errors": mon.sampler_errors}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "sampler_cost.json"))
    a = ap.parse_args()

    tmp = tempfile.TemporaryDirectory()
    tree = fake_tree(Path(tmp.name) / "powercap")
    curve = PowerCurve.from_tdp(200.0)

    def default_source():
        det = detect()
        return det.source(), det.close

    sources = {
        "detect() default": default_source,
        "rapl (fake tree, 5 zones)": lambda: (RaplSource(tree), lambda: None),
        "modeled (process set)": lambda: (ModeledSource(curve, cpus=1, processes=[os.getpid()]), lambda: None),
    }
    with detect() as det:
        default_label = ",".join(det.to_dict()["chosen"])
    periods = [DEFAULT_PERIOD_S, 0.1]
    runs: dict[tuple[str, float], list[dict]] = {}
    for _ in range(a.rounds):
        for name, make in sources.items():
            for p in periods:
                runs.setdefault((name, p), []).append(run_one(make, p, a.seconds))

    rows = []
    for (name, p), rs in runs.items():
        rows.append({
            "source": name, "period_s": p, "rate_hz": 1 / p, "rounds": len(rs),
            "cpu_share_mean": statistics.mean(r["cpu_share"] for r in rs),
            "cpu_share_max": max(r["cpu_share"] for r in rs),
            "cpu_per_read_ms": statistics.mean(r["cpu_per_read_ms"] for r in rs if r["cpu_per_read_ms"]),
            "reads": sum(r["reads"] for r in rs), "errors": sum(r["errors"] for r in rs),
        })
    print(f"sampler CPU cost ({a.rounds} x {a.seconds:g} s per row; default source here: {default_label})")
    print(f"{'source':<28}{'period s':>9}{'Hz':>6}{'CPU % of one core':>19}{'max %':>8}{'ms/read':>9}")
    for r in rows:
        print(f"{r['source']:<28}{r['period_s']:>9.2f}{r['rate_hz']:>6.0f}{100 * r['cpu_share_mean']:>19.3f}"
              f"{100 * r['cpu_share_max']:>8.3f}{r['cpu_per_read_ms']:>9.3f}")
    out = {
        "benchmark": "sampler_cost", "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        "machine": {"python": platform.python_version(), "cpus": psutil.cpu_count(), "platform": platform.platform(),
                    "default_sources": default_label},
        "seconds_per_run": a.seconds, "rows": rows,
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    tmpf = f"{a.out}.tmp{os.getpid()}"
    with open(tmpf, "w") as f:
        json.dump(out, f, indent=2)
    os.replace(tmpf, a.out)
    print(f"wrote {a.out}")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
