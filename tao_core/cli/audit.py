"""``tao audit``: check and summarise a decision ledger.

``tao audit verify LEDGER [--pubkey KEY] [--require-closed] [--json]``: exit 0 when intact;
1 when the file was read but is not an intact ledger: any modified, deleted, reordered or
inserted record, a bad signature, a record appended after the final checkpoint, a line that
is not a record (not UTF-8, not JSON, nested too deeply, longer than a record can be) or an
empty file, naming the first bad sequence number and why (with ``--require-closed`` also a
ledger that does not end with its final checkpoint); 3 when every complete record verifies
but the last line is torn; 2 when the ledger or key cannot be read at all (missing, a
folder, FIFO or device, no permission, not a key) or on usage errors.

``tao audit show LEDGER [--pubkey KEY] [--json]``: records per kind, time span, head hash,
checkpoints, signed range and signer (exit codes as for verify).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
from typing import Any, Optional

from tao_core.files import install_signal_cleanup
from tao_core.governance.keys import load_public_key
from tao_core.governance.verify import VerifyResult, verify_ledger


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("audit", help="verify or summarise a decision ledger",
                              description="Verify or summarise a TAO decision ledger.")
    sub = p.add_subparsers(dest="audit_command", metavar="ACTION")
    sub.required = True
    v = sub.add_parser("verify", help="check hash chain and signatures",
                       description="Exit 0 intact, 1 not an intact ledger (tampered, malformed or empty), "
                                   "3 torn last line, 2 unreadable input or usage error.")
    v.add_argument("ledger", help="ledger file (JSON Lines)")
    v.add_argument("--pubkey", help="the signer's public key (PEM or 64 hex digits); "
                   "without it the keys embedded in the ledger are used and the signer is not authenticated")
    v.add_argument("--require-closed", action="store_true",
                   help="fail (exit 1) unless the ledger ends with the final checkpoint written at close")
    v.add_argument("--json", action="store_true", help="print the result as JSON")
    v.set_defaults(func=run)
    s = sub.add_parser("show", help="summarise a ledger")
    s.add_argument("ledger", help="ledger file (JSON Lines)")
    s.add_argument("--pubkey", help="the signer's public key (PEM or 64 hex digits)")
    s.add_argument("--json", action="store_true", help="print the summary as JSON")
    s.set_defaults(func=run, require_closed=False)
    p.set_defaults(func=run)


def _verify(args: argparse.Namespace) -> VerifyResult:
    pubkey = load_public_key(args.pubkey, "--pubkey") if args.pubkey else None
    return verify_ledger(args.ledger, pubkey, require_closed=bool(getattr(args, "require_closed", False)),
                         field="ledger")


def _iso(t: Optional[float]) -> Optional[str]:
    if t is None:
        return None
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).isoformat(timespec="seconds")


def _as_dict(res: VerifyResult) -> dict:
    return {
        "path": res.path, "status": res.status, "exit_code": res.exit_code, "records_verified": res.records,
        "last_seq": res.last_seq, "head_hash": res.head_hash, "first_bad_seq": res.first_bad_seq,
        "first_bad_line": res.first_bad_line, "reason": res.reason, "torn_bytes": res.torn_bytes,
        "checkpoints": res.checkpoints, "last_checkpoint_seq": res.last_checkpoint_seq,
        "signed_through_seq": res.signed_through_seq, "unsigned_tail": res.unsigned_tail,
        "unvouched_seqs": [list(r) for r in res.unvouched], "closed": res.closed, "key_ids": res.key_ids,
        "public_key": res.public_key, "signer_authenticated": res.pubkey_checked and bool(res.key_ids),
        "records_per_kind": dict(sorted(res.kinds.items())),
        "first_time": _iso(res.first_time), "last_time": _iso(res.last_time),
    }


def _show_lines(res: VerifyResult, d: dict) -> list[str]:
    span = ""
    if res.first_time is not None and res.last_time is not None:
        span = f"{d['first_time']} .. {d['last_time']} ({res.last_time - res.first_time:.1f} s)"
    signer = ", ".join(res.key_ids) or "none"
    signer += " (checked against --pubkey)" if d["signer_authenticated"] else " (embedded key, not authenticated)"
    status = f"{res.status}" + (f": {res.reason}" if res.reason else "")
    status += f" (first bad seq {res.first_bad_seq})" if res.first_bad_seq else ""
    return [
        f"ledger      {res.path}",
        f"status      {status}",
        f"records     {res.records} (last seq {res.last_seq})",
        "per kind    " + ", ".join(f"{k}={n}" for k, n in d["records_per_kind"].items()),
        f"time span   {span}",
        f"head hash   {res.head_hash}",
        f"checkpoints {res.checkpoints} (signed through seq {res.signed_through_seq}); {res.state_text()}",
        f"signer      {signer}",
    ]


def run(args: argparse.Namespace) -> int:
    install_signal_cleanup()
    res = _verify(args)
    if args.json:
        print(json.dumps(_as_dict(res), indent=2))
    elif args.audit_command == "verify":
        print(res.message(), file=sys.stdout if res.status == "intact" else sys.stderr)
    else:
        print("\n".join(_show_lines(res, _as_dict(res))))
    return res.exit_code
