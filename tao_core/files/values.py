"""Checked values from user input: finite numbers in a stated range, short printable names.

Every check raises :class:`~tao_core.errors.InputError` with one line naming ``where``
(the flag, or file and row and field) and the fix. A value is quoted in the message cut
to :data:`QUOTE_CHARS` characters, so a hostile 100 KB field cannot flood the terminal.
"""
from __future__ import annotations

import math
from typing import Any, Optional

from tao_core.errors import InputError

#: characters of an offending value quoted in an error message
QUOTE_CHARS = 40


def quote(value: Any) -> str:
    """``repr(value)``, cut to :data:`QUOTE_CHARS` characters."""
    r = repr(value)
    return r if len(r) <= QUOTE_CHARS else r[:QUOTE_CHARS - 3] + "..."


def names(items: Any, *, most: int = 5) -> str:
    """Up to ``most`` names for a message, comma-separated: printable short ones as they are,
    others quoted and cut."""
    items = list(items)
    out = [str(x) if isinstance(x, str) and x.isprintable() and len(x) <= QUOTE_CHARS else quote(x)
           for x in items[:most]]
    if len(items) > most:
        out.append(f"... ({len(items)} in all)")
    return ", ".join(out)


def _range_text(lo: Optional[float], hi: Optional[float], lo_open: bool, hi_open: bool) -> str:
    if lo is not None and hi is not None:
        return f"{'>' if lo_open else '>='} {lo:g} and {'<' if hi_open else '<='} {hi:g}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {lo:g}"
    if hi is not None:
        return f"{'<' if hi_open else '<='} {hi:g}"
    return "finite"


def number(value: Any, where: str, *, lo: Optional[float] = None, hi: Optional[float] = None,
           lo_open: bool = False, hi_open: bool = False, integer: bool = False, fix: str = "") -> float:
    """``value`` (a number, or its text) as a finite float in the range given; ``lo_open`` /
    ``hi_open`` exclude the bound itself; ``integer`` asks for a whole number."""
    rng = _range_text(lo, hi, lo_open, hi_open)
    fix = fix or f"give a {'whole ' if integer else ''}number {rng}"
    if isinstance(value, bool) or value is None or (isinstance(value, str) and not value.strip()):
        raise InputError(f"{where}: missing or not a number; {fix}")
    try:
        x = float(value)
    except OverflowError:
        raise InputError(f"{where}: {quote(value)} is too large; {fix}") from None
    except (TypeError, ValueError):
        raise InputError(f"{where}: {quote(value)} is not a number; {fix}") from None
    if not math.isfinite(x):
        raise InputError(f"{where}: {quote(value)} is not a finite number; {fix}")
    if integer and x != math.floor(x):
        raise InputError(f"{where}: {quote(value)} is not a whole number; {fix}")
    if (lo is not None and (x <= lo if lo_open else x < lo)) or (hi is not None and (x >= hi if hi_open else x > hi)):
        raise InputError(f"{where}: {quote(value)} is out of range: it must be {rng}; {fix}")
    return x


def name(value: Any, where: str, *, max_chars: int = 256, what: str = "name") -> str:
    """``value`` stripped, as a non-empty string of at most ``max_chars`` characters with no
    control characters (they would break tables, ledgers and one-line messages)."""
    if not isinstance(value, str):
        raise InputError(f"{where}: {quote(value)} is not text; give the {what} as a string")
    s = value.strip()
    if not s:
        raise InputError(f"{where}: empty; give a {what}")
    if len(s) > max_chars:
        raise InputError(f"{where}: {len(s)} characters, more than the {max_chars} accepted; give a shorter {what}")
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in s):
        raise InputError(f"{where}: {quote(s)} holds control characters; give a {what} of printable characters")
    return s
