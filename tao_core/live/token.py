"""The session token: 128 random bits made when a session starts. Every call to the
session's engine actors carries it, and they refuse any other caller (another job on the
cluster, a second driver)."""
from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from typing import Optional

from tao_core.errors import InputError
from tao_core.files import read_input_text, write_output

log = logging.getLogger("tao_core.live")


class SessionRefused(PermissionError):
    """A call to a TAO actor from outside the TAO session that owns it."""


def new_token() -> str:
    """A fresh session token (hex)."""
    return secrets.token_hex(16)


def check_token(actor: str, expected: str, given: object) -> None:
    """Refuse (and log) a call whose token is not the owner's."""
    if not isinstance(given, str) or not secrets.compare_digest(given, expected):
        log.warning("%s: refused a call without the owning TAO session's token", actor)
        raise SessionRefused(f"{actor}: refused: the call does not carry the session token of the TAO session "
                             "that owns this actor (only that session's driver, samplers and tasks may call it)")


def token_file(engine: str) -> Path:
    """Where a driver keeps its session token: ``$TAO_<ENGINE>_TOKEN_FILE``, else
    ``~/.cache/tao/<engine>-session.token``."""
    return Path(os.environ.get(f"TAO_{engine.upper()}_TOKEN_FILE")
                or Path.home() / ".cache" / "tao" / f"{engine}-session.token")


def save_token(engine: str, token: str) -> None:
    """Write the token, readable by its user only."""
    p = token_file(engine)
    p.parent.mkdir(parents=True, exist_ok=True)
    write_output(p, token + "\n", "session token file", mode=0o600)


def load_token(engine: str, token: Optional[str], path: Optional[str]) -> str:
    """The token given, else ``$TAO_<ENGINE>_TOKEN``, else the token file's."""
    tok = token or os.environ.get(f"TAO_{engine.upper()}_TOKEN")
    if tok:
        return tok.strip()
    p = Path(path) if path else token_file(engine)
    if not p.exists():
        raise InputError(f"--token-file {p}: no such file; give --token (the session token of the driver)")
    return read_input_text(p, "--token-file", max_bytes=1024).strip()
