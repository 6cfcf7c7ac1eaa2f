"""Checked values from user input: finite numbers in a stated range, short printable names.

Every check raises :class:`~tao_core.errors.InputError` with one line naming ``where``
(the flag, or file and row and field) and the fix. A value is quoted in the message cut
to :data:`QUOTE_CHARS` characters, so a hostile 100 KB field cannot flood the terminal.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
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


@dataclass(frozen=True)
class _Range:
    """Bounds of an accepted number; ``lo_open``/``hi_open`` exclude the bound itself."""

    lo: Optional[float]
    hi: Optional[float]
    lo_open: bool
    hi_open: bool
    integer: bool

    def holds(self, x: float) -> bool:
        return (self.lo is None or (x > self.lo if self.lo_open else x >= self.lo)) and \
            (self.hi is None or (x < self.hi if self.hi_open else x <= self.hi))


def _why_not(value: Any, r: _Range) -> tuple[Optional[str], float]:
    """(None, x) when ``value`` is a number ``r`` accepts, else (why not, nan)."""
    if isinstance(value, bool) or value is None or (isinstance(value, str) and not value.strip()):
        return "missing", math.nan
    try:
        x = float(value)
    except OverflowError:
        return "is too large", math.nan
    except (TypeError, ValueError):
        return "is not a number", math.nan
    if not math.isfinite(x):
        return "is not a finite number", x
    if r.integer and x != math.floor(x):
        return "is not a whole number", x
    return (None if r.holds(x) else "range"), x


def number(value: Any, where: str, *, lo: Optional[float] = None, hi: Optional[float] = None,
           lo_open: bool = False, hi_open: bool = False, integer: bool = False, fix: str = "") -> float:
    """``value`` (a number, or its text) as a finite float in the range given; ``lo_open`` /
    ``hi_open`` exclude the bound itself; ``integer`` asks for a whole number."""
    r = _Range(lo, hi, lo_open, hi_open, integer)
    why, x = _why_not(value, r)
    if why is None:
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
