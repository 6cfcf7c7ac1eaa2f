"""CPU thermal design power (TDP) by model, from ``tao_core/data/cpu_tdp.csv``.

Each row is one processor model as its manufacturer lists it: vendor, model, generation
(the manufacturer's product collection or line), launch year, cores, threads, TDP in watts
and the source of the row. A model name as Linux reports it (``/proc/cpuinfo`` or
``lscpu``: "Intel(R) Xeon(R) Platinum 8380 CPU @ 2.30GHz", "AMD EPYC 7763 64-Core
Processor") is normalised (trademarks, "CPU", "Processor", the clock and the core count
dropped) and matched against the normalised table names as a whole-word sequence; the
longest match wins, so "EPYC 7713P" does not match "EPYC 7713".
"""
from __future__ import annotations

import csv
import functools
import re
from dataclasses import dataclass
from importlib import resources
from typing import Optional

__all__ = ["CpuTdp", "cpu_tdp_table", "lookup_tdp", "normalize_model"]

_DROP = re.compile(
    r"\(r\)|\(tm\)|®|™|\bintel\b|\bamd\b|\bprocessor\b|\bcpu\b|@.*$|\b\d+(\.\d+)?\s*ghz\b.*$|\b\d+-core\b"
)


def normalize_model(name: str) -> str:
    """Lower-case model name without trademarks, vendor, "CPU", "Processor", clock and core
    count: "Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz" -> "xeon gold 6248"."""
    s = _DROP.sub(" ", name.lower()).replace(",", " ")
    return " ".join(s.split())


@dataclass(frozen=True)
class CpuTdp:
    """One row of the TDP table. ``tdp_w``: watts per socket."""

    vendor: str
    model: str
    generation: str
    launch_year: Optional[int]
    cores: Optional[int]
    threads: Optional[int]
    tdp_w: float
    source: str

    @property
    def server(self) -> bool:
        """A server part (Xeon, EPYC, Opteron) rather than a client one (Ryzen)."""
        return bool(re.search(r"xeon|epyc|opteron", self.model.lower()))


def _int(v: str) -> Optional[int]:
    return int(v) if v.strip().isdigit() else None


@functools.lru_cache(maxsize=1)
def cpu_tdp_table() -> dict[str, CpuTdp]:
    """Normalised model name -> row of ``data/cpu_tdp.csv``."""
    text = resources.files("tao_core").joinpath("data/cpu_tdp.csv").read_text(encoding="utf-8")
    out: dict[str, CpuTdp] = {}
    for row in csv.DictReader(text.splitlines()):
        rec = CpuTdp(vendor=row["vendor"], model=row["model"], generation=row["generation"],
                     launch_year=_int(row["launch_year"]), cores=_int(row["cores"]),
                     threads=_int(row["threads"]), tdp_w=float(row["tdp_w"]), source=row["source"])
        out.setdefault(normalize_model(rec.model), rec)
    return out


@functools.lru_cache(maxsize=1)
def _keys_longest_first() -> tuple[str, ...]:
    return tuple(sorted(cpu_tdp_table(), key=len, reverse=True))


@functools.lru_cache(maxsize=256)
def lookup_tdp(model_name: str) -> Optional[CpuTdp]:
    """The table row whose model is named in ``model_name`` (longest match), or ``None``."""
    padded = f" {normalize_model(model_name)} "
    for key in _keys_longest_first():
        if f" {key} " in padded:
            return cpu_tdp_table()[key]
    return None
