"""``tao probe [--json] [--powercap-root DIR]``: what this machine offers for power
telemetry and why the rest is missing. A ``--powercap-root`` holding no usable RAPL zone
is an error (exit 2); zones only root may read are reported with the fixes (exit 0)."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tao_core.errors import InputError
from tao_core.hardware import describe_this_node, format_probe_section
from tao_core.telemetry.detect import detect


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "probe", help="show the telemetry sources found on this machine and why others are missing",
        description="Look for RAPL (powercap), pyRAPL, NVML GPUs, CPU temperature sensors and the "
        "model-based estimator; report each as found or not, chosen or not, and why.",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--powercap-root", metavar="DIR", default=None,
                   help="powercap tree to read (default $TAO_POWERCAP_ROOT or /sys/class/powercap)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    det = detect(args.powercap_root)
    rapl = det.candidate("rapl")
    if args.powercap_root is not None and not rapl.found:
        det.close()
        raise InputError(f"--powercap-root {args.powercap_root}: {rapl.reason}; give the powercap folder "
                         "(e.g. /sys/class/powercap)")
    try:
        reading = det.source().read()
        domains = [
            {"domain": d.name, "source": str(d.source), "method": d.method, "parent": d.parent,
             "uncertainty": d.uncertainty}
            for d in reading.domains.values()
        ]
    finally:
        det.close()
    report = det.to_dict()
    report["domains"] = domains
    hardware = describe_this_node()
    report["hardware"] = hardware.to_dict()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    out = sys.stdout
    out.write("TAO telemetry probe\n\n")
    out.write(f"{'source':<9} {'found':<6} {'chosen':<7} reason\n")
    for c in det.candidates:
        out.write(f"{c.name:<9} {'yes' if c.found else 'no':<6} {'yes' if c.chosen else 'no':<7} {c.reason}\n")
        for fix in c.fixes:
            out.write(f"{'':<24}fix: {fix}\n")
    out.write("\ndomains read:\n")
    for d in domains:
        parent = f" (inside {d['parent']})" if d["parent"] else ""
        out.write(f"  {d['domain']:<12} {d['source']:<14} {d['method']}{parent}\n")
    out.write("\n" + format_probe_section(hardware))
    return 0
