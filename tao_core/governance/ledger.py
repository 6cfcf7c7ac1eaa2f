"""The decision ledger: an append-only, hash-chained, signed JSON Lines file.

Format (``tao-ledger/1``). Each line is the canonical JSON (``canonical.py``) of one record
followed by ``\\n``::

    {"hash": hex, "kind": str, "payload": {...}, "prev": hex, "seq": int, "time": float}

``seq`` counts from 1 and equals the line number. ``time`` is wall-clock seconds since the
Unix epoch (UTC) when the record was written. ``hash`` is the lower-case hex SHA-256 of the
canonical bytes of the record without its ``hash`` field; ``prev`` repeats the previous
record's ``hash`` (``"0" * 64`` for record 1), which chains every record to all before it.
The own ``hash`` makes a damaged record detectable even when it is the last one. Record 1
is a ``ledger`` header naming the format and the signer's key id and public key.

Checkpoints: every ``checkpoint_every`` records and at ``close()`` the writer appends a
``checkpoint`` record whose payload holds ``alg`` ("ed25519"), ``covers_seq`` and
``records`` (the seq of the record before it), ``final`` (true only for the one ``close()``
writes), ``key_id``, ``public_key`` (hex of the raw 32 bytes) and ``signature``: Ed25519
over ``b"tao-ledger-checkpoint/1\\n"`` + the canonical bytes of the checkpoint record without
``hash`` and ``payload.signature``. The checkpoint's ``prev`` is the chain head, so the signature covers
every record before it.

Keys: the private key is read from ``key_path`` or generated there (PKCS#8 PEM, mode 0600);
default ``LEDGER.key`` beside the ledger. It is never written into the ledger. The public
key is written to ``LEDGER.pub`` (PEM) and embedded in the header and checkpoints; a
verifier that wants to know *who* signed must obtain the public key out of band and pass
it (``tao audit verify --pubkey``), because anyone who rewrites a ledger can re-sign it
with a key of their own.

Crash safety: each record is one ``os.write`` of its whole line on a file opened with
``O_APPEND``, so after a crash the file holds whole records followed by at most one
partial line (``verify.py`` reports it as a torn tail and verifies everything before it).
``fsync`` policy: ``"checkpoint"`` (default) calls ``fsync`` after every checkpoint and at
close; ``"always"`` after every record; ``"never"`` leaves it to the operating system. A
killed process loses nothing it wrote (the data is in the kernel's page cache); ``fsync``
guards against a power loss or kernel crash, which can lose records written since the last
``fsync``. An exclusive ``flock`` keeps a second writer out.

Reopening an existing ledger verifies it first (chain and signatures, under the same key)
and continues the chain; a torn last line is cut off and a ``recovery`` record notes how
many bytes were dropped and their SHA-256. A ledger that fails verification is not
appended to.
"""
from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import pathlib
import threading
import time
from typing import Any, Mapping, Optional, Union

from tao_core.errors import InputError
from tao_core.governance.canonical import CANONICAL_FORM, canonical_bytes, sha256_hex, to_jsonable
from tao_core.governance.keys import key_id, load_or_create_private_key, raw_public, write_public_key
from tao_core.governance.verify import GENESIS_PREV, checkpoint_message, verify_bytes

FORMAT = "tao-ledger/1"
RESERVED_KINDS = frozenset({"ledger", "checkpoint", "recovery"})
FSYNC_POLICIES = ("checkpoint", "always", "never")

PathLike = Union[str, "os.PathLike[str]"]


def default_key_path(ledger_path: PathLike) -> pathlib.Path:
    """``LEDGER.key`` beside the ledger."""
    p = pathlib.Path(ledger_path)
    return p.with_name(p.name + ".key")


def default_pub_path(ledger_path: PathLike) -> pathlib.Path:
    """``LEDGER.pub`` beside the ledger."""
    p = pathlib.Path(ledger_path)
    return p.with_name(p.name + ".pub")


class Ledger:
    """Append-only writer of one ledger file. Thread safe; one writer per file.

    ``path``: the ledger (created when missing, continued when present). ``key_path``: the
    Ed25519 private key (created when missing; default ``LEDGER.key``). ``checkpoint_every``:
    records between signed checkpoints (>= 1). ``fsync``: ``"checkpoint"``, ``"always"``
    or ``"never"`` (see the module docstring). ``pub_path``: where to write the public key
    (default ``LEDGER.pub``; None-like empty string to skip).
    """

    def __init__(
        self,
        path: PathLike,
        key_path: Optional[PathLike] = None,
        checkpoint_every: int = 1000,
        *,
        fsync: str = "checkpoint",
        pub_path: Optional[PathLike] = None,
    ) -> None:
        if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 1:
            raise InputError(f"checkpoint_every={checkpoint_every!r}: must be an integer >= 1")
        if fsync not in FSYNC_POLICIES:
            raise InputError(f"fsync={fsync!r}: must be one of {', '.join(FSYNC_POLICIES)}")
        self.path = pathlib.Path(path)
        self.key_path = pathlib.Path(key_path) if key_path is not None else default_key_path(self.path)
        if self.key_path.resolve() == self.path.resolve():
            raise InputError("key_path: must not be the ledger itself; keep the private key in its own file")
        self.checkpoint_every = checkpoint_every
        self.fsync_policy = fsync
        self._lock = threading.Lock()
        self._fd: Optional[int] = None
        self._closed = False

        self._key, _ = load_or_create_private_key(self.key_path)
        self._pub = self._key.public_key()
        self.key_id = key_id(self._pub)
        self.public_key_hex = raw_public(self._pub).hex()
        if pub_path != "":
            write_public_key(self._pub, pub_path if pub_path is not None else default_pub_path(self.path))

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise InputError(f"ledger {self.path}: another writer holds it open; close that writer first") from None
        self._fd = fd
        try:
            self._open_chain()
        except BaseException:
            self._release()
            raise

    # -- opening -------------------------------------------------------------------
    def _open_chain(self) -> None:
        size = os.fstat(self._fd).st_size
        self._seq = 0
        self._prev = GENESIS_PREV
        self._since_checkpoint = 0
        if size == 0:
            self._write_record(
                "ledger",
                {
                    "format": FORMAT,
                    "canonical": CANONICAL_FORM,
                    "hash": "sha256",
                    "signature": "ed25519",
                    "key_id": self.key_id,
                    "public_key": self.public_key_hex,
                    "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                },
            )
            if self.fsync_policy != "never":
                os.fsync(self._fd)
                _fsync_dir(self.path.parent)
            return
        data = _read_all(self._fd, size)
        try:
            header = json.loads(data[: data.find(b"\n")].decode("utf-8")) if b"\n" in data else {}
        except (UnicodeDecodeError, ValueError):
            header = {}
        header_key = (header.get("payload") or {}).get("public_key") if isinstance(header, dict) else None
        if header_key is not None and header_key != self.public_key_hex:
            raise InputError(
                f"ledger {self.path}: was started with key {(header.get('payload') or {}).get('key_id')}, "
                f"not with {self.key_id} from {self.key_path}; pass that key's file as key_path"
            )
        res = verify_bytes(data, path=str(self.path), pubkey=self._pub)
        if res.status == "bad":
            raise InputError(
                f"ledger {self.path}: will not append, it fails verification at seq "
                f"{res.first_bad_seq}: {res.reason} (run `tao audit verify {self.path}`; "
                "if it was signed with another key, pass that key_path)"
            )
        self._seq = res.last_seq
        self._prev = res.head_hash
        self._since_checkpoint = res.unsigned_tail
        if res.status == "torn":
            torn = data[res.valid_bytes:]
            os.ftruncate(self._fd, res.valid_bytes)
            self._write_record(
                "recovery",
                {"torn_bytes": len(torn), "torn_sha256": sha256_hex(torn), "note": "partial last line removed on reopen"},
            )
            if self.fsync_policy != "never":
                os.fsync(self._fd)

    # -- writing -------------------------------------------------------------------
    def _write_record(self, kind: str, payload: dict) -> int:
        seq = self._seq + 1
        record = {"seq": seq, "time": round(time.time(), 6), "kind": kind, "payload": payload, "prev": self._prev}
        if kind == "checkpoint":
            payload["signature"] = self._key.sign(checkpoint_message(record)).hex()
        try:
            digest = sha256_hex(canonical_bytes(record))
            record["hash"] = digest
            body = canonical_bytes(record)
        except (ValueError, UnicodeEncodeError) as exc:
            raise InputError(f"ledger {kind} payload: cannot be encoded as JSON ({exc})") from None
        _write_all(self._fd, body + b"\n")
        self._seq = seq
        self._prev = digest
        if kind == "checkpoint":
            self._since_checkpoint = 0
        else:
            self._since_checkpoint += 1
        if self.fsync_policy == "always":
            os.fsync(self._fd)
        return seq

    def _checkpoint(self, final: bool) -> int:
        seq = self._write_record(
            "checkpoint",
            {
                "alg": "ed25519",
                "covers_seq": self._seq,
                "records": self._seq,
                "final": final,
                "key_id": self.key_id,
                "public_key": self.public_key_hex,
            },
        )
        if self.fsync_policy != "never":
            os.fsync(self._fd)
        return seq

    def append(self, kind: str, payload: Mapping[str, Any]) -> int:
        """Append one record and return its sequence number.

        ``kind``: a non-empty string (``config``, ``decision``, ``energy``, ``summary`` or
        your own); ``ledger``, ``checkpoint`` and ``recovery`` are reserved. ``payload``: a
        JSON-able mapping (numpy numbers, enums and dataclasses are converted; NaN and
        infinities are stored as strings). Raises ``InputError`` on bad arguments or a
        closed ledger."""
        if not isinstance(kind, str) or not kind:
            raise InputError(f"ledger kind {kind!r}: must be a non-empty string")
        if kind in RESERVED_KINDS:
            raise InputError(f"ledger kind {kind!r}: reserved for the ledger itself; choose another kind")
        if not isinstance(payload, Mapping):
            raise InputError(f"ledger {kind} payload: must be a dict, got {type(payload).__name__}")
        clean = to_jsonable(dict(payload), f"{kind} payload")
        with self._lock:
            if self._closed:
                raise InputError(f"ledger {self.path}: append after close()")
            seq = self._write_record(kind, clean)
            if self._since_checkpoint >= self.checkpoint_every:
                self._checkpoint(final=False)
            return seq

    def checkpoint(self) -> int:
        """Write a signed (non-final) checkpoint now; returns its sequence number."""
        with self._lock:
            if self._closed:
                raise InputError(f"ledger {self.path}: checkpoint after close()")
            return self._checkpoint(final=False)

    def close(self) -> None:
        """Write the final signed checkpoint, fsync (unless ``fsync="never"``) and release
        the file. Idempotent."""
        with self._lock:
            if self._closed:
                return
            try:
                self._checkpoint(final=True)
            finally:
                self._closed = True
                self._release()

    def _release(self) -> None:
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None

    # -- state -------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def last_seq(self) -> int:
        """Sequence number of the last record written."""
        return self._seq

    @property
    def head_hash(self) -> str:
        """SHA-256 (hex) of the last record written: the chain head."""
        return self._prev

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Ledger({str(self.path)!r}, seq={self._seq}, key_id={self.key_id!r}, closed={self._closed})"


def _write_all(fd: int, data: bytes) -> None:
    """Write ``data`` with one ``os.write``; loop only if the kernel writes less (disk full)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _read_all(fd: int, size: int) -> bytes:
    chunks = []
    pos = 0
    while pos < size:
        chunk = os.pread(fd, min(size - pos, 1 << 24), pos)
        if not chunk:
            break
        chunks.append(chunk)
        pos += len(chunk)
    return b"".join(chunks)


def _fsync_dir(directory: pathlib.Path) -> None:
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)
