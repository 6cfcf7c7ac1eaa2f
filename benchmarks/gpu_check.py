"""Check TAO's NVML energy against nvidia-smi's power readings on a machine with an NVIDIA GPU.

Runs an idle phase and a GPU load phase (bf16 matrix products with torch, else cupy) of a
few seconds each. Over each phase it measures the GPU's energy twice: with TAO
(``EnergyMonitor`` over ``NvmlSource``: the total-energy counter on Volta and newer, power
polls otherwise) and by integrating the power that
``nvidia-smi --query-gpu=timestamp,power.draw --format=csv -lms 100`` prints, with the
trapezoid rule over the same wall-clock window. Prints one table and writes JSON to
``$OUT/gpu_check.json`` when ``OUT`` is set, else ``benchmarks/results/gpu_check.json``.

Without an NVIDIA GPU it stops with a clear message (exit 2). Without torch and cupy it
says so and measures the idle phase only.

Usage: python benchmarks/gpu_check.py [--gpu 0] [--seconds 5] [--size 8192]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

from tao_core.monitor import EnergyMonitor
from tao_core.telemetry.nvml import NvmlSource, NvmlUnavailable
from results_file import write_json  # noqa: E402


def load_backend():
    """(name, run(seconds, size) -> iterations) for torch or cupy, or (None, reason)."""
    try:
        import torch  # noqa: PLC0415

        if torch.cuda.is_available():
            def run(seconds: float, n: int, gpu: int) -> int:
                dev = f"cuda:{gpu}"
                a = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
                b = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
                torch.cuda.synchronize(dev)
                end, it = time.monotonic() + seconds, 0
                while time.monotonic() < end:
                    for _ in range(10):
                        a = (a @ b).clamp_(-1, 1)
                    torch.cuda.synchronize(dev)
                    it += 10
                return it
            return "torch " + torch.__version__, run
        torch_reason = "torch installed but no CUDA device visible to it"
    except ImportError:
        torch_reason = "torch not installed"
    try:
        import cupy  # noqa: PLC0415

        def run(seconds: float, n: int, gpu: int) -> int:
            with cupy.cuda.Device(gpu):
                a = cupy.random.standard_normal((n, n), dtype=cupy.float32)
                b = cupy.random.standard_normal((n, n), dtype=cupy.float32)
                end, it = time.monotonic() + seconds, 0
                while time.monotonic() < end:
                    for _ in range(10):
                        a = cupy.clip(a @ b, -1, 1)
                    cupy.cuda.Device(gpu).synchronize()
                    it += 10
                return it
        return "cupy " + cupy.__version__, run
    except ImportError:
        return None, f"{torch_reason}; cupy not installed"


class SmiSampler:
    """nvidia-smi power.draw every 100 ms, as (wall seconds, watts)."""

    def __init__(self, gpu: int) -> None:
        self.samples: list[tuple[float, float]] = []
        self.proc = subprocess.Popen(
            ["nvidia-smi", f"--id={gpu}", "--query-gpu=timestamp,power.draw", "--format=csv,noheader,nounits", "-lms", "100"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                ts, w = [x.strip() for x in line.split(",")]
                t = datetime.strptime(ts, "%Y/%m/%d %H:%M:%S.%f").timestamp()
                self.samples.append((t, float(w)))
            except ValueError:
                continue

    def energy_j(self, t0: float, t1: float) -> tuple[float, int]:
        """Joules by trapezoid over [t0, t1] (wall seconds), edges interpolated."""
        s = sorted(self.samples)
        pts = [(t, w) for t, w in s if t0 <= t <= t1]

        def at(t: float) -> float | None:
            before = [p for p in s if p[0] <= t]
            after = [p for p in s if p[0] >= t]
            if not before or not after:
                return None
            (ta, wa), (tb, wb) = before[-1], after[0]
            return wa if tb == ta else wa + (wb - wa) * (t - ta) / (tb - ta)

        w0, w1 = at(t0), at(t1)
        if w0 is not None:
            pts.insert(0, (t0, w0))
        if w1 is not None:
            pts.append((t1, w1))
        e = sum((tb - ta) * (wa + wb) / 2 for (ta, wa), (tb, wb) in zip(pts, pts[1:]))
        return e, len(pts)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpu", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=5.0, help="length of each phase (default 5)")
    ap.add_argument("--size", type=int, default=8192, help="matrix size of the load (default 8192)")
    ap.add_argument("--period", type=float, default=0.1, help="TAO sampler period, seconds (default 0.1)")
    a = ap.parse_args(argv)

    try:
        src = NvmlSource(indices=[a.gpu])
    except NvmlUnavailable as exc:
        print(f"gpu_check: no NVIDIA GPU to check here: {exc}", file=sys.stderr)
        return 2
    if shutil.which("nvidia-smi") is None:
        print("gpu_check: nvidia-smi not found on PATH; it is the reference this check compares with", file=sys.stderr)
        src.close()
        return 2
    st = src.status()[0]
    backend, run = load_backend()
    if backend is None:
        print(f"gpu_check: NO GPU LOAD AVAILABLE ({run}); only the idle phase is measured", file=sys.stderr)

    smi = SmiSampler(a.gpu)
    time.sleep(1.0)  # let nvidia-smi start printing
    rows = []
    phases = [("idle", None)] + ([("load", run)] if backend else [])
    with EnergyMonitor(src, period_s=a.period) as mon:
        for phase, fn in phases:
            w0 = time.time()
            mon.begin_window(phase)
            iters = fn(a.seconds, a.size, a.gpu) if fn else (time.sleep(a.seconds) or 0)
            res = mon.end_window(phase)
            w1 = time.time()
            time.sleep(0.5)  # let nvidia-smi print past the window's end
            e_smi, n = smi.energy_j(w0, w1)
            dom = f"gpu-{a.gpu}"
            e_tao = res.energy_j.get(dom, float("nan"))
            rows.append({
                "phase": phase, "seconds": res.time_s, "iterations": iters,
                "tao_energy_j": e_tao, "tao_power_w": e_tao / res.time_s, "tao_source": res.sources.get(dom),
                "tao_method": res.methods.get(dom), "smi_energy_j": e_smi, "smi_power_w": e_smi / (w1 - w0),
                "smi_samples": n, "diff_pct": 100 * (e_tao - e_smi) / e_smi if e_smi else None,
            })
        status = src.status()[0]
    smi.stop()
    src.close()

    print(f"gpu_check: {st.name} (gpu-{a.gpu}), TAO mode {st.mode}, load: {backend or 'none'}")
    print(f"{'phase':<6}{'s':>7}{'TAO J':>11}{'TAO W':>9}{'smi J':>11}{'smi W':>9}{'samples':>9}{'diff %':>8}")
    for r in rows:
        d = "n/a" if r["diff_pct"] is None else f"{r['diff_pct']:+.1f}"
        print(f"{r['phase']:<6}{r['seconds']:>7.2f}{r['tao_energy_j']:>11.1f}{r['tao_power_w']:>9.1f}"
              f"{r['smi_energy_j']:>11.1f}{r['smi_power_w']:>9.1f}{r['smi_samples']:>9}{d:>8}")
    out = {
        "benchmark": "gpu_check", "gpu": {"index": a.gpu, "name": st.name, "mode": st.mode,
                                           "power_limit_w": status.power_limit_w, "errors": status.errors},
        "load_backend": backend, "seconds_per_phase": a.seconds, "size": a.size, "tao_period_s": a.period,
        "reference": "nvidia-smi --query-gpu=timestamp,power.draw --format=csv -lms 100, trapezoid", "rows": rows,
    }
    out_dir = Path(os.environ["OUT"]) if os.environ.get("OUT") else Path(__file__).parent / "results"
    path = write_json(out, out_dir / "gpu_check.json", indent=2)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
