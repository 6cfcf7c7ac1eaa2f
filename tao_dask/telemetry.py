"""Telemetry from TAO's worker plugins, as the scheduler receives it.

A worker sends one message every ``interval_s`` on its own batched stream to the
scheduler (operation :data:`OP`). Dask hands the stream handler the address of the
worker whose stream carried it, so a sample is only ever filed under the worker that
sent it: no client can speak for a worker (``Client.log_event`` on :data:`TOPIC`, the
topic TAO once used, is counted as refused and changes nothing).

Every message is checked before use (:func:`parse`): types, finite numbers, time within
a window of the scheduler's clock and after the worker's last sample, watts between 0
and a ceiling (four times the node type's peak, at least 100 W), energy that never goes
backwards nor rises faster than that ceiling, bounded sizes. A message that fails is
dropped and counted by reason; it never counts as a TAO error and never turns placement
off.

Units: seconds (wall clock, ``time.time()``), joules, watts.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, Optional, Union

from tao_core.telemetry.base import SourceKind
from tao_dask.state import Timeline

#: the scheduler stream operation TAO's worker plugin sends its samples with
OP = "tao-telemetry"
#: the event topic of earlier versions; events on it are counted as refused
TOPIC = "tao-telemetry"
#: the message format this module reads
VERSION = 2

MAX_PAST_S = 300.0  #: a sample may be this much older than the scheduler's clock, s
MAX_AHEAD_S = 30.0  #: or this much ahead of it (clock skew), s
MIN_CEILING_W = 100.0  #: the power ceiling is at least this, W
PEAK_FACTOR = 4.0  #: and at least this many times the node type's peak
MAX_PREFIXES = 10_000  #: task prefixes in one message's CPU seconds
MAX_TEXT = 256  #: characters of a text field

_SOURCES = frozenset(s.value for s in SourceKind)


@dataclass(frozen=True)
class Sample:
    """One checked telemetry message."""

    t_s: float
    nthreads: Optional[int] = None
    pid: Optional[int] = None
    node_type: Optional[str] = None
    final: bool = False
    cpu_s: Optional[dict[str, float]] = None
    energy_j: Optional[float] = None  #: cumulative, J (None: the worker has no power model)
    power_w: Optional[float] = None
    utilization: Optional[float] = None
    source: str = "modeled"
    method: str = ""
    uncertainty: float = 0.0


def _finite(v: Any, lo: float = -math.inf, hi: float = math.inf) -> Optional[float]:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) and lo <= v <= hi else None


def _text(v: Any) -> Optional[str]:
    return v if isinstance(v, str) and len(v) <= MAX_TEXT else None


def _cpu_s(v: Any) -> Union[dict[str, float], str, None]:
    if v is None:
        return None
    if not isinstance(v, dict) or len(v) > MAX_PREFIXES:
        return "cpu_s"
    out = {}
    for k, x in v.items():
        f = _finite(x, 0.0)
        if _text(k) is None or f is None:
            return "cpu_s"
        out[k] = f
    return out


def _optional(msg: dict[str, Any]) -> Union[dict[str, Any], str]:
    """The optional identity fields, checked."""
    out: dict[str, Any] = {}
    for name, ok in (("nthreads", lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 < v < 1_000_000),
                     ("pid", lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0),
                     ("node_type", lambda v: _text(v) is not None),
                     ("final", lambda v: isinstance(v, bool))):
        v = msg.get(name)
        if v is not None:
            if not ok(v):
                return name
            out[name] = v
    cpu = _cpu_s(msg.get("cpu_s"))
    if isinstance(cpu, str):
        return cpu
    out["cpu_s"] = cpu
    return out


def _energy(msg: dict[str, Any], t: float, last: Optional[Timeline], ceiling_w: float) -> Union[dict[str, Any], str]:
    """The power fields, checked against the worker's previous sample."""
    e = _finite(msg.get("energy_j"), 0.0)
    p = _finite(msg.get("power_w"), 0.0, ceiling_w)
    if e is None:
        return "energy_j"
    if p is None:
        return "power_w"
    util = msg.get("utilization")
    if util is not None and _finite(util, 0.0, 1.0 + 1e-6) is None:
        return "utilization"
    source, method = msg.get("source", "modeled"), msg.get("method", "")
    if source not in _SOURCES:
        return "source"
    if _text(method) is None:
        return "method"
    unc = _finite(msg.get("uncertainty", 0.0), 0.0, 10.0)
    if unc is None:
        return "uncertainty"
    if last is not None and last.t_s:
        step = e - last.energy_j[-1]
        if step < 0:
            return "energy went backwards"
        if step > ceiling_w * (t - last.t_s[-1]) + 1.0:
            return "energy rose faster than the power ceiling"
    return {"energy_j": e, "power_w": p, "utilization": None if util is None else min(float(util), 1.0),
            "source": source, "method": method, "uncertainty": unc}


def parse(msg: Any, *, now_s: float, last: Optional[Timeline], ceiling_w: float) -> Union[Sample, str]:
    """``msg`` as a :class:`Sample`, or the reason it is refused (a short phrase)."""
    if not isinstance(msg, dict):
        return "not a mapping"
    if msg.get("v") != VERSION:
        return "format version"
    t = _finite(msg.get("t"), now_s - MAX_PAST_S, now_s + MAX_AHEAD_S)
    if t is None:
        return "time outside the window"
    if last is not None and last.t_s and t <= last.t_s[-1]:
        return "time not after the last sample"
    fields = _optional(msg)
    if isinstance(fields, str):
        return fields
    if "energy_j" in msg or "power_w" in msg:
        power = _energy(msg, t, last, ceiling_w)
        if isinstance(power, str):
            return power
        fields.update(power)
    return Sample(t_s=t, **fields)


def ceiling_w(peak_w: Optional[float]) -> float:
    """The most watts a worker's sample may show."""
    return MIN_CEILING_W if peak_w is None else max(MIN_CEILING_W, PEAK_FACTOR * float(peak_w))


class TelemetryInbox:
    """Checked samples per worker: energy timelines, last power, per-prefix CPU seconds,
    and counts of what was refused."""

    def __init__(self) -> None:
        self.timelines: dict[str, Timeline] = {}
        self.cpu_s: dict[str, dict[str, float]] = {}
        self.last_power: dict[str, float] = {}
        self.dropped: Counter[str] = Counter()  #: refused messages by reason
        self.refused_events = 0  #: samples that came as a client's event, not a worker's stream

    def receive(self, addr: str, msg: Any, *, now_s: float, peak_w: Optional[float]) -> Union[Sample, str]:
        """Check and file one message from worker ``addr``; the sample, or why it was dropped."""
        s = parse(msg, now_s=now_s, last=self.timelines.get(addr), ceiling_w=ceiling_w(peak_w))
        if isinstance(s, str):
            self.dropped[s] += 1
            return s
        if s.cpu_s:
            self.cpu_s[addr] = s.cpu_s
        if s.energy_j is None:
            return s
        tl = self.timelines.get(addr)
        if tl is None:
            tl = self.timelines[addr] = Timeline(source=s.source, method=s.method, uncertainty=s.uncertainty)
        tl.add(s.t_s, s.energy_j, s.power_w)
        if s.final:
            self.last_power.pop(addr, None)
        else:
            self.last_power[addr] = s.power_w
        return s

    def forget_power(self, addr: str) -> None:
        """Worker ``addr`` left: it no longer adds to the cluster's power."""
        self.last_power.pop(addr, None)
