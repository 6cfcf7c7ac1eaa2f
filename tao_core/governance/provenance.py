"""Where a report's joules come from: measured, modeled or replayed shares, each source's
methods, and the combined uncertainty."""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Iterable, Optional, Protocol

SOURCE_CLASSES = ("measured", "modeled", "replay", "mixed", "unknown")
UNCERTAINTY_METHOD = (
    "per-record relative standard uncertainty x energy; combined by root sum of squares "
    "(independent errors); upper bound: plain sum (fully correlated errors)"
)


class SourcedEnergy(Protocol):
    """A record with energy and where it came from (NodeRecord, WorkRecord)."""

    @property
    def energy_j(self) -> float: ...

    source: str
    method: str
    uncertainty: Optional[float]


def share(part: Optional[float], whole: Optional[float]) -> Optional[float]:
    """``part / whole``, or None when either is unknown or ``whole`` is not positive."""
    if part is None or whole is None or whole <= 0:
        return None
    return part / whole


def source_class(source: Optional[str]) -> str:
    """measured, modeled, replay, mixed or unknown, for a source string such as
    ``measured-rapl`` or ``measured-rapl+modeled``."""
    if not source or not isinstance(source, str):
        return "unknown"
    classes = set()
    for p in {p.strip() for p in source.split("+") if p.strip()}:
        if p.startswith("measured"):
            classes.add("measured")
        elif p in ("modeled", "replay"):
            classes.add(p)
        else:
            classes.add("unknown")
    if len(classes) == 1:
        return classes.pop()
    return "mixed" if classes else "unknown"


@dataclass
class SourceSum:
    """Energy, methods and uncertainty of the records of one source (J)."""

    energy_j: float = 0.0
    methods: list[str] = field(default_factory=list)
    records: int = 0
    u_abs_j: float = 0.0  #: sum of |relative uncertainty x energy| of the records stating one
    with_u: int = 0

    def add(self, energy_j: float, method: Optional[str], u: Optional[float], records: int = 1) -> None:
        self.energy_j += energy_j
        self.records += records
        if method and method not in self.methods:
            self.methods.append(method)
        if u is not None:
            self.u_abs_j += abs(u * energy_j)
            self.with_u += records

    def row(self, source: str, total_j: float) -> dict:
        rel = share(self.u_abs_j, self.energy_j) if self.records and self.with_u == self.records else None
        return {"source": source, "class": source_class(source), "methods": self.methods, "records": self.records,
                "energy_j": self.energy_j, "share": share(self.energy_j, total_j), "uncertainty_rel": rel}


def source_rows(by_source: "OrderedDict[str, SourceSum]", total_j: float) -> tuple[list[dict], dict[str, float]]:
    """Rows of ``provenance.by_source`` (largest first) and the share of each source class."""
    rows = [d.row(src, total_j) for src, d in sorted(by_source.items(), key=lambda kv: -kv[1].energy_j)]
    shares = {c: 0.0 for c in SOURCE_CLASSES}
    for r in rows:
        shares[r["class"]] += r["share"] or 0.0
    return rows, shares


def uncertainty_note(without_u: int, with_u: int) -> str:
    if without_u and not with_u:
        return f"no record states an uncertainty ({without_u} record(s)): unknown"
    if without_u:
        return f"{without_u} record(s) state no uncertainty: the figures cover the other {with_u} only"
    return "every record states an uncertainty"


def provenance_section(basis: Iterable[SourcedEnergy], total_j: float) -> dict:
    """The ``provenance`` section over the records that make up IT energy (``total_j``)."""
    by: "OrderedDict[str, SourceSum]" = OrderedDict()
    std2 = 0.0
    without_u = with_u = 0
    for rec in basis:
        e, u = rec.energy_j, rec.uncertainty
        by.setdefault(rec.source, SourceSum()).add(e, rec.method, u)
        if u is None:
            without_u += 1
        else:
            std2 += (u * e) ** 2
            with_u += 1
    rows, shares = source_rows(by, total_j)
    std = math.sqrt(std2)
    return {
        **{f"{c}_share": shares[c] for c in SOURCE_CLASSES},
        "by_source": rows,
        "uncertainty": {
            "standard_j": std,
            "relative": share(std, total_j) if not without_u else None,
            "upper_bound_j": sum(d.u_abs_j for d in by.values()),
            "records_without_uncertainty": without_u,
            "complete": without_u == 0,
            "note": uncertainty_note(without_u, with_u),
            "method": UNCERTAINTY_METHOD,
        },
    }
