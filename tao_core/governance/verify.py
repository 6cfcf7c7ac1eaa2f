"""Reading and verifying a ledger file (see ``ledger.py`` for the format).

``verify_ledger`` reads the file once, line by line, and stops at the first record that
does not verify. Its ``VerifyResult.exit_code`` is what ``tao audit verify`` returns:

* 0 (``intact``): every line is a complete record and every check passes;
* 1 (``bad``): the file was read but is not an intact ledger: a line that is not a
  canonical record (not UTF-8, not JSON, nested deeper than a record can be, longer than
  :data:`MAX_RECORD_BYTES`, wrong fields), a modified, deleted, reordered or inserted
  record, a bad signature, a record appended after the final checkpoint, bytes after the
  last newline that no torn write leaves, or an empty file (a ledger starts with its
  header record);
* 3 (``torn``): every complete record verifies, but the file ends with an unterminated
  line that is a prefix of a record (a writer stopped in the middle of a write).

A file that cannot be read at all (missing, a folder, a FIFO or device, no permission) is
not a verdict on a ledger: ``verify_ledger`` raises ``InputError`` (``tao audit verify``
exits 2).

Which records are signed: a checkpoint's signature covers every record before it. A record
counts as *signed* when a checkpoint after it verifies and no ``recovery`` record declared it
unvouched (a writer that reopens a ledger whose last records are unsigned says so, since it
cannot vouch for what it did not write). ``closed``: the last record is the final
checkpoint ``close()`` writes. After a final checkpoint the only record that may follow is
a checkpoint (a writer reopening the ledger signs one first), so records appended to a
closed ledger without the key fail (exit 1, naming the first of them). In a ledger that is
not closed the records after the last checkpoint are not covered by a signature
(``unsigned_tail``); removing whole records from its end cannot be told from a crash, so
``require_closed`` (``tao audit verify --require-closed``) fails a ledger that is not closed.
"""
from __future__ import annotations

import io
import json
import math
import os
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator, Optional, Union

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tao_core.errors import InputError
from tao_core.files import open_input_file, parse_json_text
from tao_core.governance.canonical import canonical_bytes, sha256_hex
from tao_core.governance.keys import embedded_key, raw_public, verify_signature

GENESIS_PREV = "0" * 64
#: the longest record line (bytes, newline excluded) a writer writes and a reader accepts
MAX_RECORD_BYTES = 1 << 20
#: deepest nesting of a record (record, payload and 30 levels inside the payload)
MAX_RECORD_DEPTH = 32
RECORD_KEYS = frozenset({"seq", "time", "kind", "payload", "prev", "hash"})
CHECKPOINT_KEYS = frozenset({"alg", "covers_seq", "final", "key_id", "public_key", "records", "signature"})
SIGNATURE_CONTEXT = b"tao-ledger-checkpoint/1\n"

PathLike = Union[str, "os.PathLike[str]"]


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
    #: (first, last) seq ranges a recovery record declared unvouched
    unvouched: list[tuple[int, int]] = field(default_factory=list)
    last_final_seq: Optional[int] = None  #: seq of the last final checkpoint
    header_public_key: Optional[str] = None  #: hex of the public key the header names

    @property
    def signed_through_seq(self) -> int:
        """Seq of the last signed checkpoint (0 when none): it and every record before it
        are covered by a signature."""
        return self.last_checkpoint_seq or 0

    @property
    def unsigned_tail(self) -> int:
        """Verified records after the last signed checkpoint (not covered by a signature)."""
        return self.last_seq - self.signed_through_seq

    def is_signed(self, seq: int) -> bool:
        """Whether record ``seq`` is covered by a checkpoint signature and not declared unvouched."""
        return seq <= self.signed_through_seq and not any(a <= seq <= b for a, b in self.unvouched)

    @property
    def exit_code(self) -> int:
        return {"intact": 0, "bad": 1, "torn": 3}[self.status]

    def signer_text(self) -> str:
        if self.pubkey_checked and self.key_ids:
            return f"signatures checked against the given public key {self.key_ids[0]}"
        if self.key_ids:
            return f"signed by embedded key {', '.join(self.key_ids)} (not authenticated: no public key given)"
        return "no signed checkpoint"

    def state_text(self) -> str:
        if self.closed:
            return "closed"
        if not self.unsigned_tail:
            return "not closed"
        return (f"not closed: {self.unsigned_tail} trailing record(s) (seq {self.signed_through_seq + 1}.."
                f"{self.last_seq}) not covered by a signature")

    def message(self) -> str:
        """One human-readable line on the outcome."""
        if self.status == "bad":
            where = f"seq {self.first_bad_seq} (line {self.first_bad_line})" if self.first_bad_seq else "ledger"
            return f"FAILED at {where}: {self.reason}; {self.records} record(s) before it verified"
        base = (f"{self.records} record(s) verified, head {self.head_hash}, {self.checkpoints} checkpoint(s), "
                f"{self.signer_text()}, {self.state_text()}")
        if self.unvouched:
            base += "; unvouched on reopen: " + ", ".join(f"seq {a}..{b}" for a, b in self.unvouched)
        if self.status == "torn":
            return (f"TORN: {base}; the last line is incomplete ({self.torn_bytes} byte(s) after record "
                    f"{self.last_seq}: {self.reason})")
        return f"OK: {base}"


class _Bad(Exception):
    """A line that does not verify: the reason."""


def _lines(stream: BinaryIO) -> Iterator[tuple[bytes, bool]]:
    """(line without its newline, complete) for each line; the last one may be incomplete.
    A line longer than MAX_RECORD_BYTES is yielded cut short, as incomplete."""
    while True:
        line = stream.readline(MAX_RECORD_BYTES + 2)
        if not line:
            return
        if line.endswith(b"\n"):
            yield line[:-1], True
        else:
            yield line, False
            return


def _parse_line(line: bytes) -> dict:
    """The record on one complete line, checked for form (not yet for its place in the chain)."""
    if not line:
        raise _Bad("empty line")
    if len(line) > MAX_RECORD_BYTES:
        raise _Bad(f"line longer than {MAX_RECORD_BYTES} bytes (no writer writes such a record)")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Bad(f"not UTF-8 text (bad byte at offset {exc.start})") from None
    try:
        rec = parse_json_text(text, "record", max_depth=MAX_RECORD_DEPTH)
    except InputError as exc:
        raise _Bad(f"not a valid JSON record ({str(exc).split(': ', 1)[-1]})") from None
    if not isinstance(rec, dict) or set(rec) != RECORD_KEYS:
        raise _Bad(f"record must have exactly the fields {sorted(RECORD_KEYS)}")
    try:
        canon = canonical_bytes(rec)
    except (ValueError, UnicodeEncodeError) as exc:
        raise _Bad(f"record cannot be re-encoded ({exc})") from None
    if canon != line:
        raise _Bad("bytes are not the canonical form of the record (modified)")
    return rec


class _Walk:
    """The state of one pass over a ledger's records."""

    def __init__(self, res: VerifyResult, pubkey: Optional[Ed25519PublicKey]) -> None:
        self.res = res
        self.pubkey = pubkey
        self.pinned: Optional[str] = raw_public(pubkey).hex() if pubkey is not None else None
        self.prev = GENESIS_PREV
        self.after_final = False  #: the last record was a final checkpoint

    @property
    def expected(self) -> int:
        return self.res.last_seq + 1

    def check_place(self, rec: dict) -> None:
        seq = rec["seq"]
        if not isinstance(seq, int) or isinstance(seq, bool):
            raise _Bad("seq is not an integer")
        if seq != self.expected:
            if seq > self.expected:
                raise _Bad(f"found seq {seq} where {self.expected} was expected: "
                           f"record(s) {self.expected}..{seq - 1} deleted")
            raise _Bad(f"found seq {seq} where {self.expected} was expected: record reordered, duplicated or inserted")
        if rec["hash"] != record_hash(rec):
            raise _Bad("hash does not match the record's content (modified)")
        if rec["prev"] != self.prev:
            if seq == 1:
                raise _Bad("first record's prev is not the genesis value (records deleted before it)")
            raise _Bad("prev does not match the SHA-256 of the previous record (this record or the one before it "
                       "was modified, or a record was inserted or deleted)")
        t = rec["time"]
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
            raise _Bad("time is not a finite number")
        if not isinstance(rec["kind"], str) or not rec["kind"]:
            raise _Bad("kind is not a non-empty string")
        if not isinstance(rec["payload"], dict):
            raise _Bad("payload is not a JSON object")

    def check_kind(self, rec: dict) -> None:
        kind, seq = rec["kind"], rec["seq"]
        if (seq == 1) != (kind == "ledger"):
            raise _Bad("the first record must be the ledger header, and only the first" if seq == 1
                       else "a ledger header record after the first record (inserted)")
        if self.after_final and kind != "checkpoint":
            raise _Bad(f"{kind} record follows the final checkpoint at seq {seq - 1}: appended after the ledger "
                       "was closed, and no signature covers it")
        if kind == "ledger":
            self.check_header(rec["payload"])
        elif kind == "checkpoint":
            self.check_checkpoint(rec)
        elif kind == "recovery":
            self.check_recovery(rec)

    def check_header(self, p: dict) -> None:
        key_hex, kid = p.get("public_key"), p.get("key_id")
        if not isinstance(key_hex, str) or not isinstance(kid, str):
            raise _Bad("ledger header does not name its signer's key_id and public_key")
        _, why = embedded_key(key_hex, kid, self.pubkey, "ledger header")
        if why is not None:
            raise _Bad(why)
        self.pinned = key_hex  # checkpoints must be signed by the key the header names
        self.res.header_public_key = key_hex

    def check_checkpoint(self, rec: dict) -> None:
        p = rec["payload"]
        if set(p) != CHECKPOINT_KEYS:
            raise _Bad(f"checkpoint payload has fields {sorted(p)}, expected {sorted(CHECKPOINT_KEYS)}")
        if p["alg"] != "ed25519":
            raise _Bad(f"checkpoint algorithm {p['alg']!r} is not ed25519")
        if p["covers_seq"] != rec["seq"] - 1 or p["records"] != rec["seq"] - 1:
            raise _Bad("checkpoint covers_seq/records do not match its position")
        if not isinstance(p["final"], bool) or not isinstance(p["public_key"], str) or not isinstance(p["key_id"], str):
            raise _Bad("checkpoint fields final, key_id or public_key have the wrong type")
        embedded, why = embedded_key(p["public_key"], p["key_id"], self.pubkey, "checkpoint")
        if why is not None:
            raise _Bad(why)
        if self.pubkey is None and p["public_key"] != self.pinned:
            raise _Bad(f"checkpoint signed by key {p['key_id']}, not by the ledger's key (named in the ledger header)")
        check_key = self.pubkey if self.pubkey is not None else embedded
        if not isinstance(p["signature"], str) or not verify_signature(check_key, p["signature"], checkpoint_message(rec)):
            raise _Bad("bad signature on checkpoint")
        res = self.res
        if p["key_id"] not in res.key_ids:
            res.key_ids.append(p["key_id"])
        res.public_key = p["public_key"]
        res.checkpoints += 1
        res.last_checkpoint_seq = rec["seq"]
        if p["final"]:
            res.last_final_seq = rec["seq"]

    def check_recovery(self, rec: dict) -> None:
        span = rec["payload"].get("unvouched_seqs")
        if span is None:
            return
        ok = (isinstance(span, list) and len(span) == 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in span)
              and 1 <= span[0] <= span[1] < rec["seq"])
        if not ok:
            raise _Bad("recovery record's unvouched_seqs is not a [first, last] range of earlier records")
        self.res.unvouched.append((span[0], span[1]))

    def accept(self, rec: dict, end_offset: int, collect: bool) -> None:
        res = self.res
        self.prev = rec["hash"]
        res.records += 1
        res.last_seq = rec["seq"]
        res.head_hash = rec["hash"]
        res.valid_bytes = end_offset
        res.first_time = rec["time"] if res.first_time is None else res.first_time
        res.last_time = rec["time"]
        res.kinds[rec["kind"]] = res.kinds.get(rec["kind"], 0) + 1
        self.after_final = rec["kind"] == "checkpoint" and rec["payload"]["final"] is True
        res.closed = self.after_final
        if collect:
            res.records_list.append(rec)


def _fail(res: VerifyResult, seq: int, line: int, reason: str) -> VerifyResult:
    res.status = "bad"
    res.first_bad_seq = seq
    res.first_bad_line = line
    res.reason = reason
    return res


def _torn_tail(res: VerifyResult, tail: bytes, line_no: int) -> VerifyResult:
    """Classify an unterminated last line: a prefix of a record (torn) or not (bad)."""
    if len(tail) > MAX_RECORD_BYTES:
        return _fail(res, res.last_seq + 1, line_no, f"line longer than {MAX_RECORD_BYTES} bytes "
                                                      "(no writer writes such a record)")
    text = tail.decode("utf-8", errors="replace")
    try:
        _, end = json.JSONDecoder().raw_decode(text)
    except (ValueError, RecursionError):
        end = None
    if end is not None and end < len(text):
        return _fail(res, res.last_seq + 1, line_no,
                     "unterminated last line holds a complete JSON value followed by extra bytes "
                     "(modified; a torn write leaves a prefix of a record)")
    if not b'{"hash":"'.startswith(tail[:9]):
        return _fail(res, res.last_seq + 1, line_no,
                     "unterminated last line is not the start of a record (modified; a torn write leaves a prefix "
                     "of a record)")
    res.status = "torn"
    res.torn_bytes = len(tail)
    res.reason = "a complete record without its newline" if end is not None else "a partial record"
    return res


def verify_stream(stream: BinaryIO, *, path: str = "<ledger>", pubkey: Optional[Ed25519PublicKey] = None,
                  collect: bool = False, require_closed: bool = False) -> VerifyResult:
    """Verify the ledger read from the binary ``stream`` (see the module docstring)."""
    res = VerifyResult(path=path, pubkey_checked=pubkey is not None)
    if collect:
        res.records_list = []
    walk = _Walk(res, pubkey)
    offset = line_no = 0
    for line, complete in _lines(stream):
        line_no += 1
        if not complete:
            return _torn_tail(res, line, line_no)
        try:
            rec = _parse_line(line)
            walk.check_place(rec)
            walk.check_kind(rec)
        except _Bad as exc:
            return _fail(res, walk.expected, line_no, str(exc))
        offset += len(line) + 1
        walk.accept(rec, offset, collect)
    return _final_checks(res, pubkey, require_closed)


def _final_checks(res: VerifyResult, pubkey: Optional[Ed25519PublicKey], require_closed: bool) -> VerifyResult:
    if res.records == 0:
        return _fail(res, 1, 1, "empty file: a ledger starts with its header record")
    if pubkey is not None and res.checkpoints == 0:
        return _fail(res, res.last_seq + 1, res.last_seq + 1,
                     "no signed checkpoint: nothing in the ledger is authenticated by the given key")
    if require_closed and not res.closed:
        return _fail(res, res.signed_through_seq + 1 if res.unsigned_tail else res.last_seq + 1,
                     res.signed_through_seq + 1 if res.unsigned_tail else res.last_seq + 1,
                     f"ledger not closed: no final checkpoint after seq {res.last_seq}"
                     + (f"; records {res.signed_through_seq + 1}..{res.last_seq} are not covered by a signature"
                        if res.unsigned_tail else "")
                     + " (records after it may have been removed, or the writer stopped)")
    return res


def verify_bytes(data: bytes, *, path: str = "<ledger>", pubkey: Optional[Ed25519PublicKey] = None,
                 collect: bool = False, require_closed: bool = False) -> VerifyResult:
    """Verify ledger ``data`` (the whole file's bytes). See the module docstring."""
    return verify_stream(io.BytesIO(data), path=path, pubkey=pubkey, collect=collect, require_closed=require_closed)


def verify_ledger(path: PathLike, pubkey: Optional[Ed25519PublicKey] = None, *, collect: bool = False,
                  require_closed: bool = False, field: str = "ledger") -> VerifyResult:
    """Verify the ledger file at ``path``; ``pubkey``: check every checkpoint against this
    key only (keys found inside the ledger are then not trusted). ``collect``: keep the
    verified records in ``result.records_list``. ``require_closed``: a ledger that does
    not end with its final checkpoint fails. Raises ``InputError`` (naming ``field``) when
    the file cannot be read."""
    with open_input_file(path, field) as stream:
        try:
            return verify_stream(stream, path=str(path), pubkey=pubkey, collect=collect, require_closed=require_closed)
        except OSError as exc:
            raise InputError(f"{field} {path}: cannot be read ({exc.strerror}); check the file") from None


def read_records(path: PathLike, pubkey: Optional[Ed25519PublicKey] = None) -> tuple[list[dict], VerifyResult]:
    """The verified records of a ledger and the verification result (records up to the
    first bad one when it fails)."""
    res = verify_ledger(path, pubkey, collect=True)
    return list(res.records_list or []), res
