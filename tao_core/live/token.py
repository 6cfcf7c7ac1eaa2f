"""The session token: 128 random bits made when a session starts. Every call to the
session's engine actors carries it, and they refuse any other caller (another job on the
cluster, a second driver)."""
from __future__ import annotations

import logging
import secrets

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
