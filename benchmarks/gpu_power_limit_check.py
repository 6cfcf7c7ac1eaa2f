"""Real check of the GPU power-limit actuator on a machine with an NVIDIA GPU.

1. Dry run: ask for a lower limit without ``apply``; the limit read back must be unchanged.
2. For real: set a lower limit, read it back, run the same GPU loop at the default (highest)
   limit and at the lower one, alternating, and measure energy per iteration with TAO's NVML
   source (total-energy counter where the GPU has one) and time per iteration.
3. Restore: the limit read back must be the original one.

Needs root (setting a limit), torch with CUDA, and nvidia-ml-py. Prints one table and
writes JSON to ``$OUT/gpu_power_limit_check.json`` when ``OUT`` is set, else under
``benchmarks/results/``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from tao_core.actuators import ActuatorError, GpuPowerLimit, restore_on_exit
from tao_core.telemetry.nvml import NvmlSource, NvmlUnavailable
from results_file import write_json  # noqa: E402


def gpu_loop(torch, iters: int, n: int) -> float:
    """Run ``iters`` bf16 matrix products of n x n; return seconds."""
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        a = (a @ b).clamp_(-1, 1)
    torch.cuda.synchronize()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpu", type=int, default=0)
    ap.add_argument("--low-fraction", type=float, default=0.6, help="lower limit as a fraction of the highest (default 0.6)")
    ap.add_argument("--iters", type=int, default=400)
    ap.add_argument("--size", type=int, default=8192)
    ap.add_argument("--rounds", type=int, default=2, help="alternations of the two limits")
    args = ap.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("gpu_power_limit_check: torch is not installed; it needs torch with CUDA", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("gpu_power_limit_check: no CUDA GPU visible to torch", file=sys.stderr)
        return 2
    target = f"gpu-{args.gpu}"
    try:
        dry = GpuPowerLimit(apply=False)
        original = dry.read(target)
        lo, hi = dry.bounds(target)
        low = max(lo, round(args.low_fraction * hi))
        change = dry.set(target, low)
        dry_ok = (not change.applied) and dry.read(target) == original
        act = restore_on_exit(GpuPowerLimit(apply=True))
        src = NvmlSource(indices=[args.gpu], process_utilization=False)
    except (ActuatorError, NvmlUnavailable) as exc:
        print(f"gpu_power_limit_check: {exc}", file=sys.stderr)
        return 2

    gpu_loop(torch, 50, args.size)  # warm up clocks and kernels
    rows = []
    try:
        for _ in range(args.rounds):
            for limit in (hi, low):
                act.set(target, limit)
                readback = act.read(target)
                time.sleep(1.0)
                r0 = src.read()
                secs = gpu_loop(torch, args.iters, args.size)
                r1 = src.read()
                dom = r1.domains[target]
                joules = dom.energy_j - r0.domains[target].energy_j
                rows.append({"limit_w": limit, "readback_w": readback, "s_per_iter": secs / args.iters,
                             "j_per_iter": joules / args.iters, "avg_w": joules / secs,
                             "source": str(dom.source), "method": dom.method})
    finally:
        act.restore()
        restored = act.read(target)
        src.close()

    print(f"GPU {args.gpu}: limits {lo:g}..{hi:g} W, original {original:g} W, dry run unchanged: {dry_ok}, "
          f"restored to {restored:g} W: {restored == original}")
    print(f"{'limit W':>8} {'read W':>7} {'ms/iter':>8} {'J/iter':>8} {'avg W':>7}  source")
    for r in rows:
        print(f"{r['limit_w']:8.0f} {r['readback_w']:7.0f} {1e3 * r['s_per_iter']:8.3f} {r['j_per_iter']:8.3f} "
              f"{r['avg_w']:7.1f}  {r['source']} ({r['method']})")
    def mean(key: str, limit: float) -> float:
        vals = [r[key] for r in rows if r["limit_w"] == limit]
        return sum(vals) / len(vals)
    summary = {
        "gpu": args.gpu, "limits_w": [lo, hi], "original_w": original, "low_w": low,
        "dry_run_unchanged": dry_ok, "restored": restored == original,
        "energy_per_iter_ratio_low_over_default": mean("j_per_iter", low) / mean("j_per_iter", hi),
        "time_per_iter_ratio_low_over_default": mean("s_per_iter", low) / mean("s_per_iter", hi),
        "rows": rows,
    }
    print(f"low/default: energy per iteration x{summary['energy_per_iter_ratio_low_over_default']:.3f}, "
          f"time per iteration x{summary['time_per_iter_ratio_low_over_default']:.3f}")
    out_dir = Path(os.environ.get("OUT") or Path(__file__).resolve().parent / "results")
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(summary, out_dir / "gpu_power_limit_check.json")
    return 0 if dry_ok and restored == original else 1


if __name__ == "__main__":
    sys.exit(main())
