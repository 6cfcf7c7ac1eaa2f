"""The actuator interface: settings TAO may change on a machine, and how they are undone.

Nothing is written unless the actuator was created with ``apply=True`` (the explicit
opt-in; the ``tao actuate`` command asks for ``--apply``). Without it every call is a dry
run: limits are checked and the change is recorded as it would have been made. Each change,
real or dry, is emitted as a :class:`DecisionEvent` of kind ``actuate`` to the event sink
(the audit ledger). :meth:`Actuator.restore` puts every changed setting back to the value
it had before TAO first touched it; :func:`restore_on_exit` also does so at interpreter exit
and on SIGTERM, SIGINT and SIGHUP.
"""
from __future__ import annotations

import abc
import atexit
import logging
import signal
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Callable, Optional

from tao_core.control.types import DecisionEvent

log = logging.getLogger(__name__)


class ActuatorError(RuntimeError):
    """A setting could not be read or written; the message says why and what to do."""


@dataclass(frozen=True)
class ActuatorChange:
    """One change of one setting. ``old`` and ``new`` in ``unit``; ``applied`` is False in
    a dry run."""

    t_s: float
    actuator: str
    target: str
    old: float
    new: float
    unit: str
    applied: bool


class Actuator(abc.ABC):
    """A family of settings (every GPU's power limit, every CPU policy's frequency cap).

    Subclasses implement :meth:`targets`, :meth:`read`, :meth:`bounds` and :meth:`_write`.
    """

    #: what the actuator changes, e.g. "gpu-power-limit"
    name: str = ""
    #: unit of its values, e.g. "W"
    unit: str = ""

    def __init__(self, *, apply: bool = False, event_sink: Optional[Callable[[DecisionEvent], None]] = None) -> None:
        self.apply = apply
        self.event_sink = event_sink
        self._original: dict[str, float] = {}
        self._lock = threading.Lock()
        self.changes: list[ActuatorChange] = []

    @abc.abstractmethod
    def targets(self) -> list[str]:
        """Names of the settings this actuator can change (``gpu-0``, ``policy0``)."""

    @abc.abstractmethod
    def read(self, target: str) -> float:
        """The setting's current value, in :attr:`unit`."""

    @abc.abstractmethod
    def bounds(self, target: str) -> tuple[float, float]:
        """The least and greatest value the hardware accepts, in :attr:`unit`."""

    @abc.abstractmethod
    def _write(self, target: str, value: float) -> None:
        """Write ``value`` to the hardware."""

    def set(self, target: str, value: float, *, reason: str = "") -> ActuatorChange:
        """Set ``target`` to ``value`` (checked against :meth:`bounds`); in a dry run only
        record what would be done."""
        lo, hi = self.bounds(target)
        if not lo <= value <= hi:
            raise ActuatorError(
                f"{self.name} {target}: {value:.10g} {self.unit} is outside the allowed range "
                f"{lo:.10g}..{hi:.10g} {self.unit}; choose a value inside it"
            )
        with self._lock:
            old = self.read(target)
            if self.apply:
                if target not in self._original:
                    self._original[target] = old
                    log.info("TAO sets %s %s from %.10g %s (original value)", self.name, target, old, self.unit)
                self._write(target, value)
            change = ActuatorChange(time.monotonic(), self.name, target, old, float(value), self.unit, self.apply)
            self.changes.append(change)
        self._emit(change, reason or ("set" if self.apply else "dry run: not written"))
        return change

    def restore(self) -> list[ActuatorChange]:
        """Put back every setting this actuator changed, in reverse order of first change.
        Errors are logged, and the remaining settings are still restored."""
        done: list[ActuatorChange] = []
        with self._lock:
            for target, original in reversed(list(self._original.items())):
                try:
                    cur = self.read(target)
                    self._write(target, original)
                except Exception as exc:  # keep restoring the others
                    log.warning("TAO could not restore %s %s to %.10g %s: %s", self.name, target, original, self.unit, exc)
                    continue
                change = ActuatorChange(time.monotonic(), self.name, target, cur, original, self.unit, True)
                self.changes.append(change)
                done.append(change)
                del self._original[target]
        for change in done:
            self._emit(change, "restored")
        return done

    def _emit(self, change: ActuatorChange, reason: str) -> None:
        if self.event_sink is None:
            return
        try:
            self.event_sink(DecisionEvent(
                t_s=change.t_s, kind="actuate", subject=change.target, reason=reason,
                detail={"actuator": change.actuator, "old": change.old, "new": change.new,
                        "unit": change.unit, "applied": change.applied},
            ))
        except Exception as exc:
            log.warning("TAO could not record an actuator change: %s", exc)

    def __enter__(self) -> "Actuator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()


_live: "weakref.WeakSet[Actuator]" = weakref.WeakSet()
_installed = False


def _restore_all() -> None:
    for act in list(_live):
        act.restore()


def _on_signal(signum: int, frame: object) -> None:
    _restore_all()
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)


def restore_on_exit(actuator: Actuator) -> Actuator:
    """Make sure ``actuator``'s changes are undone when the process ends: at normal exit
    and on SIGTERM, SIGINT or SIGHUP (handlers installed once, from the main thread).
    SIGKILL cannot be caught: the original value is logged at each first change, so it
    can be put back by hand."""
    global _installed
    _live.add(actuator)
    if not _installed:
        atexit.register(_restore_all)
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, _on_signal)
        _installed = True
    return actuator
