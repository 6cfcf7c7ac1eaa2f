"""``tao report``: build, validate, render, merge and export energy reports.

``tao report build --ledger L [--format json|md|html|mdf] [--out F] [--carbon-intensity G]
[--embodied-g M] [--run-id R | --policy P] [--job J] [--cluster-name N] [--pubkey KEY]
[--sign-key KEY] [--include-unsigned]``: verify the ledger and write the report of one run
from its signed records (default: JSON to stdout; ``mdf``: the Model Documentation Form items
alone, Markdown to paste into the form). ``--include-unsigned`` also uses the records after
the last checkpoint; the report then says so. ``--embodied-g``: the embodied emissions of
the hardware's share for the run (gCO2e), the SCI's M. Exit 2 on bad input or a ledger that
fails verification (nothing written).

``tao report validate R.json [--pubkey KEY] [--ledger L]``: exit 0 when the report matches
the shipped JSON Schema, its integrity digest, its internal sums and its signature if
signed (by KEY when given; an unsigned report with --pubkey fails unless --ledger is
given); 1 when it does not (each problem names its field); 2 when a file cannot be read.
With ``--ledger`` (a run report): the report is rebuilt from the ledger (verified against
KEY when given) with the parameters it records and must be the same in every field, its
provenance claims included. A federated report: ``--input R1.json ...`` (the reports it
was merged from) with ``--pubkey`` and/or ``--ledger`` for each, as for merge: it is merged
again and must be the same.

``tao report render R.json --format md|html|json|mdf --out F``: render a report that validates.

``tao report export R.json --format boamps --context C.json --out F [--ledger L [--pubkey
KEY]]``: write a report that validates (and, with ``--ledger``, is what its ledger gives)
as a BoAmps 1.1.0 report; ``C.json`` is a partial BoAmps document with the fields only the
user knows (task stage and family, algorithms, dataset, infrastructure type, country, ...).
The result is validated against the BoAmps schema before it is written.

``tao report merge R1.json R2.json ... --out M.json [--name LABEL]... [--pubkey KEY]...
[--ledger L|-]...``: verify every input (its signature by KEY, or a rebuild from its
ledger L), refuse duplicates, then write the federated report. ``--pubkey`` once applies
to every input, or give one per input; ``--ledger`` one per input (``-`` for none).
Exit 2 when an input is invalid, unverified, changed or a duplicate (nothing written).
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Optional, Sequence

from tao_core.errors import InputError, ParameterError
from tao_core.files import install_signal_cleanup
from tao_core.governance.keys import load_public_key
from tao_core.governance.ledger import default_key_path, default_pub_path
from tao_core.governance.merge import MemberEvidence, merge_reports
from tao_core.governance.output import check_report_targets, report_json_bytes, write_report
from tao_core.governance.recheck import check_against_ledger, check_federated
from tao_core.governance.report import build_report
from tao_core.governance.validate import load_report, sign_report, validate_report

#: library parameter names as the command line spells them
FLAGS = {
    "run_id": "--run-id", "policy": "--policy", "job": "--job", "carbon_intensity_g_per_kwh": "--carbon-intensity",
    "cluster_name": "--cluster-name", "include_unsigned": "--include-unsigned", "ledger": "--ledger",
    "names": "--name", "evidence": "--pubkey/--ledger", "fmt": "--format", "path": "--out", "reports": "REPORT",
    "sign_key": "--sign-key", "pubkey": "--pubkey", "embodied_g_co2e": "--embodied-g", "context": "--context",
}


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("report", help="build, validate, render, merge or export energy reports",
                              description="Energy reports from a ledger: build, validate, render, merge, export.")
    sub = p.add_subparsers(dest="report_command", metavar="ACTION")
    sub.required = True
    b = sub.add_parser("build", help="build the energy report of a run from its ledger")
    b.add_argument("--ledger", required=True, help="ledger file written by tao simulate --ledger or an adapter")
    b.add_argument("--format", default="json", choices=("json", "md", "html", "mdf"),
                   help="output format (default json; mdf: the Model Documentation Form items, Markdown)")
    b.add_argument("--out", help="output file (default: JSON to stdout; md, html and mdf need --out)")
    b.add_argument("--carbon-intensity", type=float, metavar="G",
                   help="the grid's average (location-based) carbon intensity, gCO2e/kWh (adds emissions and the SCI)")
    b.add_argument("--embodied-g", type=float, metavar="M",
                   help="embodied emissions of the hardware's share for the run, gCO2e (the SCI's M; never estimated)")
    b.add_argument("--run-id", help="which run, when the ledger holds several")
    b.add_argument("--policy", help="which run, by its policy (e.g. tao), when the ledger holds several")
    b.add_argument("--job", help="report one job of the run only")
    b.add_argument("--cluster-name", help="label of this cluster in federated reports")
    b.add_argument("--pubkey", help="the signer's public key; the report then says the signer is authenticated")
    b.add_argument("--sign-key", help="sign the report with this Ed25519 private key (e.g. LEDGER.key)")
    b.add_argument("--include-unsigned", action="store_true",
                   help="also use records no checkpoint signature covers yet (the report says so)")
    b.set_defaults(func=run)
    v = sub.add_parser("validate", help="check a report: schema, digest, sums; with --ledger or --input its claims")
    v.add_argument("report", help="report JSON file")
    v.add_argument("--ledger", action="append", help="run report: its ledger (rebuilt and compared); federated "
                   "report with --input: one ledger per input, '-' for none")
    v.add_argument("--pubkey", action="append", help="the signer's public key: of the report (and, with --ledger, "
                   "of the ledger); with --input one for every input or one per input")
    v.add_argument("--input", action="append", help="federated report: a report it was merged from (repeat)")
    v.set_defaults(func=run)
    r = sub.add_parser("render", help="write a report JSON (run or federated) as Markdown or HTML")
    r.add_argument("report", help="report JSON file")
    r.add_argument("--format", required=True, choices=("md", "html", "json", "mdf"), help="output format")
    r.add_argument("--out", required=True, help="output file")
    r.set_defaults(func=run)
    x = sub.add_parser("export", help="write a run or federated report in another format (BoAmps)")
    x.add_argument("report", help="report JSON file")
    x.add_argument("--format", required=True, choices=("boamps",), help="BoAmps 1.1.0 (Boavizta)")
    x.add_argument("--context", help="partial BoAmps JSON with the fields only you know (task stage and family, "
                   "algorithms, dataset, infrastructure type, ...)")
    x.add_argument("--out", required=True, help="output file")
    x.add_argument("--ledger", help="a run report's ledger: the report must be what it gives")
    x.add_argument("--pubkey", help="the ledger's public key (with --ledger)")
    x.set_defaults(func=run)
    m = sub.add_parser("merge", help="combine verified reports of several clusters into one federated report")
    m.add_argument("reports", nargs="+", help="report JSON files")
    m.add_argument("--out", required=True, help="merged report JSON file")
    m.add_argument("--name", action="append", help="cluster label, once per report in order (default: from each report)")
    m.add_argument("--pubkey", action="append", help="public key the inputs' report signatures must verify under: "
                   "once for all, or once per report in order")
    m.add_argument("--ledger", action="append", help="the ledger each input was built from, once per report in "
                   "order ('-' for none): the input is rebuilt from it and must be the same")
    m.add_argument("--sign-key", help="sign the merged report with this Ed25519 private key")
    m.set_defaults(func=run)
    p.set_defaults(func=run)


def _flagged(fn: Callable[[], Any]) -> Any:
    """Run ``fn``, wording a library ParameterError with the command's flags."""
    try:
        return fn()
    except ParameterError as exc:
        raise InputError(exc.worded(FLAGS)) from None


def _ledger_inputs(ledger: str) -> list[tuple[str, str]]:
    return [("--ledger", ledger), ("the ledger's key", str(default_key_path(ledger))),
            ("the ledger's public key", str(default_pub_path(ledger)))]


def _build(args: argparse.Namespace) -> int:
    if args.format != "json" and not args.out:
        raise InputError(f"--format {args.format}: needs --out FILE")
    pubkey = load_public_key(args.pubkey, "--pubkey") if args.pubkey else None
    inputs = _ledger_inputs(args.ledger) + [("--pubkey", args.pubkey), ("--sign-key", args.sign_key)]
    if args.out:
        check_report_targets(args.out, args.format, field="--out", inputs=inputs)
    notes: list[str] = []
    report = _flagged(lambda: build_report(
        args.ledger, pubkey=pubkey, run_id=args.run_id, policy=args.policy, job=args.job,
        carbon_intensity_g_per_kwh=args.carbon_intensity, cluster_name=args.cluster_name,
        include_unsigned=args.include_unsigned, notes=notes, embodied_g_co2e=args.embodied_g))
    if args.sign_key:
        sign_report(report, args.sign_key, "--sign-key")
    for n in notes:
        print(f"note: {n.replace('include_unsigned', '--include-unsigned')}", file=sys.stderr)
    if not args.out:
        sys.stdout.write(report_json_bytes(report).decode("utf-8"))
        return 0
    files = _flagged(lambda: write_report(report, args.out, args.format, field="--out", inputs=inputs))
    led = report["ledger"]
    print(f"wrote {', '.join(str(f) for f in files)} (ledger head {led['head_hash']} at seq {led['head_seq']}"
          + (f", {led['unsigned_records_used']} unsigned record(s) used" if led["unsigned_records_used"] else "")
          + (f", signed by key {report['integrity']['signature']['key_id']}" if args.sign_key else "") + ")")
    return 0


def _evidence(pubkeys: Optional[Sequence[str]], ledgers: Optional[Sequence[str]], n: int) -> list[MemberEvidence]:
    """One MemberEvidence per input from repeated --pubkey (1 or n) and --ledger (n, '-' for none)."""
    keys = [load_public_key(k, "--pubkey") for k in pubkeys or []]
    if len(keys) not in (0, 1, n):
        raise InputError(f"--pubkey: {len(keys)} key(s) for {n} report(s); give one for all or one per report")
    if ledgers is not None and len(ledgers) != n:
        raise InputError(f"--ledger: {len(ledgers)} ledger(s) for {n} report(s); give one per report ('-' for none)")
    keys = keys * n if len(keys) == 1 else (keys or [None] * n)
    leds = [None if (x is None or x == "-") else x for x in (ledgers or [None] * n)]
    return [MemberEvidence(pubkey=k, ledger=led) for k, led in zip(keys, leds)]


def _problems_exit(source: str, problems: Sequence[str]) -> int:
    for p in problems:
        print(f"{source}: {p}", file=sys.stderr)
    print(f"INVALID: {len(problems)} problem(s)", file=sys.stderr)
    return 1


def _validate_run(args: argparse.Namespace, report: dict) -> tuple[list[str], str]:
    keys = args.pubkey or []
    if len(keys) > 1 or len(args.ledger or []) > 1:
        raise InputError("--pubkey/--ledger: a run report takes one of each; repeat them only with --input")
    pubkey = load_public_key(keys[0], "--pubkey") if keys else None
    ledger = (args.ledger or [None])[0]
    signed = isinstance(report.get("integrity"), dict) and bool(report["integrity"].get("signature"))
    # --pubkey checks the report's signature; an unsigned report passes it only through --ledger
    problems = validate_report(report, pubkey if signed or not ledger else None)
    if problems or not ledger:
        return problems, "provenance claims (ledger section, figures) not checked: pass --ledger (and --pubkey)"
    problems = _flagged(lambda: check_against_ledger(report, ledger, pubkey))
    auth = "signer authenticated by --pubkey" if pubkey is not None else "signer not authenticated (no --pubkey)"
    return problems, (f"rebuilt from {ledger} up to seq {report['ledger']['head_seq']}: the same report in every "
                      f"field, its provenance claims included ({auth})")


def _validate_federated(args: argparse.Namespace, report: dict) -> tuple[list[str], str]:
    if not args.input:
        if args.ledger:
            raise InputError("--ledger: a federated report has no ledger; give its inputs with --input")
        keys = args.pubkey or []
        if len(keys) > 1:
            raise InputError("--pubkey: repeat it only with --input")
        problems = validate_report(report, load_public_key(keys[0], "--pubkey") if keys else None)
        return problems, "federation claims (members, how each was verified, sums) not checked: pass --input"
    problems = validate_report(report)
    if problems:
        return problems, ""
    inputs = [load_report(p, "--input") for p in args.input]
    evidence = _evidence(args.pubkey, args.ledger, len(inputs))
    problems = _flagged(lambda: check_federated(report, inputs, evidence, sources=args.input))
    return problems, f"merged again from its {len(inputs)} input(s), each verified: the same report in every field"


def _validate(args: argparse.Namespace) -> int:
    report = load_report(args.report, "report")
    fed = report.get("report_type") == "federated"
    problems, checked = (_validate_federated if fed else _validate_run)(args, report)
    if problems:
        return _problems_exit(args.report, problems)
    msg = (f"VALID: {args.report} matches the schema, its integrity digest {report['integrity']['content_sha256']} "
           "and its internal sums")
    sig = report["integrity"].get("signature")
    if sig:
        msg += f"; signed by key {sig['key_id']}" + (" (the given --pubkey)" if args.pubkey and not args.input
                                                     else " (embedded key: pass --pubkey to authenticate)")
    print(f"{msg}; {checked}")
    return 0


def _merge(args: argparse.Namespace) -> int:
    reports = [load_report(p, "REPORT") for p in args.reports]
    evidence = _evidence(args.pubkey, args.ledger, len(reports))
    inputs = ([(f"REPORT {p}", p) for p in args.reports] + [("--ledger", x) for x in args.ledger or [] if x != "-"]
              + [("--pubkey", k) for k in args.pubkey or []] + [("--sign-key", args.sign_key)])
    check_report_targets(args.out, "json", field="--out", inputs=inputs)
    merged = _flagged(lambda: merge_reports(reports, evidence=evidence, names=args.name, sources=args.reports))
    if args.sign_key:
        sign_report(merged, args.sign_key, "--sign-key")
    _flagged(lambda: write_report(merged, args.out, "json", field="--out", inputs=inputs))
    print(f"wrote {args.out}: {len(merged['federation']['members'])} member(s), IT "
          f"{merged['energy']['it_energy_j']:.1f} J, facility {merged['energy']['facility_energy_j']:.1f} J")
    return 0


def _render(args: argparse.Namespace) -> int:
    report = load_report(args.report, "report")
    problems = validate_report(report)
    if problems:
        raise InputError(f"{args.report}: not a valid untampered report ({problems[0]}); "
                         "check it with `tao report validate`")
    files = _flagged(lambda: write_report(report, args.out, args.format, field="--out",
                                          inputs=[("the report", args.report)]))
    print(f"wrote {', '.join(str(f) for f in files)}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from tao_core.files import load_json_file
    from tao_core.governance.boamps import boamps_report

    report = load_report(args.report, "report")
    inputs = [("the report", args.report), ("--context", args.context), ("--ledger", args.ledger),
              ("--pubkey", args.pubkey)]
    if args.pubkey and not args.ledger:
        raise InputError("--pubkey: only used with --ledger (it authenticates the ledger's signer)")
    check_report_targets(args.out, "json", field="--out", inputs=inputs)
    problems = validate_report(report)
    if not problems and args.ledger:
        pubkey = load_public_key(args.pubkey, "--pubkey") if args.pubkey else None
        problems = _flagged(lambda: check_against_ledger(report, args.ledger, pubkey))
    if problems:
        raise InputError(f"{args.report}: not a valid untampered report ({problems[0]}); "
                         "check it with `tao report validate`")
    context = load_json_file(args.context, "--context") if args.context else None
    doc = _flagged(lambda: boamps_report(report, context))
    _flagged(lambda: write_report(doc, args.out, "json", field="--out", inputs=inputs))
    print(f"wrote {args.out}: BoAmps 1.1.0 report (validated against its schema) of report "
          f"{report['integrity']['content_sha256']}")
    return 0


def run(args: argparse.Namespace) -> int:
    install_signal_cleanup()
    return {"build": _build, "validate": _validate, "merge": _merge, "render": _render,
            "export": _export}[args.report_command](args)
