"""Errors TAO raises for bad input. The CLI prints them as one line and exits 2."""
from __future__ import annotations

from typing import Any, Mapping, Optional


class InputError(ValueError):
    """Bad input from the user: the message names the field (or file and row) and the fix."""


class ParameterError(InputError):
    """Bad value of a library function's parameter.

    ``detail`` may name other parameters as ``{name}`` placeholders. ``str()`` words the
    message with the parameters' own names (``run_id 'x': not in the ledger; choose one
    with run_id``); :meth:`worded` words it for a command line, e.g. with
    ``{"run_id": "--run-id"}`` (``--run-id x: ...; choose one with --run-id``)."""

    def __init__(self, parameter: str, value: Any, detail: str) -> None:
        self.parameter = parameter
        self.value = value
        self.detail = detail
        super().__init__(self.worded())

    def worded(self, names: Optional[Mapping[str, str]] = None) -> str:
        names = names or {}

        class _Names(dict):
            def __missing__(self, key: str) -> str:
                return names.get(key, key)

        head = names.get(self.parameter)
        value = "" if self.value is None else (f" {self.value}" if head else f" {self.value!r}")
        return f"{head or self.parameter}{value}: {self.detail.format_map(_Names())}"
