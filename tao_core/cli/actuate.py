"""``tao actuate``: read, and with ``--apply`` set, GPU power limits and CPU frequency caps.

Without ``--apply`` nothing is written: the command checks the value against the
hardware's range and prints what it would do. Every flag is checked before anything is
written (``--hold`` from 0 to 10^7 s, device indices from 0 to 4095, values > 0). With ``--apply`` the setting is changed,
held for ``--hold`` seconds (or until Ctrl-C / SIGTERM) and then restored.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from typing import Optional

from tao_core.actuators import ActuatorError, CpuFrequencyCap, GpuPowerLimit, restore_on_exit
from tao_core.errors import InputError
from tao_core.files.values import number

#: longest --hold, seconds (about 115 days)
MAX_HOLD_S = 1e7
#: highest device index accepted
MAX_INDEX = 4095


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("actuate", help="read or set GPU power limits and CPU frequency caps (dry run unless --apply)",
                       description=__doc__)
    asub = p.add_subparsers(dest="actuator", metavar="ACTUATOR")
    asub.required = True
    g = asub.add_parser("gpu-limit", help="GPU power limit in watts (NVML)")
    g.add_argument("--gpu", default=None, help="GPU index; without --watts and --gpu, list all")
    g.add_argument("--watts", default=None, help="new power limit in watts")
    c = asub.add_parser("cpu-freq", help="CPU frequency cap in kHz (cpufreq scaling_max_freq)")
    c.add_argument("--policy", default=None, help="cpufreq policy index; without --khz and --policy, list all")
    c.add_argument("--khz", default=None, help="new maximum frequency in kHz")
    c.add_argument("--cpufreq-root", default=None, help="cpufreq sysfs root (default /sys/devices/system/cpu/cpufreq)")
    for q in (g, c):
        q.add_argument("--apply", action="store_true", help="really write the setting (default: dry run)")
        q.add_argument("--hold", default=None,
                       help="with --apply: seconds to keep the setting before restoring it (default: until interrupted)")
        q.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def _flags(args: argparse.Namespace) -> tuple[Optional[int], Optional[float], Optional[float]]:
    """(device index, value to set, seconds to hold), each checked (None where not given)."""
    gpu = args.actuator == "gpu-limit"
    flag_i, flag_v = ("--gpu", "--watts") if gpu else ("--policy", "--khz")
    raw_i, raw_v = (args.gpu, args.watts) if gpu else (args.policy, args.khz)
    index = None if raw_i is None else int(number(raw_i, flag_i, lo=0, hi=MAX_INDEX, integer=True,
                                                  fix=f"give a device index, 0 to {MAX_INDEX}"))
    value = None if raw_v is None else number(raw_v, flag_v, lo=0, lo_open=True,
                                              fix=f"give the new setting in {'W' if gpu else 'kHz'}, > 0")
    hold = None if args.hold is None else number(args.hold, "--hold", lo=0, hi=MAX_HOLD_S,
                                                 fix=f"give seconds to keep the setting, 0 to {MAX_HOLD_S:g}")
    return index, value, hold


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    index, value, hold = _flags(args)
    try:
        if args.actuator == "gpu-limit":
            act = GpuPowerLimit(apply=args.apply)
            target = None if index is None else f"gpu-{index}"
        else:
            act = CpuFrequencyCap(apply=args.apply, root=args.cpufreq_root)
            target = None if index is None else f"policy{index}"
        if value is None:
            if not act.targets():
                raise ActuatorError(f"no {act.name} target on this machine")
            rows = [{"target": t, "value": act.read(t), "min": act.bounds(t)[0], "max": act.bounds(t)[1],
                     "unit": act.unit} for t in ([target] if target else act.targets())]
            if args.json:
                print(json.dumps(rows))
            else:
                for r in rows:
                    print(f"{r['target']}: {r['value']:.10g} {r['unit']} (range {r['min']:.10g}..{r['max']:.10g})")
            return 0
        if target is None:
            raise InputError("--gpu/--policy: say which device to set")
        restore_on_exit(act)
        change = act.set(target, value)
        out = {"target": target, "old": change.old, "new": change.new, "unit": change.unit, "applied": change.applied}
        print(json.dumps(out) if args.json else
              f"{target}: {change.old:.10g} -> {change.new:.10g} {change.unit}" + ("" if change.applied else " (dry run: not written)"))
        if change.applied:
            try:
                if hold is None:
                    while True:
                        time.sleep(3600)
                time.sleep(hold)
            finally:
                act.restore()
        return 0
    except ActuatorError as exc:
        raise InputError(str(exc)) from None
