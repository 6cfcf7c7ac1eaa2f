"""The decision ledger: an append-only, hash-chained, signed JSON Lines file.

Format (``tao-ledger/1``). Each line is the canonical JSON (``canonical.py``) of one record
followed by ``\\n``::

    {"hash": hex, "kind": str, "payload": {...}, "prev": hex, "seq": int, "time": float}

``seq`` counts from 1 and equals the line number. ``time`` is wall-clock seconds since the
Unix epoch (UTC) when the record was written. ``hash`` is the lower-case hex SHA-256 of the
canonical bytes of the record without its ``hash`` field; ``prev`` repeats the previous
record's ``hash`` (``"0" * 64`` for record 1), which chains every record to all before it.
The own ``hash`` makes a damaged record detectable even when it is the last one. Record 1,
and only record 1, is a ``ledger`` header naming the format and the signer's key id and
public key. A record line is at most ``verify.MAX_RECORD_BYTES`` long and nested at most
``verify.MAX_RECORD_DEPTH`` levels deep; ``append`` refuses larger payloads.

Checkpoints: every ``checkpoint_every`` records and at ``close()`` the writer appends a
``checkpoint`` record whose payload holds ``alg`` ("ed25519"), ``covers_seq`` and
``records`` (the seq of the record before it), ``final`` (true only for the one ``close()``
writes), ``key_id``, ``public_key`` (hex of the raw 32 bytes) and ``signature``: Ed25519
over ``b"tao-ledger-checkpoint/1\\n"`` + the canonical bytes of the checkpoint record without
``hash`` and ``payload.signature``. The checkpoint's ``prev`` is the chain head, so the
signature covers every record before it.

Keys: the private key is read from ``key_path`` or generated there (PKCS#8 PEM, mode 0600,
never over an existing file); default ``LEDGER.key`` beside the ledger. It is never written
into the ledger. The public key is written to ``LEDGER.pub`` (PEM) and embedded in the
header and checkpoints; a verifier that wants to know *who* signed must obtain the public
key out of band and pass it (``tao audit verify --pubkey``), because anyone who rewrites a
ledger can re-sign it with a key of their own.

Locking and creation: an exclusive ``flock`` on the ledger is taken before anything is
written, the key and ``.pub`` files included, so a second writer is refused without
touching any file. A new ledger is made in an exclusively created temporary file in the
ledger's folder (random name), locked, given its header, then linked to its path (never
over an existing file): a ledger path never holds a half-made file. With ``atomic=True``
the new ledger, and the key and ``.pub`` it creates, stay temporary until ``close()``
puts them in place (an error or ``abort()`` removes them); ``SIGTERM`` removes pending
temporaries once ``tao_core.files.install_signal_cleanup`` ran.

Crash safety: each record is one ``os.write`` of its whole line on a file opened with
``O_APPEND``, so after a crash the file holds whole records followed by at most one
partial line (``verify.py`` reports it as a torn tail and verifies everything before it).
``fsync`` policy: ``"checkpoint"`` (default) calls ``fsync`` after every checkpoint and at
close; ``"always"`` after every record; ``"never"`` leaves it to the operating system. A
killed process loses nothing it wrote (the data is in the kernel's page cache); ``fsync``
guards against a power loss or kernel crash, which can lose records written since the last
``fsync``.

Reopening an existing ledger verifies it first (chain and signatures, under the same key)
and continues the chain. A closed ledger gets a signed checkpoint first (the only record
that may follow a final checkpoint). A torn last line is cut off and a ``recovery``
record notes how many bytes were dropped and their SHA-256; records found after the last
checkpoint, which this writer cannot vouch for, are named in the recovery record's
``unvouched_seqs`` and never count as signed. A ledger that fails verification is not
appended to.
"""
from __future__ import annotations

import datetime as _dt
import fcntl
import os
import pathlib
import stat
import threading
import time
from typing import Any, Mapping, Optional, Union

from tao_core.errors import InputError
from tao_core.files import PendingOutput, check_output_path, write_output
from tao_core.governance.canonical import CANONICAL_FORM, canonical_bytes, depth_of, sha256_hex, to_jsonable
from tao_core.governance.keys import (
    key_id, load_or_create_private_key, load_private_key, public_key_pem, raw_public,
)
from tao_core.governance.verify import (
    GENESIS_PREV, MAX_RECORD_BYTES, MAX_RECORD_DEPTH, VerifyResult, checkpoint_message, verify_stream,
)

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


def _open_existing(path: pathlib.Path) -> Optional[int]:
    """A descriptor for appending to the ledger at ``path``, or None when there is none."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        if os.path.islink(path):
            raise InputError(f"ledger {path}: is a symbolic link; give the path of the ledger itself") from None
        raise InputError(f"ledger {path}: cannot be opened ({exc.strerror}); check the path") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise InputError(f"ledger {path}: is not a regular file; give the path of a ledger file")
    os.set_blocking(fd, True)
    return fd


def _lock(fd: int, path: pathlib.Path) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise InputError(f"ledger {path}: another writer holds it open; close that writer first") from None


class Ledger:
    """Append-only writer of one ledger file. Thread safe; one writer per file.

    ``path``: the ledger (created when missing, continued when present). ``key_path``: the
    Ed25519 private key (created when missing for a new ledger; default ``LEDGER.key``).
    ``checkpoint_every``: records between signed checkpoints (>= 1). ``fsync``:
    ``"checkpoint"``, ``"always"`` or ``"never"`` (see the module docstring). ``pub_path``:
    where to write the public key (default ``LEDGER.pub``; ``""`` to skip). ``atomic``: a
    new ledger (``path`` must not exist) and the key and ``.pub`` it creates appear only
    when ``close()`` completes.
    """

    def __init__(
        self,
        path: PathLike,
        key_path: Optional[PathLike] = None,
        checkpoint_every: int = 1000,
        *,
        fsync: str = "checkpoint",
        pub_path: Optional[PathLike] = None,
        atomic: bool = False,
    ) -> None:
        if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 1:
            raise InputError(f"checkpoint_every={checkpoint_every!r}: must be an integer >= 1")
        if fsync not in FSYNC_POLICIES:
            raise InputError(f"fsync={fsync!r}: must be one of {', '.join(FSYNC_POLICIES)}")
        self.path = pathlib.Path(path)
        self.key_path = pathlib.Path(key_path) if key_path is not None else default_key_path(self.path)
        self.pub_path = None if pub_path == "" else pathlib.Path(pub_path or default_pub_path(self.path))
        self._check_paths()
        self.checkpoint_every = checkpoint_every
        self.fsync_policy = fsync
        self.atomic = atomic
        self._lock = threading.Lock()
        self._fd: Optional[int] = None
        self._closed = False
        self._pending: list[tuple[PendingOutput, bool]] = []  # (output, replace) put in place at close
        self._seq = 0
        self._prev = GENESIS_PREV
        self._since_checkpoint = 0
        fd = _open_existing(self.path)
        if fd is not None and atomic:
            os.close(fd)
            raise InputError(f"ledger {self.path}: already exists; atomic=True makes a new ledger: give a new path")
        try:
            if fd is None:
                self._create()
            else:
                _lock(fd, self.path)
                self._fd = fd
                self._continue()
        except BaseException:
            self._abandon()
            raise

    def _check_paths(self) -> None:
        others = [("ledger", self.path), ("key_path", self.key_path)]
        for field, p in others:
            if p.exists() and p.is_dir():
                raise InputError(f"{field} {p}: is a folder; give a file path")
        if self.key_path.resolve() == self.path.resolve():
            raise InputError("key_path: must not be the ledger itself; keep the private key in its own file")
        if self.pub_path is not None:
            check_output_path(self.pub_path, "pub_path", others=others)

    # -- opening -------------------------------------------------------------------
    def _create(self) -> None:
        """A new ledger: locked temporary file, key, header, then linked to its path."""
        tmp = PendingOutput(self.path, "ledger", mode=0o644)
        self._fd = tmp.fileno()
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a fresh file: nobody else has it
        fl = fcntl.fcntl(self._fd, fcntl.F_GETFL)
        fcntl.fcntl(self._fd, fcntl.F_SETFL, fl | os.O_APPEND)
        self._tmp: Optional[PendingOutput] = tmp
        self._load_key(create=True)
        self._write_header()
        if self.atomic:
            self._write_pub()
            return
        tmp.commit(replace=False, keep_open=True)
        self._fd = tmp.detach()
        self._tmp = None
        if self.fsync_policy != "never":
            _fsync_dir(self.path.parent)
        self._write_pub()

    def _continue(self) -> None:
        """An existing ledger, locked: verify it, then go on with its chain."""
        if os.fstat(self._fd).st_size == 0:  # left empty by an older writer: start it
            self._tmp = None
            self._load_key(create=True)
            self._write_header()
            self._write_pub()
            return
        self._load_key(create=False)
        res = self._verify_existing()
        self._write_pub()
        self._seq = res.last_seq
        self._prev = res.head_hash
        self._since_checkpoint = res.unsigned_tail
        torn = self._cut_torn_tail(res)
        if res.closed:
            self._checkpoint(final=False)  # the only record that may follow a final checkpoint
        self._note_recovery(res, torn)

    def _load_key(self, *, create: bool) -> None:
        if create and not os.path.lexists(self.key_path) and self.atomic:
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

            self._key = Ed25519PrivateKey.generate()
            out = PendingOutput(self.key_path, "key_path", mode=0o600)
            out.write(self._key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
            self._pending.append((out, False))
        elif create:
            self._key, _ = load_or_create_private_key(self.key_path)
        elif not os.path.lexists(self.key_path):
            raise InputError(f"key_path {self.key_path}: no such file; the ledger {self.path} is signed with a key "
                             "that must be given to append to it")
        else:
            self._key = load_private_key(self.key_path)
        self._pub = self._key.public_key()
        self.key_id = key_id(self._pub)
        self.public_key_hex = raw_public(self._pub).hex()

    def _write_pub(self) -> None:
        if self.pub_path is None:
            return
        if self.atomic:
            out = PendingOutput(self.pub_path, "pub_path")
            out.write(public_key_pem(self._pub))
            self._pending.append((out, True))
        else:
            write_output(self.pub_path, public_key_pem(self._pub), "pub_path")

    def _write_header(self) -> None:
        self._write_record("ledger", {
            "format": FORMAT, "canonical": CANONICAL_FORM, "hash": "sha256", "signature": "ed25519",
            "key_id": self.key_id, "public_key": self.public_key_hex,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        })
        if self.fsync_policy != "never":
            os.fsync(self._fd)

    def _verify_existing(self) -> VerifyResult:
        with os.fdopen(os.dup(self._fd), "rb") as stream:
            stream.seek(0)
            res = verify_stream(stream, path=str(self.path))
        if res.header_public_key is not None and res.header_public_key != self.public_key_hex:
            raise InputError(
                f"ledger {self.path}: was started with another key, not with {self.key_id} from {self.key_path}; "
                "pass that key's file as key_path")
        if res.status == "bad":
            raise InputError(
                f"ledger {self.path}: will not append, it fails verification at seq {res.first_bad_seq}: "
                f"{res.reason} (run `tao audit verify {self.path}`)")
        return res

    def _cut_torn_tail(self, res: VerifyResult) -> Optional[bytes]:
        """Remove a torn last line; returns its bytes (None when there was none)."""
        if res.status != "torn":
            return None
        torn = _read_from(self._fd, res.valid_bytes)
        os.ftruncate(self._fd, res.valid_bytes)
        return torn

    def _note_recovery(self, res: VerifyResult, torn: Optional[bytes]) -> None:
        """A recovery record for a cut torn tail and for unsigned records found at the end."""
        note: dict[str, Any] = {}
        if torn is not None:
            note.update(torn_bytes=len(torn), torn_sha256=sha256_hex(torn))
        if res.unsigned_tail and not res.closed:
            note["unvouched_seqs"] = [res.signed_through_seq + 1, res.last_seq]
        if not note:
            return
        note["note"] = ("reopened: partial last line removed" if torn is not None else "reopened") + (
            "; records in unvouched_seqs were found after the last checkpoint and are not vouched for by this writer"
            if "unvouched_seqs" in note else "")
        self._write_record("recovery", note)
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
        if len(body) > MAX_RECORD_BYTES:
            raise InputError(f"ledger {kind} payload: {len(body)} bytes as a record, more than the "
                             f"{MAX_RECORD_BYTES} a record may hold; split it into several records")
        _write_all(self._fd, body + b"\n")
        self._seq = seq
        self._prev = digest
        self._since_checkpoint = 0 if kind == "checkpoint" else self._since_checkpoint + 1
        if self.fsync_policy == "always":
            os.fsync(self._fd)
        return seq

    def _checkpoint(self, final: bool) -> int:
        seq = self._write_record("checkpoint", {
            "alg": "ed25519", "covers_seq": self._seq, "records": self._seq, "final": final,
            "key_id": self.key_id, "public_key": self.public_key_hex,
        })
        if self.fsync_policy != "never":
            os.fsync(self._fd)
        return seq

    def append(self, kind: str, payload: Mapping[str, Any]) -> int:
        """Append one record and return its sequence number.

        ``kind``: a non-empty string (``config``, ``decision``, ``energy``, ``summary`` or
        your own); ``ledger``, ``checkpoint`` and ``recovery`` are reserved. ``payload``: a
        JSON-able mapping (numpy numbers, enums and dataclasses are converted; NaN and
        infinities are stored as strings), nested at most ``MAX_RECORD_DEPTH - 1`` levels.
        Raises ``InputError`` on bad arguments or a closed ledger."""
        if not isinstance(kind, str) or not kind:
            raise InputError(f"ledger kind {kind!r}: must be a non-empty string")
        if kind in RESERVED_KINDS:
            raise InputError(f"ledger kind {kind!r}: reserved for the ledger itself; choose another kind")
        if not isinstance(payload, Mapping):
            raise InputError(f"ledger {kind} payload: must be a dict, got {type(payload).__name__}")
        clean = to_jsonable(dict(payload), f"{kind} payload")
        if depth_of(clean) > MAX_RECORD_DEPTH - 1:
            raise InputError(f"ledger {kind} payload: nested more than {MAX_RECORD_DEPTH - 1} levels deep; flatten it")
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
        the file; with ``atomic=True`` put the ledger, its new key and ``.pub`` in place.
        Idempotent."""
        with self._lock:
            if self._closed:
                return
            try:
                self._checkpoint(final=True)
                self._publish()
            except BaseException:
                self._abandon()
                raise
            finally:
                self._closed = True
                self._release()

    def abort(self) -> None:
        """Stop writing without the final checkpoint. With ``atomic=True`` nothing is left
        behind; otherwise the records written stay (the ledger reads as not closed)."""
        with self._lock:
            self._closed = True
            self._abandon()

    def _publish(self) -> None:
        if not self.atomic:
            return
        for out, replace in self._pending:  # the key first: a ledger never appears without it
            out.commit(replace=replace)
        self._pending = []
        os.fsync(self._fd)
        self._tmp.commit(replace=False)
        self._fd = None  # commit closed it
        self._tmp = None
        if self.fsync_policy != "never":
            _fsync_dir(self.path.parent)

    def _abandon(self) -> None:
        """Remove whatever this writer still holds as temporary files and release the lock."""
        for out, _ in self._pending:
            out.discard()
        self._pending = []
        tmp = getattr(self, "_tmp", None)
        if tmp is not None:
            tmp.discard()
            self._fd = None
            self._tmp = None
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

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None and self.atomic:
            self.abort()
        else:
            self.close()

    def __repr__(self) -> str:
        return f"Ledger({str(self.path)!r}, seq={self._seq}, key_id={self.key_id!r}, closed={self._closed})"


def _write_all(fd: int, data: bytes) -> None:
    """Write ``data`` with one ``os.write``; loop only if the kernel writes less (disk full)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _read_from(fd: int, offset: int) -> bytes:
    chunks = []
    while True:
        chunk = os.pread(fd, 1 << 20, offset)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        offset += len(chunk)


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
