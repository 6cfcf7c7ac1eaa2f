"""Entry point of the ``tao`` command. Each subcommand lives in its own module of this
package and exposes ``register(subparsers)``, which adds its parser and sets
``func=run`` on it. ``run(args) -> int`` returns the exit code.

Exit codes: 0 success, 1 a check failed (``tao audit verify``), 2 bad input or usage,
3 a torn ledger tail (``tao audit verify``). Every error is one line on stderr,
``tao COMMAND: error: ...``, usage errors included.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn, Optional, Sequence

from tao_core.errors import InputError
from tao_core.files import install_signal_cleanup

#: subcommand modules, in the order ``tao --help`` lists them
SUBCOMMANDS = ("probe", "monitor", "simulate", "report", "audit", "actuate", "ray")


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (the usage is in ``--help``)."""

    def error(self, message: str) -> "NoReturn":
        message = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="tao", description="TAO: energy-aware orchestration for Ray and Dask."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in SUBCOMMANDS:
        importlib.import_module(f"tao_core.cli.{name}").register(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    install_signal_cleanup()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except InputError as exc:
        print(f"tao {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
