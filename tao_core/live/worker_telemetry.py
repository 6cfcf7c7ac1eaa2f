"""A worker's telemetry messages, checked before use, and what they add up to.

An engine adapter whose workers send their own samples (Dask's worker plugin, on the
worker's batched stream) files each message under the worker whose stream carried it and
checks it first (:func:`parse`): types, finite numbers, time within a window of the
receiver's clock and after the worker's last sample, watts between 0 and a ceiling (four
times the node type's peak, at least 100 W), energy that never goes backwards nor rises
faster than that ceiling, bounded sizes. A message that fails is dropped and counted by
reason (:class:`TelemetryInbox`); it never counts as an error of the adapter.

Units: seconds (wall clock, ``time.time()``), joules, watts.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from tao_core.live.timeline import continued
from tao_core.live.values import TimelineRow
from tao_core.telemetry.base import SourceKind

#: the message format this module reads
VERSION = 2
MAX_ENERGIES = 100_000  #: settled task energies in one message

MAX_PAST_S = 300.0  #: a sample may be this much older than the receiver's clock, s
MAX_AHEAD_S = 30.0  #: or this much ahead of it (clock skew), s
MIN_CEILING_W = 100.0  #: the power ceiling is at least this, W
PEAK_FACTOR = 4.0  #: and at least this many times the node type's peak
MAX_PREFIXES = 10_000  #: task prefixes in one message's CPU seconds
MAX_TEXT = 256  #: characters of a text field
MAX_KEY = 4096  #: characters of a task key

_SOURCES = frozenset(s.value for s in SourceKind)


@dataclass
class EnergySeries:
    """Cumulative energy of one worker as its samples said: parallel lists of wall time
    (s), cumulative joules and mean watts over the interval ending there."""

    t_s: list[float] = field(default_factory=list)
    energy_j: list[float] = field(default_factory=list)
    power_w: list[float] = field(default_factory=list)
    source: str = "modeled"
    method: str = ""
    uncertainty: float = 0.0  #: relative standard uncertainty of the joules

    def add(self, t_s: float, energy_j: float, power_w: float) -> None:
        self.t_s.append(t_s)
        self.energy_j.append(energy_j)
        self.power_w.append(power_w)

    def to_dict(self) -> dict[str, Any]:
        return {"t_s": list(self.t_s), "energy_j": list(self.energy_j), "power_w": list(self.power_w),
                "source": self.source, "method": self.method, "uncertainty": self.uncertainty}


#: method of the stretch from a worker's last sample until the engine removed it
LAST_POWER_METHOD = "worker's last sampled power carried until it was removed, modeled"


def series_rows(series: dict[str, Any], removed_s: Optional[float]) -> list[TimelineRow]:
    """A worker's series (:meth:`EnergySeries.to_dict`) as timeline rows; one the engine
    removed at ``removed_s`` is carried at its last sampled power until then."""
    src, method, unc = series["source"], series["method"], series.get("uncertainty")
    rows = [TimelineRow(t, e, p, None, src, method, unc, (("other", src, e),))
            for t, e, p in zip(series["t_s"], series["energy_j"], series["power_w"])]
    if rows and removed_s is not None and removed_s > rows[-1].t_s:
        rows.append(continued(rows[-1], removed_s, rows[-1].power_w or 0.0, LAST_POWER_METHOD))
    return rows


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
    described: Any = None  #: (NodeType, curve provenance or None) the worker described itself as
    energies: tuple = ()  #: settled task energies: (key, group, J, run s)


def _finite(v: Any, lo: float = -math.inf, hi: float = math.inf) -> Optional[float]:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) and lo <= v <= hi else None


def _text(v: Any) -> Optional[str]:
    return v if isinstance(v, str) and len(v) <= MAX_TEXT else None


def _key(v: Any) -> Optional[str]:
    return v if isinstance(v, str) and len(v) <= MAX_KEY else None


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
    for name, check in (("described", _described), ("energies", _energies)):
        if msg.get(name) is not None:
            v = check(msg[name])
            if v is None:
                return name
            out[name] = v
    return out


def _described(v: Any) -> Any:
    """The worker's description of itself: (NodeType, where its curve came from as
    ``CurveProvenance.to_dict()``, or None) (None: not a node type)."""
    from tao_core.accounting.records import curve_entry
    from tao_core.errors import InputError
    from tao_core.power.node_json import node_type_from_dict

    if not isinstance(v, dict):
        return None
    v = {k: list(x) if isinstance(x, tuple) else x for k, x in v.items()}  # msgpack sends lists as tuples
    try:
        nt = node_type_from_dict(v, "described", allow=("origin",))
    except InputError:
        return None
    origin = v.get("origin")
    try:
        curve_entry(nt.name, origin)  # checks its fields
    except (InputError, TypeError, KeyError):
        origin = None
    return nt, (dict(origin) if origin is not None else None)


def _energies(v: Any) -> Optional[tuple]:
    """Settled task energies [(key, group, J >= 0, run s >= 0)] (None: malformed)."""
    if not isinstance(v, (list, tuple)) or len(v) > MAX_ENERGIES:
        return None
    out = []
    for e in v:
        if not isinstance(e, (list, tuple)) or len(e) != 4 or _key(e[0]) is None or _text(e[1]) is None:
            return None
        j, run = _finite(e[2], 0.0), _finite(e[3], 0.0)
        if j is None or run is None:
            return None
        out.append((e[0], e[1], j, run))
    return tuple(out)


def parse_units(msg: Any) -> Union[tuple[str, dict[str, float]], str]:
    """A units message (what a task counted) as (key, unit -> amount), or why it is refused."""
    from tao_core.accounting.records import checked_units

    if not isinstance(msg, dict) or _key(msg.get("key")) is None:
        return "units: not a mapping with a key"
    try:
        return msg["key"], checked_units(msg.get("units"), "units")
    except ValueError:
        return "units: bad unit or amount"


def _energy(msg: dict[str, Any], t: float, last: Optional[EnergySeries], ceiling_w: float) -> Union[dict[str, Any], str]:
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


def parse(msg: Any, *, now_s: float, last: Optional[EnergySeries], ceiling_w: float) -> Union[Sample, str]:
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
        self.timelines: dict[str, EnergySeries] = {}
        self.cpu_s: dict[str, dict[str, float]] = {}
        self.last_power: dict[str, float] = {}
        self.dropped: Counter[str] = Counter()  #: refused messages by reason

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
            tl = self.timelines[addr] = EnergySeries(source=s.source, method=s.method, uncertainty=s.uncertainty)
        tl.add(s.t_s, s.energy_j, s.power_w)
        if s.final:
            self.last_power.pop(addr, None)
        else:
            self.last_power[addr] = s.power_w
        return s

    def forget_power(self, addr: str) -> None:
        """Worker ``addr`` left: it no longer adds to the cluster's power."""
        self.last_power.pop(addr, None)
