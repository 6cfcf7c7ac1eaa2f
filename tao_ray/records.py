"""Small value objects that travel between the driver, the controller actor, the samplers
and the workers, and the session check every TAO actor applies to its callers."""
from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import NamedTuple, Optional

log = logging.getLogger("tao_ray")

NAMESPACE = "tao"
CONTROLLER_NAME = "tao-controller"


def sampler_name(node_id: str) -> str:
    """Actor name of the sampler of ``node_id``."""
    return f"tao-sampler-{node_id}"


class TimelineRow(NamedTuple):
    """One reading of a node: wall-clock s, cumulative J, W, CPU utilization 0..1, source,
    method, relative uncertainty."""

    t_s: float
    energy_j: float
    power_w: Optional[float]
    util: Optional[float]
    source: str
    method: str
    uncertainty: float


class SpanRow(NamedTuple):
    """What TAO's wrapper records inside one task: Ray task id, node, wall-clock start and
    end (s), CPU seconds, group, job, reserved CPUs."""

    task_id: str
    node_id: str
    start_s: float
    end_s: float
    cpu_s: float
    group: str
    job: str
    cpus: float


@dataclass(frozen=True)
class Grant:
    """A controller PLACE decision: a reservation of ``cpus``/``gpus`` on ``node_id``.
    ``slot``: reused by every task of ``group`` (open admission) rather than made for one
    queued task (strict admission) or one actor or bundle."""

    gid: str
    node_id: str
    group: str
    slot: bool = False


class SessionRefused(PermissionError):
    """A call to a TAO actor from outside the TAO session that owns it."""


def new_token() -> str:
    """A fresh session token (128 random bits, hex)."""
    return secrets.token_hex(16)


def check_token(actor: str, expected: str, given: object) -> None:
    """Refuse (and log) a call whose session token is not the owner's."""
    if not isinstance(given, str) or not secrets.compare_digest(given, expected):
        log.warning("%s: refused a call without the owning TAO session's token", actor)
        raise SessionRefused(f"{actor}: refused: the call does not carry the session token of the TAO session "
                             "that owns this actor (only that session's driver, samplers and tasks may call it)")
