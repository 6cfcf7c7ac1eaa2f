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

Limits: files of at most 256 MiB and :data:`MAX_ROWS` rows (domain readings); times and
joules finite (joules >= 0), watts from 0 to :data:`MAX_POWER_W`, kelvin from 0 to 1,000,
uncertainty from 0 to 10; domain names up to 256 printable characters. Anything else is an
:class:`~tao_core.errors.InputError` naming the file, row or line and the field.
"""
from __future__ import annotations

import csv
import io
import os
import re
import threading
import time
from typing import Any, Callable, Iterable, Optional

import numpy as np

from tao_core.errors import InputError
from tao_core.files import parse_json_text, read_csv, read_input_text, write_output
from tao_core.files.values import name as checked_name
from tao_core.files.values import number, quote
from tao_core.telemetry.base import DomainReading, EnergySource, Reading, SourceKind

__all__ = ["ReplaySource", "CSV_COLUMNS", "write_csv", "MAX_ROWS"]

CSV_COLUMNS = ("t_s", "domain", "energy_j", "power_w", "temperature_k", "parent", "source", "method", "uncertainty")
_REQUIRED = ("t_s", "domain", "energy_j")
#: domain readings in one file (about 0.3 KB of memory each)
MAX_ROWS = 2_000_000
MAX_BYTES = 256 * 1024 * 1024
#: seconds and joules accepted (far beyond any real counter)
MAX_ABS = 1e15
#: watts of one domain
MAX_POWER_W = 1e7
MAX_TEXT_CHARS = 1024

#: (field, lowest, highest) of the optional numbers
_RANGES = {"power_w": (0.0, MAX_POWER_W), "temperature_k": (0.0, 1000.0), "uncertainty": (0.0, 10.0)}


def _opt_float(value: Any, key: str, where: str) -> Optional[float]:
    if value is None or value == "":
        return None
    lo, hi = _RANGES[key]
    return number(value, f"{where}: {key}", lo=lo, hi=hi)


def _opt_text(value: Any, key: str, where: str) -> Optional[str]:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT_CHARS:
        raise InputError(f"{where}: {key}: {quote(value)} must be text of at most {MAX_TEXT_CHARS} characters")
    return value


def _row(where: str, t: Any, name: Any, e: Any, p: Any, temp: Any, parent: Any, src: Any, method: Any,
         unc: Any) -> tuple:
    """One checked row: (t_s, domain, energy_j, power_w, temperature_k, parent, source, method, uncertainty)."""
    if t is None or t == "" or e is None or e == "" or not name:
        raise InputError(f"{where}: t_s, domain and energy_j must all be given")
    return (number(t, f"{where}: t_s", lo=-MAX_ABS, hi=MAX_ABS),
            checked_name(name, f"{where}: domain", what="domain name"),
            number(e, f"{where}: energy_j", lo=0.0, hi=MAX_ABS, fix="give cumulative joules, >= 0"),
            _opt_float(p, "power_w", where), _opt_float(temp, "temperature_k", where),
            None if parent in (None, "") else checked_name(parent, f"{where}: parent", what="domain name"),
            _opt_text(src, "source", where), _opt_text(method, "method", where),
            _opt_float(unc, "uncertainty", where) or 0.0)


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
        """Read the CSV format of the module docstring."""
        header, records = read_csv(path, "replay CSV", max_bytes=MAX_BYTES, max_rows=MAX_ROWS, what="row")
        missing = [c for c in _REQUIRED if c not in header]
        if missing:
            raise InputError(f"replay CSV {path}: missing column(s) {', '.join(missing)}; required: t_s, domain, energy_j")
        rows = []
        for n, fields in records:
            row = dict(zip(header, fields))
            rows.append(_row(f"replay CSV {path}: row {n}", row.get("t_s"), row.get("domain"), row.get("energy_j"),
                             row.get("power_w"), row.get("temperature_k"), row.get("parent"), row.get("source"),
                             row.get("method"), row.get("uncertainty")))
        return cls(_group(rows, str(path), keep_source), origin=str(path), **kw)

    @classmethod
    def from_jsonl(cls, path: "str | os.PathLike[str]", *, keep_source: bool = False, **kw) -> "ReplaySource":
        """Read the JSON lines of ``tao monitor --json``."""
        text = read_input_text(path, "replay JSONL", max_bytes=MAX_BYTES)
        rows = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            where = f"replay JSONL {path}: line {n}"
            obj = parse_json_text(line, where)
            if not isinstance(obj, dict) or "t_s" not in obj or not isinstance(obj.get("domains"), dict):
                raise InputError(f"{where}: not a tao monitor JSON line (an object with t_s and domains)")
            for name, d in obj["domains"].items():
                if not isinstance(d, dict):
                    raise InputError(f"{where}: domains.{quote(name)}: expected an object with energy_j")
                rows.append(_row(f"{where}: domains.{quote(name)}", obj["t_s"], name, d.get("energy_j"),
                                 d.get("power_w"), d.get("temperature_k"), d.get("parent"), d.get("source"),
                                 d.get("method"), d.get("uncertainty")))
                if len(rows) > MAX_ROWS:
                    raise InputError(f"replay JSONL {path}: more than {MAX_ROWS:,} domain readings (the limit, which "
                                     "keeps memory bounded); split the file")
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
    """Write readings in the CSV format above, whole or not at all (``tao_core.files``)."""
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for r in readings:
        for d in r.domains.values():
            w.writerow([r.t_s, d.name, d.energy_j, "" if d.power_w is None else d.power_w,
                        "" if d.temperature_k is None else d.temperature_k, d.parent or "",
                        str(d.source), d.method, d.uncertainty])
    write_output(path, buf.getvalue(), "replay CSV")
