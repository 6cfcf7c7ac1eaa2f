"""Piecewise-linear power curves: wall watts against utilization.

A curve holds 11 points, the power in watts at 0, 10, ..., 100 % utilization, in the
style of SPECpower_ssj2008 results; power between two points is linearly interpolated.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np

ArrayLike = Union[float, Sequence[float], np.ndarray]

#: Utilization breakpoints of an 11-point curve, as fractions (0.0 .. 1.0).
BREAKPOINTS = np.linspace(0.0, 1.0, 11)

#: Shape used when only a TDP is known: wall power at 0..100 % utilization as a
#: fraction of peak. It is the mean of the normalised SPECpower_ssj2008 curves of the
#: two-socket IBM x3550 Xeon X5670 and X5675 servers in ``data/specpower_servers.csv``
#: (idle about 26 % of peak); see :func:`PowerCurve.from_tdp`.
DEFAULT_SHAPE = (0.265, 0.437, 0.488, 0.531, 0.578, 0.631, 0.695, 0.770, 0.853, 0.925, 1.0)


@dataclass(frozen=True)
class PowerCurve:
    """Wall power in watts at 0, 10, ..., 100 % utilization (11 points, non-decreasing)."""

    points_w: tuple[float, ...]

    def __post_init__(self) -> None:
        pts = tuple(float(p) for p in self.points_w)
        if len(pts) != 11:
            raise ValueError(
                f"power_curve_w: expected 11 numbers (watts at 0, 10, ..., 100 % utilization), got {len(pts)}"
            )
        if any(not np.isfinite(p) or p < 0 for p in pts):
            raise ValueError("power_curve_w: every point must be a finite, non-negative number of watts")
        if any(b < a for a, b in zip(pts, pts[1:])):
            raise ValueError("power_curve_w: watts must not decrease as utilization rises")
        object.__setattr__(self, "points_w", pts)

    @classmethod
    def from_tdp(cls, tdp_w: float, shape: Sequence[float] = DEFAULT_SHAPE) -> "PowerCurve":
        """A curve for a machine whose peak wall power is ``tdp_w`` watts, using ``shape``
        (fractions of peak at 0..100 % utilization)."""
        if not tdp_w > 0:
            raise ValueError("tdp_w: must be a positive number of watts")
        return cls(tuple(tdp_w * s for s in shape))

    @property
    def idle_w(self) -> float:
        """Active-idle power in watts (0 % utilization)."""
        return self.points_w[0]

    @property
    def peak_w(self) -> float:
        """Power in watts at 100 % utilization."""
        return self.points_w[-1]

    def power_w(self, utilization: ArrayLike) -> np.ndarray | float:
        """Wall power in watts at ``utilization`` (fraction 0..1, clipped)."""
        u = np.clip(np.asarray(utilization, dtype=float), 0.0, 1.0)
        out = np.interp(u, BREAKPOINTS, self.points_w)
        return float(out) if out.ndim == 0 else out

    def scaled(self, factor: float) -> "PowerCurve":
        """This curve with every point multiplied by ``factor``."""
        return PowerCurve(tuple(p * factor for p in self.points_w))

    def min_watts_per_unit(self) -> float:
        """Lowest watts per unit of utilization over the breakpoints above zero:
        min over u in {0.1..1.0} of P(u)/u. Multiply by seconds of full-machine work to get
        the least energy that work can cost on this machine."""
        return float(min(p / u for p, u in zip(self.points_w[1:], BREAKPOINTS[1:])))
