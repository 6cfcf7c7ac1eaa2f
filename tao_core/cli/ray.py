"""``tao ray report``: the energy report of the TAO session on a running Ray cluster, or of
one Ray job on it (a job id or a Ray Jobs submission id). Ray is imported only when the
command runs (``pip install 'tao-energy[ray]'``)."""
from __future__ import annotations

import argparse
import json
from typing import Any

from tao_core.errors import InputError


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("ray", help="TAO on a running Ray cluster",
                              description="Read the energy of a running TAO session on a Ray cluster.")
    sub = p.add_subparsers(dest="ray_command", metavar="ACTION")
    sub.required = True
    r = sub.add_parser("report", help="energy report of the session, or of one job, from the running cluster")
    r.add_argument("--address", required=True, help="Ray cluster address (e.g. auto, HOST:6379)")
    r.add_argument("--job", help="one Ray job: its job id or Ray Jobs submission id")
    r.add_argument("--token", help="the session token (default $TAO_RAY_TOKEN, else --token-file)")
    r.add_argument("--token-file", help="file holding the token (default: where the driver wrote it)")
    r.add_argument("--out", help="write the JSON energy report here")
    r.add_argument("--ledger", help="also write the records to this signed ledger")
    r.add_argument("--json", action="store_true", help="print the report's energy section as JSON")
    r.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        from tao_ray import remote_report
    except ImportError as exc:
        raise InputError(f"tao ray needs Ray: pip install 'tao-energy[ray]' ({exc})") from None
    from tao_core.live.token import load_token

    token = load_token("ray", args.token, args.token_file)
    df, rep = remote_report.build(args.address, token, job=args.job, path=args.out, ledger=args.ledger)
    e = rep["energy"]
    if args.json:
        print(json.dumps({"subject": rep["subject"], "energy": e}, indent=1, default=str))
        return 0
    print(f"{'job':<12}{'tasks':>8}{'energy (J)':>14}")
    for row in e["by_job"]:
        print(f"{str(row['job']):<12}{row.get('tasks') or '':>8}{row['energy_j']:>14.1f}")
    print(f"IT energy {e['it_energy_j']:.1f} J (idle {e['idle_energy_j'] or 0:.1f} J), "
          f"{len(df)} tasks; source {', '.join(sorted(set(df['source']))) or 'none'}")
    for note in df.attrs["summary"]["not_accounted"]:
        print(f"not accounted: {note}")
    return 0
