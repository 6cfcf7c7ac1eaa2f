"""Measured whole-server power curves from SPECpower_ssj2008 results.

Two tables, one record type (:class:`NamedCurve`):

- ``data/specpower_servers.csv``: seven servers of 2007-2010 as shipped in CloudSim's
  ``PowerModelSpecPower*`` classes, named as there (``IbmX3550XeonX5675``).
- ``data/specpower_results.csv``: every single-node SPECpower_ssj2008 result with hardware
  available from 2012 to mid-2022 in the archive of SPEC's result files kept in
  green-coding-solutions/spec-power-raw-data, whose CPU is a Xeon E5/E7, Xeon Scalable,
  EPYC or an entry server part (Xeon E3/E, Core), and whose power rises with load. Each row
  is named by its result id (``power_ssj2008-20210221-01065``), which is the page
  ``https://www.spec.org/power_ssj2008/results/`` publishes it under.

Power is the average active power in watts at active idle and at 10, ..., 100 % of the
calibrated ssj_ops load, of the whole system under test measured at the wall.
"""
from __future__ import annotations

import csv
import functools
import re
from dataclasses import dataclass
from importlib import resources
from typing import Optional

from tao_core.power.curve import PowerCurve

__all__ = ["NamedCurve", "named_curves", "LEGACY_TABLE", "RESULTS_TABLE"]

LEGACY_TABLE = "data/specpower_servers.csv"
RESULTS_TABLE = "data/specpower_results.csv"


@dataclass(frozen=True)
class NamedCurve:
    """A measured server: its curve (W at 0..100 % load), what was tested and the source."""

    name: str
    curve: PowerCurve
    sockets: int
    cores: int
    threads: Optional[int]
    memory_gb: Optional[float]
    cpu: str
    server: str
    hw_year: Optional[int]
    source: str


def _points(row: dict[str, str]) -> tuple[float, ...]:
    return tuple(float(row[f"w_{p}"]) for p in range(0, 101, 10))


def _read(table: str) -> list[dict[str, str]]:
    text = resources.files("tao_core").joinpath(table).read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines()))


def _legacy() -> list[NamedCurve]:
    out = []
    for row in _read(LEGACY_TABLE):
        m = re.search(r"(Xeon\w*|Pentium\w*)(.*)$", row["model"])
        cpu = (m.group(1) + " " + m.group(2)).strip() if m else row["model"]
        out.append(NamedCurve(
            name=row["model"], curve=PowerCurve(_points(row)), sockets=int(row["sockets"]),
            cores=int(row["cores"]), threads=None, memory_gb=None, cpu=cpu, server=row["model"],
            hw_year=None, source=f"SPECpower_ssj2008 {row['spec_result']}, as shipped in CloudSim",
        ))
    return out


def _results() -> list[NamedCurve]:
    out = []
    for row in _read(RESULTS_TABLE):
        year = re.search(r"(\d{4})", row["hw_available"])
        out.append(NamedCurve(
            name=row["result"], curve=PowerCurve(_points(row)), sockets=int(row["chips"]),
            cores=int(row["cores"]), threads=int(row["threads"]), memory_gb=float(row["memory_gb"]),
            cpu=row["cpu"], server=f"{row['hw_vendor']} {row['hw_model']}",
            hw_year=int(year.group(1)) if year else None,
            source=f"SPECpower_ssj2008 result {row['result']}",
        ))
    return out


@functools.lru_cache(maxsize=1)
def named_curves() -> dict[str, NamedCurve]:
    """Every measured server by name: the seven 2007-2010 servers, then the results table."""
    return {c.name: c for c in _legacy() + _results()}
