"""``tao report``: build, validate and merge energy reports.

``tao report build --ledger L [--format json|md|html] [--out F] [--carbon-intensity G]
[--run-id R | --policy P] [--job J] [--cluster-name N] [--pubkey KEY]``: verify the ledger and write the
report of one run (default: JSON to stdout). Exit 2 on bad input or a ledger that fails
verification (nothing written).

``tao report validate R.json [--pubkey KEY] [--ledger L]``: exit 0 when the report matches
the shipped JSON Schema, its integrity digest and its signature if signed (by KEY when
given; an unsigned report with --pubkey fails unless --ledger is given); 1 when it does not (each problem names its
field); 2 when the file cannot be read. With ``--ledger``: also checks that the ledger
verifies, holds the report's head hash at its head sequence number, and that rebuilding the
report from the ledger gives the same figures.

``tao report render R.json --format md|html --out F``: render a report (run or federated)
that validates; exit 2 when it does not.

``tao report merge R1.json R2.json ... --out M.json [--name LABEL]...``: validate every
input, then write the federated report. Exit 2 when an input is invalid or was changed
(nothing written).
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

from tao_core.errors import InputError
from tao_core.governance.merge import merge_reports
from tao_core.governance.keys import load_public_key
from tao_core.governance.output import report_json_bytes, write_report
from tao_core.governance.report import build_report
from tao_core.governance.validate import load_report, sign_report, validate_report


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("report", help="build, validate or merge energy reports",
                              description="Energy reports from a ledger: build, validate, merge.")
    sub = p.add_subparsers(dest="report_command", metavar="ACTION")
    sub.required = True
    b = sub.add_parser("build", help="build the energy report of a run from its ledger")
    b.add_argument("--ledger", required=True, help="ledger file written by tao simulate --ledger or an adapter")
    b.add_argument("--format", default="json", choices=("json", "md", "html"), help="output format (default json)")
    b.add_argument("--out", help="output file (default: JSON to stdout; md and html need --out)")
    b.add_argument("--carbon-intensity", type=float, metavar="G",
                   help="average carbon intensity of the electricity, gCO2e/kWh (adds emissions)")
    b.add_argument("--run-id", help="which run, when the ledger holds several")
    b.add_argument("--policy", help="which run, by its policy (e.g. tao), when the ledger holds several")
    b.add_argument("--job", help="report one job of the run only")
    b.add_argument("--cluster-name", help="label of this cluster in federated reports")
    b.add_argument("--pubkey", help="the signer's public key; the report then says the signer is authenticated")
    b.add_argument("--sign-key", help="sign the report with this Ed25519 private key (e.g. LEDGER.key)")
    b.set_defaults(func=run)
    v = sub.add_parser("validate", help="check a report against the schema and its integrity digest")
    v.add_argument("report", help="report JSON file")
    v.add_argument("--ledger", help="also check the report against this ledger")
    v.add_argument("--pubkey", help="the signer's public key: the report's signature must be by this key "
                   "(and, with --ledger, the ledger's checkpoints)")
    v.set_defaults(func=run)
    r = sub.add_parser("render", help="write a report JSON (run or federated) as Markdown or HTML")
    r.add_argument("report", help="report JSON file")
    r.add_argument("--format", required=True, choices=("md", "html", "json"), help="output format")
    r.add_argument("--out", required=True, help="output file")
    r.set_defaults(func=run)
    m = sub.add_parser("merge", help="combine reports of several clusters into one federated report")
    m.add_argument("reports", nargs="+", help="report JSON files")
    m.add_argument("--out", required=True, help="merged report JSON file")
    m.add_argument("--name", action="append", help="cluster label, once per report in order (default: from each report)")
    m.add_argument("--sign-key", help="sign the merged report with this Ed25519 private key")
    m.set_defaults(func=run)
    p.set_defaults(func=run)


def _build(args: argparse.Namespace) -> int:
    if args.format != "json" and not args.out:
        raise InputError(f"--format {args.format}: needs --out FILE")
    report = build_report(
        args.ledger, pubkey=args.pubkey, run_id=args.run_id, policy=args.policy, job=args.job,
        carbon_intensity_g_per_kwh=args.carbon_intensity, cluster_name=args.cluster_name,
    )
    if args.sign_key:
        sign_report(report, args.sign_key)
    if not args.out:
        sys.stdout.write(report_json_bytes(report).decode("utf-8"))
        return 0
    files = write_report(report, args.out, args.format)
    led = report["ledger"]
    print(f"wrote {', '.join(str(f) for f in files)} (ledger head {led['head_hash']} at seq {led['head_seq']}"
          + (", ledger tail torn" if led["status"] == "torn" else "")
          + (f", signed by key {report['integrity']['signature']['key_id']}" if args.sign_key else "") + ")")
    return 0


_VOLATILE = ("generated_at", "generator", "integrity")


def _comparable(report: dict) -> dict:
    r = {k: v for k, v in report.items() if k not in _VOLATILE}
    if isinstance(r.get("ledger"), dict):
        r["ledger"] = {k: v for k, v in r["ledger"].items() if k not in ("file", "signer_authenticated", "status")}
    return r


def _diff(a: Any, b: Any, path: str = "") -> str:
    """Path of the first difference between two JSON values ('' when equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return f"{path}/{k}"
            d = _diff(a[k], b[k], f"{path}/{k}")
            if d:
                return d
        return ""
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path} (length {len(a)} vs {len(b)})"
        for i, (x, y) in enumerate(zip(a, b)):
            d = _diff(x, y, f"{path}/{i}")
            if d:
                return d
        return ""
    return "" if a == b else (path or "/")


def _validate(args: argparse.Namespace) -> int:
    report = load_report(args.report)
    pubkey = load_public_key(args.pubkey) if args.pubkey else None
    signed = (isinstance(report, dict) and isinstance(report.get("integrity"), dict)
              and bool(report["integrity"].get("signature")))
    # --pubkey checks the report's signature; an unsigned report passes it only through --ledger
    problems = validate_report(report, pubkey if signed or not args.ledger else None)
    if problems:
        for p in problems:
            print(f"{args.report}: {p}", file=sys.stderr)
        print(f"INVALID: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    msg = f"VALID: {args.report} matches the schema and its integrity digest {report['integrity']['content_sha256']}"
    sig = report["integrity"].get("signature")
    if sig:
        msg += f"; signed by key {sig['key_id']}" + (" (the given --pubkey)" if pubkey is not None else " (embedded key: pass --pubkey to authenticate)")
    if args.ledger:
        if report["report_type"] != "run" or not report["ledger"].get("head_seq"):
            raise InputError("--ledger: only a run report built from a ledger can be checked against one")
        s = report["subject"]
        emissions = report.get("emissions") or {}
        try:
            rebuilt = build_report(
                args.ledger, pubkey=args.pubkey, run_id=s.get("run_id"), job=s.get("job"),
                carbon_intensity_g_per_kwh=emissions.get("carbon_intensity_g_per_kwh"),
                cluster_name=s.get("cluster_name"), upto_seq=report["ledger"]["head_seq"],
            )
        except InputError as exc:
            print(f"{args.report}: cannot be rebuilt from {args.ledger}: {exc}", file=sys.stderr)
            return 1
        if rebuilt["ledger"]["head_hash"] != report["ledger"]["head_hash"]:
            print(f"{args.report}: ledger head hash {report['ledger']['head_hash']} is not the hash of record "
                  f"{report['ledger']['head_seq']} of {args.ledger} ({rebuilt['ledger']['head_hash']})", file=sys.stderr)
            return 1
        where = _diff(_comparable(report), _comparable(rebuilt))
        if where:
            print(f"{args.report}: differs from the report rebuilt from {args.ledger} at {where}", file=sys.stderr)
            return 1
        auth = "signer authenticated by --pubkey" if rebuilt["ledger"]["signer_authenticated"] else "signer not authenticated (no --pubkey)"
        msg += f"; rebuilt from {args.ledger} up to seq {report['ledger']['head_seq']} with the same figures ({auth})"
    print(msg)
    return 0


def _merge(args: argparse.Namespace) -> int:
    reports = [load_report(p) for p in args.reports]
    merged = merge_reports(reports, names=args.name, sources=args.reports)
    if args.sign_key:
        sign_report(merged, args.sign_key)
    write_report(merged, args.out, "json")
    print(f"wrote {args.out}: {len(merged['federation']['members'])} member(s), IT "
          f"{merged['energy']['it_energy_j']:.1f} J, facility {merged['energy']['facility_energy_j']:.1f} J")
    return 0


def _render(args: argparse.Namespace) -> int:
    report = load_report(args.report)
    problems = validate_report(report)
    if problems:
        raise InputError(f"{args.report}: not a valid untampered report ({problems[0]}); "
                         "check it with `tao report validate`")
    files = write_report(report, args.out, args.format)
    print(f"wrote {', '.join(str(f) for f in files)}")
    return 0


def run(args: argparse.Namespace) -> int:
    return {"build": _build, "validate": _validate, "merge": _merge, "render": _render}[args.report_command](args)
