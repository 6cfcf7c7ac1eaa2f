"""Names of TAO's actors on Ray, and the session check every one of them applies."""
from __future__ import annotations

from typing import Any

from tao_core.live.token import SessionRefused, check_token

NAMESPACE = "tao"
CONTROLLER_NAME = "tao-controller"


def sampler_name(node_id: str) -> str:
    """Actor name of the sampler of ``node_id``."""
    return f"tao-sampler-{node_id}"


class Guarded:
    """An actor that takes calls only with its session's token (``_token``, set by the actor)."""

    _token = ""
    _who = "tao actor"
    refused = 0

    def _check(self, token: Any) -> None:
        try:
            check_token(self._who, self._token, token)
        except SessionRefused:
            self.refused += 1
            raise
