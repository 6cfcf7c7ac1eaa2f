"""``tao monitor [--interval S] [--count N] [--json] [--powercap-root DIR]``: sample the
energy counters every S seconds.

With ``--json``: one JSON object per sample and line, flushed as written::

    {"t_s": seconds since start, "domains": {NAME: {"energy_j": joules since start,
     "power_w": watts over the last interval, "source": kind}}}

NAME is the zone's kernel name with its socket index (``package-0``, ``dram-0``), ``gpu-N``,
or ``node`` for the model-based estimator. Without ``--json``: a live table.
With ``--powercap-root`` the RAPL tree there must be readable, else exit 2. Limits:
``--interval`` from 0.001 s to one day, ``--count`` from 1 to 10^9.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import Any, Optional

from tao_core.errors import InputError
from tao_core.files.values import number
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


#: shortest and longest --interval, seconds
MIN_INTERVAL_S, MAX_INTERVAL_S = 0.001, 86400.0
#: largest --count (about 30 years of samples at 1 s)
MAX_COUNT = 10 ** 9


def _parse(args: argparse.Namespace) -> tuple[float, Optional[int]]:
    interval = number(args.interval, "--interval", lo=MIN_INTERVAL_S, hi=MAX_INTERVAL_S,
                      fix=f"give seconds between samples, {MIN_INTERVAL_S:g} to {MAX_INTERVAL_S:g}")
    count = None
    if args.count is not None:
        count = int(number(args.count, "--count", lo=1, hi=MAX_COUNT, integer=True,
                           fix=f"give a whole number of samples, 1 to {MAX_COUNT:,}"))
    return interval, count


def _finite(x: Optional[float]) -> Optional[float]:
    return x if x is None or math.isfinite(x) else None


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
                    "energy_j": _finite(d.energy_j - e0),
                    "power_w": _finite((d.energy_j - ep) / dt) if dt > 0 else None,
                    "source": str(d.source),
                }
            if args.json:
                out.write(json.dumps({"t_s": r.t_s - first.t_s, "domains": doms}, allow_nan=False) + "\n")
            else:
                cells = []
                for name in names:
                    d = doms.get(name)
                    if d is None:
                        cells.append(f"{'-':>14}{'-':>14}")
                    else:
                        p = "-" if d["power_w"] is None else f"{d['power_w']:.2f}"
                        e = "-" if d["energy_j"] is None else f"{d['energy_j']:.2f}"
                        cells.append(f"{p:>14}{e:>14}")
                out.write(f"{r.t_s - first.t_s:>8.2f}  " + "  ".join(cells) + "\n")
            out.flush()
            prev = r
            n += 1
    except BrokenPipeError:
        return 0
    finally:
        src.close()
    return 0
