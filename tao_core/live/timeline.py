"""One node's energy timeline as a live adapter keeps it: readings as rows
(:class:`~tao_core.live.values.TimelineRow`) and back, wrapper spans as task rows, and the
driver's copy of the timeline (:class:`NodeTimeline`), whole across sampler restarts.
Times are wall-clock seconds (every process of a node compares them), energy cumulative
joules.

A row keeps each energy component (``cpu_package``, ``dram``, ``gpu``, ``other``, as the
ledger records name them) with its source, so records carry the real components and the
full joined source (``measured-nvml+measured-rapl``).
"""
from __future__ import annotations

import logging
import sys
from typing import Optional, Sequence

from tao_core.attribution import component_of
from tao_core.task_rows import KNOWN_BY_WRAPPER, TaskRow
from tao_core.live.values import SamplerBatch, SpanRow, TaskEnergy, TimelineRow
from tao_core.telemetry.base import DomainReading, Reading, SourceKind

log = logging.getLogger("tao_core.live")

#: domain name of each component in a rebuilt Reading (``attribution.component_of`` maps it back)
DOMAIN_OF = {"cpu_package": "package", "dram": "dram", "gpu": "gpu", "other": "other"}
#: method of the row that bridges a stretch with no sampler on the node
GAP_METHOD = "no sampler (released or restarted): idle_w of its node type over the gap, modeled"

def row_of(r: Reading, util: Optional[float]) -> TimelineRow:
    """A reading's top-level domains as one row."""
    top = [d for d in r.domains.values() if d.parent is None]
    parts: dict[tuple[str, str], float] = {}
    for d in top:
        key = (component_of(d.name), str(d.source))
        parts[key] = parts.get(key, 0.0) + float(d.energy_j)
    powers = [d.power_w for d in top if d.power_w is not None]
    return TimelineRow(
        float(r.t_s), sum(parts.values()), sum(powers) if powers else None, util,
        sys.intern("+".join(sorted({s for _, s in parts})) or "none"),
        sys.intern("; ".join(dict.fromkeys(d.method for d in top))),
        max((d.uncertainty for d in top), default=None), tuple((c, s, e) for (c, s), e in sorted(parts.items())))


def reading_of(row: TimelineRow) -> Reading:
    """A row as a cumulative Reading, one domain per (component, source)."""
    doms = {}
    for comp, src, e in row.parts or (("other", row.source.split("+")[0], row.energy_j),):
        name = DOMAIN_OF[comp] if DOMAIN_OF[comp] not in doms else f"{DOMAIN_OF[comp]}#{src}"
        doms[name] = DomainReading(name=name, energy_j=float(e), source=SourceKind(src), method=row.method,
                                   power_w=row.power_w, uncertainty=float(row.uncertainty or 0.0))
    return Reading(t_s=float(row.t_s), domains=doms)


def continued(row: TimelineRow, t_s: float, watts: float, method: str) -> TimelineRow:
    """``row`` carried on to ``t_s`` at ``watts`` (modeled, in ``other``)."""
    add = watts * max(t_s - row.t_s, 0.0)
    parts = dict(((c, s), e) for c, s, e in row.parts)
    parts[("other", "modeled")] = parts.get(("other", "modeled"), 0.0) + add
    src = "+".join(sorted({s for _, s in parts}))
    return TimelineRow(t_s, row.energy_j + add, watts, None, src, method, row.uncertainty,
                       tuple((c, s, e) for (c, s), e in sorted(parts.items())))


def wrapper_rows(spans: Sequence[SpanRow]) -> list[TaskRow]:
    """TaskRows of wrapper spans (microsecond wall clock, measured CPU seconds)."""
    return [TaskRow(task_id=s.task_id, node_id=s.node_id, start_s=s.start_s, end_s=s.end_s, name=s.group,
                    job=s.job, cpus=s.cpus, known_by=KNOWN_BY_WRAPPER, resolution_s=1e-6, cpu_s=s.cpu_s)
            for s in spans]


class NodeTimeline:
    """The driver's copy of one node's timeline, spans and settled energies. A new sampler
    on the node (Ray restarted it, or TAO replaced it) starts its counters at zero: the
    timeline continues from the last row plus the gap at the node's idle watts
    (:data:`GAP_METHOD`), and spans the old sampler had not handed over are lost."""

    def __init__(self, node_id: str, idle_w: float) -> None:
        self.node_id = node_id
        self.idle_w = float(idle_w)
        self.rows: list[TimelineRow] = []
        self.spans: list[SpanRow] = []
        self.incarnation: Optional[str] = None
        self.next = (0, 0, 0)
        self._base: dict[tuple[str, str], float] = {}  # cumulative J the new sampler's rows add to
        self._first: dict[tuple[str, str], float] = {}  # its first row's

    def renew(self) -> None:
        """The node gets a new sampler: read it from the start."""
        self.incarnation = None
        self.next = (0, 0, 0)

    def take(self, b: SamplerBatch) -> Optional[list[TaskEnergy]]:
        """Append a batch; its settled energies, or None when it comes from a new sampler and
        was not read from the start (read again with ``since`` (0, 0, 0))."""
        if b.incarnation != self.incarnation and (self.incarnation is not None or self.rows):
            if b.since != (0, 0, 0):
                self.next = (0, 0, 0)
                return None
            if not b.rows:
                return []
            self._bridge(b.rows[0])
        self.incarnation = b.incarnation
        if b.first_row > self.next[0]:
            log.warning("node %s: the sampler dropped readings not fetched yet; the gap is interpolated",
                        self.node_id[:12])
        self.rows.extend([self._shifted(r) for r in b.rows] if self._base else b.rows)
        self.spans.extend(b.spans)
        self.next = (b.first_row + len(b.rows), b.first_span + len(b.spans), b.first_energy + len(b.energies))
        return list(b.energies)

    def _bridge(self, first: TimelineRow) -> None:
        if self.incarnation is not None:
            log.warning("node %s: its sampler was restarted; the gap is modeled at idle power and spans it "
                        "had not handed over are lost", self.node_id[:12])
        self._base, self._first = {}, {}
        if not self.rows:
            return
        gap = continued(self.rows[-1], max(first.t_s, self.rows[-1].t_s), self.idle_w, GAP_METHOD)
        self.rows.append(gap)
        self._base = {(c, s): e for c, s, e in gap.parts}
        self._first = {(c, s): e for c, s, e in first.parts}

    def _shifted(self, r: TimelineRow) -> TimelineRow:
        parts = dict(self._base)
        for c, s, e in r.parts:
            parts[(c, s)] = self._base.get((c, s), 0.0) + e - self._first.get((c, s), 0.0)
        return r._replace(energy_j=sum(parts.values()),
                          parts=tuple((c, s, e) for (c, s), e in sorted(parts.items())))
