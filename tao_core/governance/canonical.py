"""Canonical JSON: the byte form that every ledger hash, signature and report digest covers.

Definition (``tao-canonical-json/1``): the JSON text of the value with object keys sorted
by code point, no whitespace at all (separators ``,`` and ``:``), non-ASCII characters
written as themselves (not ``\\uXXXX`` escapes), encoded as UTF-8, with no trailing
newline. Numbers are written as Python's ``json`` module writes them (shortest
round-tripping form for floats); NaN and infinities are not JSON and are stored as the
strings ``"nan"``, ``"inf"`` and ``"-inf"``.

A ledger line is the canonical bytes of its record followed by one ``\\n``; a reader
re-encodes every parsed record and rejects the line unless the bytes are identical, so a
record has exactly one valid byte form.
"""
from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import math
import pathlib
from typing import Any

from tao_core.errors import InputError

CANONICAL_FORM = "tao-canonical-json/1"


def _float(value: float) -> Any:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return float(value)


def _dict(value: dict, where: str) -> dict:
    out = {}
    for k, v in value.items():
        if isinstance(k, enum.Enum):
            k = k.value
        if not isinstance(k, str):
            raise InputError(f"{where}: key {k!r} is not a string; JSON object keys must be strings")
        out[k] = to_jsonable(v, f"{where}.{k}")
    return out


def _other(value: Any, where: str) -> Any:
    """Dataclasses, paths and numpy values (anything else is refused)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value), where)
    if isinstance(value, pathlib.PurePath):
        return str(value)
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars
    if callable(tolist):
        return to_jsonable(tolist(), where)
    raise InputError(
        f"{where}: value of type {type(value).__name__} is not JSON-serialisable; "
        "pass numbers, strings, lists or dicts"
    )


def to_jsonable(value: Any, where: str = "payload") -> Any:
    """A copy of ``value`` made of dict, list, str, int, float, bool and None only.

    Accepts dataclasses, enums (their value), tuples and sets (as lists; sets sorted),
    paths (as strings) and numpy scalars and arrays (through ``.item()``/``.tolist()``).
    Non-finite floats become ``"nan"``, ``"inf"`` or ``"-inf"``. Raises ``InputError``
    naming the offending key for anything else.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value, where)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, dict):
        return _dict(value, where)
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        return sorted(to_jsonable(v, where) for v in value)
    return _other(value, where)


def depth_of(value: Any) -> int:
    """Nesting depth of a JSON value: 0 for a scalar, 1 for a flat list or object."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (list, dict)):
            deepest = max(deepest, d)
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return deepest


def canonical_bytes(value: Any) -> bytes:
    """Canonical JSON bytes of an already JSON-able ``value`` (see module docstring)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    """Lower-case hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()
