"""``tao monitor [--interval S] [--count N] [--json] [--powercap-root DIR]``: sample the
energy counters every S seconds.

With ``--json``: one JSON object per sample and line, flushed as written::

    {"t_s": seconds since start, "domains": {NAME: {"energy_j": joules since start,
     "power_w": watts over the last interval, "source": kind}}}

NAME is the zone's kernel name with its socket index (``package-0``, ``dram-0``), ``gpu-N``,
or ``node`` for the model-based estimator. Without ``--json``: a live table.
With ``--powercap-root`` the RAPL tree there must be readable, else exit 2.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import Any, Optional

from tao_core.errors import InputError
from tao_core.telemetry.detect import detect


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "monitor", help="sample energy and power every S seconds",
        description="Sample every telemetry source TAO finds (or the RAPL tree given) every S seconds.",
    )
    p.add_argument("--interval", metavar="S", default="1", help="seconds between samples (> 0, default 1)")
    p.add_argument("--count", metavar="N", default=None, help="stop after N samples (default: until Ctrl-C)")
    p.add_argument("--json", action="store_true", help="one JSON object per line and sample")
    p.add_argument("--powercap-root", metavar="DIR", default=None,
                   help="powercap tree to read (default $TAO_POWERCAP_ROOT or /sys/class/powercap)")
    p.set_defaults(func=run)


def _parse(args: argparse.Namespace) -> tuple[float, Optional[int]]:
    try:
        interval = float(args.interval)
    except ValueError:
        raise InputError(f"--interval: expected a number of seconds > 0, got {args.interval!r}") from None
    if not (math.isfinite(interval) and interval > 0):
        raise InputError(f"--interval: expected a number of seconds > 0, got {args.interval!r}")
    count = None
    if args.count is not None:
        try:
            count = int(args.count)
        except ValueError:
            raise InputError(f"--count: expected a whole number >= 1, got {args.count!r}") from None
        if count < 1:
            raise InputError(f"--count: expected a whole number >= 1, got {args.count!r}")
    return interval, count


def run(args: argparse.Namespace) -> int:
    interval, count = _parse(args)
    det = detect(args.powercap_root)
    if args.powercap_root is not None and not det.candidate("rapl").chosen:
        det.close()
        c = det.candidate("rapl")
        fix = f"; fix: {c.fixes[0]}" if c.fixes else ""
        raise InputError(f"--powercap-root {args.powercap_root}: {c.reason}{fix}")
    src = det.source()
    out = sys.stdout
    try:
        first = prev = src.read()
        names = list(first.domains)
        if not args.json:
            out.write(f"{'t_s':>8}  " + "  ".join(f"{n + ' W':>14}{n + ' J':>14}" for n in names) + "\n")
            out.write(" " * 10 + "  ".join(f"{str(first.domains[n].source):>28}" for n in names) + "\n")
            out.flush()
        n = 0
        next_t = time.monotonic() + interval
        while count is None or n < count:
            time.sleep(max(next_t - time.monotonic(), 0.0))
            next_t += interval
            r = src.read()
            dt = r.t_s - prev.t_s
            doms = {}
            for name, d in r.domains.items():
                e0 = first.domains[name].energy_j if name in first.domains else d.energy_j
                ep = prev.domains[name].energy_j if name in prev.domains else d.energy_j
                doms[name] = {
                    "energy_j": d.energy_j - e0,
                    "power_w": (d.energy_j - ep) / dt if dt > 0 else None,
                    "source": str(d.source),
                }
            if args.json:
                out.write(json.dumps({"t_s": r.t_s - first.t_s, "domains": doms}) + "\n")
            else:
                cells = []
                for name in names:
                    d = doms.get(name)
                    if d is None:
                        cells.append(f"{'-':>14}{'-':>14}")
                    else:
                        p = "-" if d["power_w"] is None else f"{d['power_w']:.2f}"
                        cells.append(f"{p:>14}{d['energy_j']:>14.2f}")
                out.write(f"{r.t_s - first.t_s:>8.2f}  " + "  ".join(cells) + "\n")
            out.flush()
            prev = r
            n += 1
    except BrokenPipeError:
        return 0
    finally:
        src.close()
    return 0
