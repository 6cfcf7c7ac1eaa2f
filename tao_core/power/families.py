"""CPU generations and the shape of their servers' power curves.

A generation's shape is wall power at 0, 10, ..., 100 % load as a fraction of the power at
100 %, the mean of the normalised SPECpower_ssj2008 curves of its servers in
:mod:`tao_core.power.specpower`. Shapes differ most at idle, which is where consolidation
and powering nodes off pay:

- ``legacy`` (2007-2010: Core 2 and Nehalem Xeons, Pentium D): the seven CloudSim servers,
  idle 26-74 % of peak (mean near 50 %).
- ``xeon-e5-v1-v2`` (Sandy and Ivy Bridge, 2012-2013), ``xeon-e5-v3-v4`` (Haswell and
  Broadwell, 2014-2017), ``xeon-scalable-1``/``-2``/``-3`` (Skylake-SP, Cascade Lake,
  Ice Lake and Cooper Lake), ``epyc-7001``/``-7002``/``-7003`` (Naples, Rome, Milan),
  ``entry`` (single-socket Xeon E3/E and client-class parts): the single-node results of
  ``specpower_results.csv`` whose CPU name is of that generation. Energy-proportional
  servers of 2014 and later idle near 10-25 % of peak.

Generations with no result in the data borrow the shape of the newest measured one of the
same vendor and say so: Xeon Scalable 4th generation and later use ``xeon-scalable-3``,
EPYC 9004/8004/9005 use ``epyc-7003``; Arm servers (no SPECpower_ssj2008 result of one is
in the data) and unknown models use ``server-2018`` (all Xeon Scalable and EPYC results
with hardware from 2018 on).
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Optional

import numpy as np

from tao_core.power.cpu_tdp import normalize_model
from tao_core.power.specpower import named_curves

__all__ = ["CurveShape", "cpu_generation", "shape_for", "shapes"]

#: (pattern on the normalised model name, generation), first match wins
_RULES: tuple[tuple[str, str], ...] = (
    (r"\bepyc [4789]\d\d[45]", "epyc-9004+"),
    (r"\bepyc 7\d\d1", "epyc-7001"),
    (r"\bepyc 7\d\d2", "epyc-7002"),
    (r"\bepyc 7\d\d3", "epyc-7003"),
    (r"\bxeon (platinum|gold|silver|bronze) [3-9]1\d\d", "xeon-scalable-1"),
    (r"\bxeon (platinum|gold|silver|bronze) [3-9]2\d\d", "xeon-scalable-2"),
    (r"\bxeon (platinum|gold|silver|bronze) [3-9]3\d\d", "xeon-scalable-3"),
    (r"\bxeon (platinum|gold|silver|bronze|max) [3-9][4-9]\d\d", "xeon-scalable-4+"),
    (r"\bxeon 6\d{3}", "xeon-scalable-4+"),
    (r"\bxeon e[57]-\d{4}\w* v[34]\b", "xeon-e5-v3-v4"),
    (r"\bxeon e[57]-\d{4}", "xeon-e5-v1-v2"),
    (r"\bxeon e3-\d{4}|\bxeon e-2\d{3}|\bxeon w-\d{4}|\bcore\b|\bcore i\d|\bryzen\b", "entry"),
    (r"\bxeon [xelw]?\d{4}\b|\bpentium\b|\bcore2\b|\bopteron\b", "legacy"),
    (r"\bneoverse\b|\bampere\b|\bgraviton\b|\bkunpeng\b|\ba64fx\b|\barm\b", "arm"),
)

#: generation without results -> (generation whose shape it uses, why)
BORROWED = {
    "xeon-scalable-4+": ("xeon-scalable-3", "no SPECpower result of Xeon Scalable 4th generation or later in the data"),
    "epyc-9004+": ("epyc-7003", "no SPECpower result of EPYC 9004/8004/9005 in the data"),
    "arm": ("server-2018", "no SPECpower result of an Arm server in the data"),
    "unknown": ("server-2018", "CPU generation not recognised"),
}


@dataclass(frozen=True)
class CurveShape:
    """Fractions of peak at 0..100 % load (11 points), the results they are the mean of,
    and a note when the shape is borrowed from another generation."""

    generation: str
    fractions: tuple[float, ...]
    results: tuple[str, ...]
    borrowed_from: Optional[str] = None
    note: str = ""

    @property
    def idle_fraction(self) -> float:
        return self.fractions[0]

    def describe(self) -> str:
        base = f"{self.generation} shape (idle {self.idle_fraction:.0%} of peak, mean of {len(self.results)} SPECpower curve(s))"
        if self.borrowed_from:
            return f"{base}, borrowed: {self.note}"
        return base


def cpu_generation(model_name: str) -> str:
    """The generation key of a CPU model name (see the module doc), ``unknown`` if none."""
    n = normalize_model(model_name)
    for pattern, gen in _RULES:
        if re.search(pattern, n):
            return gen
    return "unknown"


def _mean_shape(gen: str, names: list[str]) -> CurveShape:
    curves = named_curves()
    rows = np.array([np.asarray(curves[n].curve.points_w) / curves[n].curve.peak_w for n in names])
    frac = np.maximum.accumulate(rows.mean(axis=0))
    return CurveShape(gen, tuple(float(round(x, 4)) for x in frac), tuple(names))


@functools.lru_cache(maxsize=1)
def shapes() -> dict[str, CurveShape]:
    """Every measured generation's shape, plus ``server-2018``."""
    groups: dict[str, list[str]] = {}
    recent: list[str] = []
    for name, c in named_curves().items():
        gen = "legacy" if c.hw_year is None else cpu_generation(c.cpu)
        if gen in ("unknown", "arm"):
            continue
        groups.setdefault(gen, []).append(name)
        if c.hw_year is not None and c.hw_year >= 2018 and re.match(r"(xeon-scalable|epyc)", gen):
            recent.append(name)
    out = {g: _mean_shape(g, names) for g, names in sorted(groups.items())}
    out["server-2018"] = _mean_shape("server-2018", recent)
    return out


def shape_for(generation: str) -> CurveShape:
    """The shape a CPU of ``generation`` gets (its own, or a borrowed one saying so)."""
    table = shapes()
    if generation in table:
        return table[generation]
    target, why = BORROWED.get(generation, BORROWED["unknown"])
    s = table[target]
    return CurveShape(generation, s.fractions, s.results, borrowed_from=target, note=f"{why}; {target} used")
