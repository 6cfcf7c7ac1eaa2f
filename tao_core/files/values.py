"""Checked values from user input: finite numbers in a stated range, short printable names.

Every check raises :class:`~tao_core.errors.InputError` with one line naming ``where``
(the flag, or file and row and field) and the fix. A value is quoted in the message cut
to :data:`QUOTE_CHARS` characters, so a hostile 100 KB field cannot flood the terminal.
"""
from __future__ import annotations

import math
import re
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


def _refuse(value: Any, where: str, why: str, lo: Optional[float], hi: Optional[float], lo_open: bool,
            hi_open: bool, integer: bool, fix: str) -> InputError:
    rng = _range_text(lo, hi, lo_open, hi_open)
    fix = fix or f"give a {'whole ' if integer else ''}number {rng}"
    if why == "missing":
        return InputError(f"{where}: missing or not a number; {fix}")
    if why == "range":
        return InputError(f"{where}: {quote(value)} is out of range: it must be {rng}; {fix}")
    return InputError(f"{where}: {quote(value)} {why}; {fix}")


def number(value: Any, where: str, *, lo: Optional[float] = None, hi: Optional[float] = None,
           lo_open: bool = False, hi_open: bool = False, integer: bool = False, fix: str = "") -> float:
    """``value`` (a number, or its text) as a finite float in the range given; ``lo_open`` /
    ``hi_open`` exclude the bound itself; ``integer`` asks for a whole number."""
    if type(value) is str:  # the common case (CSV fields), checked first
        try:
            x = float(value)
        except ValueError:
            x = math.nan
        if math.isfinite(x) and (lo is None or (x > lo if lo_open else x >= lo)) and \
                (hi is None or (x < hi if hi_open else x <= hi)) and (not integer or x == math.floor(x)):
            return x
    why = None
    x = math.nan
    if isinstance(value, bool) or value is None or (isinstance(value, str) and not value.strip()):
        why = "missing"
    else:
        try:
            x = float(value)
        except OverflowError:
            why = "is too large"
        except (TypeError, ValueError):
            why = "is not a number"
    if why is None:
        if not math.isfinite(x):
            why = "is not a finite number"
        elif integer and x != math.floor(x):
            why = "is not a whole number"
        elif (lo is not None and (x <= lo if lo_open else x < lo)) or (hi is not None and (x >= hi if hi_open else x > hi)):
            why = "range"
        else:
            return x
    raise _refuse(value, where, why, lo, hi, lo_open, hi_open, integer, fix)


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


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
    if _CONTROL.search(s):
        raise InputError(f"{where}: {quote(s)} holds control characters; give a {what} of printable characters")
    return s
