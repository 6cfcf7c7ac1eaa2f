"""Units of useful work, counted by the tasks themselves: ``tao.count("tokens", n)``.

A task says how much useful work it did (samples, tokens, images, requests, or its own
floating point operations under the unit ``flops``); reports then give joules and gCO2e
per unit. This module is the worker side: it holds what tasks counted, per task, in the
process they run in, until the engine adapter collects it (``drain``) and puts it into
the task's ledger record (``WorkRecord.units``).

Which task is current:

1. inside ``with task_scope(task_id):`` (an adapter that wraps the task function, or
   plain Python without an engine), that task;
2. else whatever the resolver an adapter registered with ``set_task_resolver(fn)``
   returns (e.g. the key of the task the calling thread executes);
3. else none: ``count`` raises ``UnitCountError`` (never a silent drop).

Unit names: lower case letters, digits and ``_``, starting with a letter (``tokens``,
``images``, ``requests``, ``flops``): they become Prometheus label values and
``units_<name>`` workload columns. Amounts: finite numbers >= 0, in the unit's own
terms (a count of tokens, not joules). Counts of one task add up; the buffer is one per
process and safe to use from several threads. Counts stay in it until drained: an adapter
drains each task's counts when the task ends.
"""
from __future__ import annotations

import contextlib
import contextvars
import math
import re
import threading
from typing import Any, Callable, Iterator, Mapping, Optional

#: what a unit's name may look like
UNIT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")

_scope: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar("tao_units_task", default=None)
_resolver: Optional[Callable[[], Optional[str]]] = None
_lock = threading.Lock()
_buffer: dict[str, dict[str, float]] = {}


class UnitCountError(ValueError):
    """A count refused: bad unit name, amount not a finite number >= 0, or no current task."""


def check_unit_name(unit: Any) -> str:
    """``unit`` when it is a valid unit name, else ``UnitCountError`` saying what is allowed."""
    if not isinstance(unit, str) or not UNIT_NAME.match(unit):
        raise UnitCountError(f"unit {unit!r}: a unit name is lower case letters, digits and _, starting with a "
                             "letter, at most 64 characters (e.g. tokens, images, requests, flops)")
    return unit


def check_amount(unit: str, n: Any) -> float:
    """``n`` as a float when it is a finite number >= 0, else ``UnitCountError``."""
    if isinstance(n, bool) or not isinstance(n, (int, float)) or not math.isfinite(n) or n < 0:
        raise UnitCountError(f"count({unit!r}, {n!r}): the amount must be a finite number >= 0 "
                             f"(how many {unit} the task produced or processed)")
    return float(n)


def current_task() -> Optional[str]:
    """The id of the task a count would be charged to now, or None."""
    task = _scope.get()
    if task is None and _resolver is not None:
        task = _resolver()
    return None if task is None else str(task)


def count(unit: str, n: float) -> None:
    """Add ``n`` units of ``unit`` to the current task's counts. Raises ``UnitCountError``
    for a bad unit name, an amount that is negative, NaN or infinite, or when no task is
    current (outside a task TAO runs, and outside ``task_scope``)."""
    unit = check_unit_name(unit)
    amount = check_amount(unit, n)
    task = current_task()
    if task is None:
        raise UnitCountError(f"count({unit!r}, {n!r}): no current task; call it inside a Ray or Dask task that runs "
                             "under TAO, or inside `with tao.task_scope(task_id):`")
    with _lock:
        counts = _buffer.setdefault(task, {})
        counts[unit] = counts.get(unit, 0.0) + amount


@contextlib.contextmanager
def task_scope(task_id: str) -> Iterator[str]:
    """Charge every ``count`` made inside the block (in this thread or context) to ``task_id``."""
    if not isinstance(task_id, str) or not task_id:
        raise UnitCountError(f"task_scope({task_id!r}): give the task's id, a non-empty string")
    token = _scope.set(task_id)
    try:
        yield task_id
    finally:
        _scope.reset(token)


def set_task_resolver(fn: Optional[Callable[[], Optional[str]]]) -> None:
    """Register how this process finds the current task outside ``task_scope`` (an adapter
    calls it once per worker process; None removes it). ``fn()`` returns the task's id or
    None when the calling thread runs no task."""
    global _resolver
    if fn is not None and not callable(fn):
        raise TypeError("set_task_resolver: give a function returning the current task's id, or None")
    _resolver = fn


def drain(task_id: str) -> dict[str, float]:
    """The counts of ``task_id`` (unit -> amount), removed from the buffer; {} when none."""
    with _lock:
        return _buffer.pop(str(task_id), {})


def drain_all() -> dict[str, dict[str, float]]:
    """Every task's counts (task id -> unit -> amount), removed from the buffer."""
    global _buffer
    with _lock:
        out, _buffer = _buffer, {}
    return out


def pending() -> int:
    """How many tasks have counts not drained yet."""
    with _lock:
        return len(_buffer)


def add_units(a: Mapping[str, float], b: Mapping[str, float]) -> dict[str, float]:
    """Unit-wise sum of two count mappings (sorted by unit)."""
    out = dict(a)
    for unit, n in b.items():
        out[unit] = out.get(unit, 0.0) + n
    return dict(sorted(out.items()))
