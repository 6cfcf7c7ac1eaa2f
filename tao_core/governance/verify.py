"""Reading and verifying a ledger file (see ``ledger.py`` for the format).

``verify_ledger`` walks the file once and stops at the first record that does not verify.
It returns a ``VerifyResult`` whose ``exit_code`` is what ``tao audit verify`` returns:

* 0 (``intact``): every line is a complete record and every check passes;
* 1 (``bad``): some complete line fails a check (modified, deleted, reordered or inserted
  record, bad signature, or bytes after the last newline that cannot be a torn write);
* 3 (``torn``): every complete record verifies, but the file ends with an unterminated
  line that is a prefix of a record (a writer stopped in the middle of a write).

What a torn tail can and cannot be: each record is written with one ``write`` of its whole
line, so a crash leaves at most one partial line, which is a *prefix* of a canonical record
line. A byte changed in the last line leaves its newline in place (the line is then a
complete, failing record: exit 1); a changed final newline leaves a complete JSON record
followed by a stray byte, which no torn write produces (exit 1). Removing whole records
from the end of a ledger that was never closed cannot be told from a crash: the result
reports ``closed`` (the last record is the final checkpoint ``close()`` writes) and
``unsigned_tail`` (records after the last signed checkpoint); ``tao audit verify
--require-closed`` turns an unclosed ledger into exit 1.
"""
from __future__ import annotations

import json
import math
import os
import pathlib
from dataclasses import dataclass, field
from typing import Optional, Union

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tao_core.governance.canonical import canonical_bytes, sha256_hex  # noqa: F401
from tao_core.governance.keys import embedded_key, raw_public, verify_signature

GENESIS_PREV = "0" * 64
RECORD_KEYS = frozenset({"seq", "time", "kind", "payload", "prev", "hash"})
CHECKPOINT_KEYS = frozenset({"alg", "covers_seq", "final", "key_id", "public_key", "records", "signature"})
SIGNATURE_CONTEXT = b"tao-ledger-checkpoint/1\n"


def record_hash(record: dict) -> str:
    """SHA-256 (hex) of the canonical bytes of ``record`` without its ``hash`` field: the
    value the record's own ``hash`` holds and the next record's ``prev`` repeats."""
    return sha256_hex(canonical_bytes({k: v for k, v in record.items() if k != "hash"}))


def checkpoint_message(record: dict) -> bytes:
    """The bytes a checkpoint's signature covers: a context string, then the canonical
    bytes of the checkpoint record without ``hash`` and without ``payload.signature``.
    The record's ``prev`` is the hash of the record before it (the chain head), so the
    signature covers every earlier record."""
    unsigned = {k: v for k, v in record.items() if k != "hash"}
    unsigned["payload"] = {k: v for k, v in record["payload"].items() if k != "signature"}
    return SIGNATURE_CONTEXT + canonical_bytes(unsigned)


@dataclass
class VerifyResult:
    """Outcome of verifying one ledger file."""

    path: str
    status: str = "intact"  #: intact, bad or torn
    records: int = 0  #: complete records that verified
    last_seq: int = 0  #: sequence number of the last verified record
    head_hash: str = GENESIS_PREV  #: hash of the last verified record (the chain head)
    valid_bytes: int = 0  #: file offset just past the last verified record's newline
    first_bad_seq: Optional[int] = None
    first_bad_line: Optional[int] = None
    reason: str = ""
    torn_bytes: int = 0
    checkpoints: int = 0
    last_checkpoint_seq: Optional[int] = None
    closed: bool = False
    key_ids: list[str] = field(default_factory=list)
    public_key: Optional[str] = None  #: hex of the signer's public key seen in checkpoints
    pubkey_checked: bool = False  #: signatures were checked against a key the caller gave
    kinds: dict[str, int] = field(default_factory=dict)
    first_time: Optional[float] = None
    last_time: Optional[float] = None
    records_list: Optional[list[dict]] = None

    @property
    def unsigned_tail(self) -> int:
        """Verified records after the last signed checkpoint (not covered by a signature)."""
        return self.last_seq - (self.last_checkpoint_seq or 0)

    @property
    def exit_code(self) -> int:
        return {"intact": 0, "bad": 1, "torn": 3}[self.status]

    def message(self) -> str:
        """One human-readable line on the outcome."""
        if self.status == "bad":
            where = f"seq {self.first_bad_seq} (line {self.first_bad_line})" if self.first_bad_seq else "ledger"
            return (
                f"FAILED at {where}: {self.reason}; {self.records} record(s) before it verified"
            )
        signer = (
            f"signatures checked against the given public key {self.key_ids[0]}"
            if self.pubkey_checked and self.key_ids
            else (f"signed by embedded key {', '.join(self.key_ids)} (not authenticated: pass --pubkey)"
                  if self.key_ids else "no signed checkpoint")
        )
        state = "closed" if self.closed else f"not closed, {self.unsigned_tail} record(s) after the last signed checkpoint"
        base = f"{self.records} record(s) verified, head {self.head_hash}, {self.checkpoints} checkpoint(s), {signer}, {state}"
        if self.status == "torn":
            return f"TORN: {base}; the last line is incomplete ({self.torn_bytes} byte(s) after record {self.last_seq}: {self.reason})"
        return f"OK: {base}"


def _fail(res: VerifyResult, seq: int, line: int, reason: str) -> VerifyResult:
    res.status = "bad"
    res.first_bad_seq = seq
    res.first_bad_line = line
    res.reason = reason
    return res


def _check_checkpoint(
    res: VerifyResult, rec: dict, pubkey: Optional[Ed25519PublicKey], pinned_hex: Optional[str]
) -> Optional[str]:
    """None when the checkpoint record verifies, else the reason it does not."""
    p = rec["payload"]
    if set(p) != CHECKPOINT_KEYS:
        return f"checkpoint payload has fields {sorted(p)}, expected {sorted(CHECKPOINT_KEYS)}"
    if p["alg"] != "ed25519":
        return f"checkpoint algorithm {p['alg']!r} is not ed25519"
    if p["covers_seq"] != rec["seq"] - 1 or p["records"] != rec["seq"] - 1:
        return "checkpoint covers_seq/records do not match its position"
    if not isinstance(p["final"], bool):
        return "checkpoint field final is not a boolean"
    if not isinstance(p["public_key"], str):
        return "checkpoint public_key is not a string"
    embedded, why = embedded_key(p["public_key"], p["key_id"], pubkey, "checkpoint")
    if why is not None:
        return why
    if pubkey is not None:
        check_key = pubkey
    else:
        if pinned_hex is not None and p["public_key"] != pinned_hex:
            first = res.key_ids[0] if res.key_ids else "named in the ledger header"
            return f"checkpoint signed by key {p['key_id']}, not by the ledger's key ({first})"
        check_key = embedded
    if not isinstance(p["signature"], str) or not verify_signature(check_key, p["signature"], checkpoint_message(rec)):
        return "bad signature on checkpoint"
    return None


def verify_bytes(
    data: bytes,
    *,
    path: str = "<ledger>",
    pubkey: Optional[Ed25519PublicKey] = None,
    collect: bool = False,
) -> VerifyResult:
    """Verify ledger ``data`` (the whole file's bytes). See the module docstring."""
    res = VerifyResult(path=path, pubkey_checked=pubkey is not None)
    if collect:
        res.records_list = []
    prev = GENESIS_PREV
    expected = 1
    offset = 0
    line_no = 0
    pinned: Optional[str] = raw_public(pubkey).hex() if pubkey is not None else None
    n = len(data)
    while offset < n:
        nl = data.find(b"\n", offset)
        if nl < 0:
            break  # unterminated tail, handled below
        line = data[offset:nl]
        line_no += 1
        if not line:
            return _fail(res, expected, line_no, "empty line")
        try:
            rec = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            return _fail(res, expected, line_no, f"not a valid JSON record ({exc})")
        if not isinstance(rec, dict) or set(rec) != RECORD_KEYS:
            return _fail(res, expected, line_no, f"record must have exactly the fields {sorted(RECORD_KEYS)}")
        try:
            canon = canonical_bytes(rec)
        except ValueError as exc:
            return _fail(res, expected, line_no, f"record cannot be re-encoded ({exc})")
        if canon != line:
            return _fail(res, expected, line_no, "bytes are not the canonical form of the record (modified)")
        seq = rec["seq"]
        if not isinstance(seq, int) or isinstance(seq, bool):
            return _fail(res, expected, line_no, "seq is not an integer")
        if seq != expected:
            if seq > expected:
                why = f"found seq {seq} where {expected} was expected: record(s) {expected}..{seq - 1} deleted"
            else:
                why = f"found seq {seq} where {expected} was expected: record reordered, duplicated or inserted"
            return _fail(res, expected, line_no, why)
        if rec["hash"] != record_hash(rec):
            return _fail(res, expected, line_no, "hash does not match the record's content (modified)")
        if rec["prev"] != prev:
            why = (
                "prev does not match the SHA-256 of the previous record "
                "(this record or the one before it was modified, or a record was inserted or deleted)"
                if expected > 1
                else "first record's prev is not the genesis value (records deleted before it)"
            )
            return _fail(res, expected, line_no, why)
        t = rec["time"]
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
            return _fail(res, expected, line_no, "time is not a finite number")
        kind = rec["kind"]
        if not isinstance(kind, str) or not kind:
            return _fail(res, expected, line_no, "kind is not a non-empty string")
        if not isinstance(rec["payload"], dict):
            return _fail(res, expected, line_no, "payload is not a JSON object")
        if kind == "ledger" and seq == 1 and pinned is None:
            hk = rec["payload"].get("public_key")
            if isinstance(hk, str):
                pinned = hk  # later checkpoints must be signed by the key the header names
        if kind == "checkpoint":
            why = _check_checkpoint(res, rec, pubkey, pinned)
            if why:
                return _fail(res, expected, line_no, why)
            p = rec["payload"]
            if pinned is None:
                pinned = p["public_key"]
            if p["key_id"] not in res.key_ids:
                res.key_ids.append(p["key_id"])
            res.public_key = p["public_key"]
            res.checkpoints += 1
            res.last_checkpoint_seq = seq
        # a record verifies
        prev = rec["hash"]
        res.records += 1
        res.last_seq = seq
        res.head_hash = prev
        res.valid_bytes = nl + 1
        res.first_time = t if res.first_time is None else res.first_time
        res.last_time = t
        res.kinds[kind] = res.kinds.get(kind, 0) + 1
        res.closed = kind == "checkpoint" and rec["payload"]["final"] is True
        if collect:
            res.records_list.append(rec)
        expected += 1
        offset = nl + 1
    if offset < n:
        tail = data[offset:]
        line_no += 1
        text = tail.decode("utf-8", errors="replace")
        try:
            _, end = json.JSONDecoder().raw_decode(text)
        except ValueError:
            end = None
        if end is not None and end < len(text):
            return _fail(
                res, expected, line_no,
                "unterminated last line holds a complete JSON value followed by extra bytes "
                "(modified; a torn write leaves a prefix of a record)",
            )
        res.status = "torn"
        res.torn_bytes = len(tail)
        res.reason = (
            "a complete record without its newline" if end is not None else "a partial record"
        )
    return res


def verify_ledger(
    path: Union[str, "os.PathLike[str]"],
    pubkey: Optional[Ed25519PublicKey] = None,
    *,
    collect: bool = False,
) -> VerifyResult:
    """Verify the ledger file at ``path``; ``pubkey``: check every checkpoint against this
    key only (keys found inside the ledger are then not trusted). ``collect``: keep the
    verified records in ``result.records_list``. Raises ``OSError`` when unreadable."""
    data = pathlib.Path(path).read_bytes()
    return verify_bytes(data, path=str(path), pubkey=pubkey, collect=collect)


def read_records(path: Union[str, "os.PathLike[str]"], pubkey: Optional[Ed25519PublicKey] = None) -> tuple[list[dict], VerifyResult]:
    """The verified records of a ledger and the verification result (records up to the
    first bad one when it fails)."""
    res = verify_ledger(path, pubkey, collect=True)
    return list(res.records_list or []), res
