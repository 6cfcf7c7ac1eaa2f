"""Replay timestamped readings from a file, for tests, benchmarks and privileged samplers.

CSV format (long: one row per domain per instant; header required):

=============  =========  ===================================================================
column         required   meaning
=============  =========  ===================================================================
t_s            yes        seconds (any origin, non-decreasing down the file)
domain         yes        domain name (``package-0``, ``dram-0``, ``gpu-0``, ``node``)
energy_j       yes        cumulative joules of that domain (non-decreasing)
power_w        no         watts at that instant
temperature_k  no         kelvin
parent         no         containing domain (left out of totals), empty for top level
source         no         the kind the figures were first read as (``measured-rapl`` ...)
method         no         how they were read
uncertainty    no         relative standard uncertainty (0.05 = 5 %)
=============  =========  ===================================================================

:meth:`ReplaySource.from_jsonl` reads the lines ``tao monitor --json`` writes instead, so
a sampler run as root can feed an unprivileged TAO.

Every domain is labelled ``replay`` with the original source in its method, unless
``keep_source=True`` (a privileged sampler's file, trusted as what it says).
"""
from __future__ import annotations

import csv
import json
import os
import re
import threading
import time
from typing import Callable, Iterable, Optional

import numpy as np

from tao_core.errors import InputError
from tao_core.telemetry.base import DomainReading, EnergySource, Reading, SourceKind

__all__ = ["ReplaySource", "CSV_COLUMNS", "write_csv"]

CSV_COLUMNS = ("t_s", "domain", "energy_j", "power_w", "temperature_k", "parent", "source", "method", "uncertainty")
_REQUIRED = ("t_s", "domain", "energy_j")


def _opt_float(row: dict, key: str, where: str) -> Optional[float]:
    v = row.get(key)
    if v is None or v == "":
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        raise InputError(f"{where}: column {key!r} must be a number, got {v!r}") from None


class ReplaySource(EnergySource):
    """Readings from a file. ``read()`` either steps through the file's instants one per
    call (``realtime=False``, the default; after the last it repeats the last), or gives the
    readings interpolated at the time elapsed since the source opened (``realtime=True``)."""

    kind = SourceKind.REPLAY

    def __init__(
        self,
        readings: Iterable[Reading],
        *,
        origin: str = "replay",
        realtime: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.readings: list[Reading] = list(readings)
        if not self.readings:
            raise InputError(f"{origin}: no readings; give at least one row")
        self.origin = origin
        self.realtime = realtime
        self._clock = clock
        self._t0 = clock()
        self._i = 0
        self._lock = threading.Lock()

    # --- loading -----------------------------------------------------------------------
    @classmethod
    def from_csv(cls, path: "str | os.PathLike[str]", *, keep_source: bool = False, **kw) -> "ReplaySource":
        rows = []
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in _REQUIRED if c not in (reader.fieldnames or [])]
            if missing:
                raise InputError(f"{path}: missing column(s) {', '.join(missing)}; required: t_s, domain, energy_j")
            for n, row in enumerate(reader, start=2):
                where = f"{path} row {n}"
                t = _opt_float(row, "t_s", where)
                e = _opt_float(row, "energy_j", where)
                if t is None or e is None or not row.get("domain"):
                    raise InputError(f"{where}: t_s, domain and energy_j must all be given")
                rows.append((t, row["domain"], e, _opt_float(row, "power_w", where),
                             _opt_float(row, "temperature_k", where), row.get("parent") or None,
                             row.get("source") or None, row.get("method") or None,
                             _opt_float(row, "uncertainty", where) or 0.0))
        return cls(_group(rows, str(path), keep_source), origin=str(path), **kw)

    @classmethod
    def from_jsonl(cls, path: "str | os.PathLike[str]", *, keep_source: bool = False, **kw) -> "ReplaySource":
        """Read the JSON lines of ``tao monitor --json``."""
        rows = []
        with open(path) as f:
            for n, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                    t = float(obj["t_s"])
                    for name, d in obj["domains"].items():
                        rows.append((t, name, float(d["energy_j"]), d.get("power_w"), d.get("temperature_k"),
                                     d.get("parent"), d.get("source"), d.get("method"), float(d.get("uncertainty", 0.0))))
                except (ValueError, KeyError, TypeError, AttributeError) as exc:
                    raise InputError(f"{path} line {n}: not a tao monitor JSON line ({exc})") from None
        names = {r[1] for r in rows}
        rows = [r[:5] + (r[5] or _implied_parent(r[1], names),) + r[6:] for r in rows]
        return cls(_group(rows, str(path), keep_source), origin=str(path), **kw)

    # --- reading -----------------------------------------------------------------------
    def read(self) -> Reading:
        with self._lock:
            if not self.realtime:
                r = self.readings[min(self._i, len(self.readings) - 1)]
                self._i += 1
                return r
            now = self._clock()
            t_file = self.readings[0].t_s + (now - self._t0)
            return _interpolate(self.readings, t_file, now)


def _implied_parent(name: str, names: set[str]) -> Optional[str]:
    """``core-N``/``uncore-N`` lie inside ``package-N`` (see :mod:`tao_core.telemetry.rapl`)."""
    m = re.fullmatch(r"(?:core|uncore)-(\d+)", name)
    if m and f"package-{m.group(1)}" in names:
        return f"package-{m.group(1)}"
    return None


def _group(rows, origin: str, keep_source: bool) -> list[Reading]:
    by_t: dict[float, dict[str, DomainReading]] = {}
    last_e: dict[str, float] = {}
    last_t = -float("inf")
    for t, name, e, p, temp, parent, src, method, unc in rows:
        if t < last_t:
            raise InputError(f"{origin}: t_s goes back at {t} (after {last_t}); sort the rows by t_s")
        last_t = t
        if e < last_e.get(name, -float("inf")):
            raise InputError(f"{origin}: energy_j of {name} decreases at t_s={t}; energy_j must be cumulative")
        last_e[name] = e
        orig = src or "unknown"
        if keep_source and src in {k.value for k in SourceKind}:
            kind, m = SourceKind(src), f"{method or src} (via {os.path.basename(origin)})"
        else:
            kind, m = SourceKind.REPLAY, f"replay of {orig}" + (f" ({method})" if method else "") + f" from {os.path.basename(origin)}"
        by_t.setdefault(t, {})[name] = DomainReading(
            name=name, energy_j=e, source=kind, method=m, power_w=p, temperature_k=temp,
            uncertainty=unc, parent=parent,
        )
    return [Reading(t_s=t, domains=d) for t, d in sorted(by_t.items())]


def _interpolate(readings: list[Reading], t_file: float, t_out: float) -> Reading:
    ts = np.array([r.t_s for r in readings])
    i = int(np.searchsorted(ts, t_file, side="right")) - 1
    if i < 0:
        base = readings[0]
        return Reading(t_s=t_out, domains=dict(base.domains))
    if i >= len(readings) - 1:
        return Reading(t_s=t_out, domains=dict(readings[-1].domains))
    a, b = readings[i], readings[i + 1]
    f = (t_file - a.t_s) / (b.t_s - a.t_s) if b.t_s > a.t_s else 1.0
    out = {}
    for name, da in a.domains.items():
        db = b.domains.get(name, da)
        out[name] = DomainReading(
            name=name, energy_j=da.energy_j + f * (db.energy_j - da.energy_j), source=da.source,
            method=da.method, power_w=db.power_w, temperature_k=db.temperature_k,
            uncertainty=da.uncertainty, parent=da.parent,
        )
    return Reading(t_s=t_out, domains=out)


def write_csv(path: "str | os.PathLike[str]", readings: Iterable[Reading]) -> None:
    """Write readings in the CSV format above (to a temp file, then renamed)."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for r in readings:
            for d in r.domains.values():
                w.writerow([r.t_s, d.name, d.energy_j, "" if d.power_w is None else d.power_w,
                            "" if d.temperature_k is None else d.temperature_k, d.parent or "",
                            str(d.source), d.method, d.uncertainty])
    os.replace(tmp, path)
