"""Bounded reads of user input files.

Every reader takes ``field`` (the option or argument the path came from, e.g. ``--cluster``)
and raises :class:`~tao_core.errors.InputError` with one line naming it and the fix when the
path is missing, not a regular file (a FIFO would block the reader for ever, a device can
be endless), larger than ``max_bytes``, not UTF-8, not JSON, nested deeper than
``max_depth`` or holding ``NaN``/``Infinity``; for CSV (:func:`read_csv`), a malformed row,
a field over 128 KiB, a row of the wrong width or more rows than the caller's limit.
"""
from __future__ import annotations

import csv
import io
import json
import os
import stat
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Optional, Union

from tao_core.errors import InputError

PathLike = Union[str, "os.PathLike[str]"]

#: deepest nesting of arrays and objects accepted in a JSON document
MAX_JSON_DEPTH = 64
#: default size limit of an input file (bytes)
DEFAULT_MAX_BYTES = 64 * 1024 * 1024


def _open_regular(p: Path, field: str) -> tuple[int, os.stat_result]:
    """An fd open for reading on the regular file ``p`` and its stat, or an InputError."""
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise InputError(f"{field} {p}: no such file; give the path of an existing file") from None
    except IsADirectoryError:
        raise InputError(f"{field} {p}: is a folder; give the path of a file") from None
    except OSError as exc:
        raise InputError(f"{field} {p}: cannot be read ({exc.strerror}); check the path and its permissions") from None
    st = os.fstat(fd)
    if stat.S_ISDIR(st.st_mode):
        os.close(fd)
        raise InputError(f"{field} {p}: is a folder; give the path of a file")
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise InputError(f"{field} {p}: is not a regular file (a device, FIFO or socket); give the path of a file")
    return fd, st


def open_input_file(path: PathLike, field: str) -> BinaryIO:
    """The regular file at ``path`` open for reading in binary mode, for readers that
    stream it with their own limits (a ledger is read line by line)."""
    fd, _ = _open_regular(Path(path), field)
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_input_bytes(path: PathLike, field: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The bytes of the regular file at ``path``, at most ``max_bytes`` of them."""
    p = Path(path)
    fd, st = _open_regular(p, field)
    try:
        if st.st_size > max_bytes:
            raise InputError(f"{field} {p}: {st.st_size} bytes, more than the {max_bytes} accepted; "
                             "give a smaller file")
        chunks = []
        total = 0
        while True:
            b = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not b:
                break
            chunks.append(b)
            total += len(b)
            if total > max_bytes:
                raise InputError(f"{field} {p}: more than the {max_bytes} bytes accepted; give a smaller file")
        return b"".join(chunks)
    except OSError as exc:
        raise InputError(f"{field} {p}: cannot be read ({exc.strerror}); check the file") from None
    finally:
        os.close(fd)


def decode_utf8(data: bytes, where: str) -> str:
    """``data`` as UTF-8 text (a leading byte-order mark dropped), or an InputError."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{where}: not UTF-8 text (bad byte at offset {exc.start}); save it as UTF-8") from None


def read_input_text(path: PathLike, field: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """The UTF-8 text of the regular file at ``path``."""
    return decode_utf8(read_input_bytes(path, field, max_bytes=max_bytes), f"{field} {Path(path)}")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _depth_ok(doc: Any, max_depth: int) -> bool:
    stack = [(doc, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (list, dict)):
            if d > max_depth:
                return False
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return True


def parse_json_text(text: str, where: str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse one JSON document; ``where`` names it in errors (``--cluster x.json``,
    ``ledger.jsonl line 7``). NaN and Infinity are refused; so is nesting deeper than
    ``max_depth``."""
    try:
        doc = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise InputError(f"{where}: JSON nested too deeply (more than {max_depth} levels); flatten it") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
                         "fix the syntax") from None
    except ValueError as exc:
        raise InputError(f"{where}: {exc}; write finite numbers only") from None
    if not _depth_ok(doc, max_depth):
        raise InputError(f"{where}: JSON nested too deeply (more than {max_depth} levels); flatten it")
    return doc


def load_json_file(path: PathLike, field: str, *, max_bytes: int = DEFAULT_MAX_BYTES,
                   max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The JSON document in the regular file at ``path`` (see :func:`parse_json_text`)."""
    text = read_input_text(path, field, max_bytes=max_bytes)
    return parse_json_text(text, f"{field} {Path(path)}", max_depth=max_depth)


#: longest CSV field accepted, characters (the ``csv`` module's default limit, 128 KiB)
MAX_CSV_FIELD = 131072


def read_csv(path: PathLike, field: str, *, max_bytes: int = DEFAULT_MAX_BYTES, max_rows: int,
             what: str = "row") -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """The header (names stripped) and the data rows of the CSV file at ``path``.

    Rows come as ``(line number, fields)``; blank lines are skipped. Errors are
    InputError naming ``field``, the file and the line: a malformed row (an unclosed quote,
    a field longer than :data:`MAX_CSV_FIELD` characters), a row whose field count differs
    from the header's, more than ``max_rows`` rows (``what`` names them in the message:
    ``task``, ``node``), an empty file."""
    p = Path(path)
    where = f"{field} {p}"
    text = read_input_text(p, field, max_bytes=max_bytes)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)

    def _next() -> Optional[list[str]]:
        try:
            return next(reader)
        except StopIteration:
            return None
        except csv.Error as exc:
            line = reader.line_num
            msg = str(exc)
            if "field larger" in msg:
                msg = f"a field is longer than {MAX_CSV_FIELD} characters (128 KiB)"
            raise InputError(f"{where}: row {line}: malformed CSV ({msg}); fix the row") from None

    header = _next()
    while header is not None and not any(h.strip() for h in header):
        header = _next()
    if header is None:
        raise InputError(f"{where}: empty file; the first line must be the header")
    header = [h.strip() for h in header]
    ncol = len(header)

    def rows() -> Iterator[tuple[int, list[str]]]:
        n = 0
        while True:
            row = _next()
            if row is None:
                return
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            line = reader.line_num
            if len(row) != ncol:
                raise InputError(f"{where}: row {line}: {len(row)} fields, the header has {ncol}; fix the row")
            n += 1
            if n > max_rows:
                raise InputError(f"{where}: more than {max_rows:,} {what}s (the limit, which keeps memory bounded); "
                                 "split the file")
            yield line, row

    return header, rows()
