"""Piecewise-linear power curves: wall watts against utilization.

A curve holds 11 points, the power in watts at 0, 10, ..., 100 % utilization, in the
style of SPECpower_ssj2008 results; power between two points is linearly interpolated.

One interpolation kernel serves every user: :func:`segment` (one utilization) and
:func:`segments` (an array) give the segment and the position in it; :class:`PowerCurve`
evaluates one curve with them, and :class:`CurveTable` evaluates many curves at once (the
controller's node types: one row per type, looked up per node).
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


def segment(x10: float) -> tuple[int, float]:
    """Segment ``j`` (0..9) of utilization ``x10`` given in tenths (utilization x 10,
    clipped to 0..10) and the position ``f`` in it (0..1): the value is
    ``p[j] + (p[j + 1] - p[j]) * f``."""
    if x10 <= 0.0:
        return 0, 0.0
    if x10 >= 10.0:
        return 9, 1.0
    j = int(x10)
    return j, x10 - j


def segments(x10: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`segment` for an array of utilizations in tenths: (segments, positions)."""
    x = np.clip(np.asarray(x10, dtype=float), 0.0, 10.0)
    j = np.minimum(x.astype(np.int64), 9)
    return j, x - j


def _slopes(points: np.ndarray) -> np.ndarray:
    """Per segment, watts from its start to its end (the last column is 0)."""
    s = np.zeros_like(points)
    s[..., :-1] = np.diff(points, axis=-1)
    return s


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
        p = self.points_w
        if isinstance(utilization, (float, int)) or np.ndim(utilization) == 0:
            j, f = segment(float(utilization) * 10.0)
            return p[j] + (p[j + 1] - p[j]) * f
        j, f = segments(np.asarray(utilization, dtype=float) * 10.0)
        arr = np.asarray(p)
        return arr[j] + _slopes(arr)[j] * f

    def scaled(self, factor: float) -> "PowerCurve":
        """This curve with every point multiplied by ``factor``."""
        return PowerCurve(tuple(p * factor for p in self.points_w))


class CurveTable:
    """Several 11-point curves in one flat table (row ``k`` = curve ``k``), evaluated with
    the kernel of :func:`segment`: one value (:meth:`watts`) or one per node
    (:meth:`watts_rows`). Rows can be added and replaced (a refitted curve)."""

    def __init__(self, curves: Sequence[Sequence[float]] = ()) -> None:
        self.points = np.zeros((0, 11))
        for c in curves:
            self.add(c)

    def __len__(self) -> int:
        return self.points.shape[0]

    def add(self, points_w: Sequence[float]) -> int:
        """Append a curve; returns its row."""
        self.points = np.vstack([self.points, np.asarray(points_w, dtype=float).reshape(1, 11)])
        self._rebuild()
        return len(self) - 1

    def set(self, k: int, points_w: Sequence[float]) -> None:
        """Replace row ``k``."""
        self.points[k] = np.asarray(points_w, dtype=float)
        self._rebuild()

    def _rebuild(self) -> None:
        self.flat_w = self.points.ravel().copy()      #: row k's points at [11 k, 11 k + 11)
        self.flat_slope = _slopes(self.points).ravel()  #: watts across each segment, same layout
        self.w_list = self.flat_w.tolist()            #: ``flat_w`` as floats, for scalar lookups
        self.slope_list = self.flat_slope.tolist()    #: ``flat_slope`` as floats
        self.idle_w = self.points[:, 0].copy()  #: watts at 0 % per row
        self.peak_w = self.points[:, -1].copy()  #: watts at 100 % per row

    def watts(self, k: int, x10: float) -> float:
        """Curve ``k`` at utilization ``x10`` in tenths (utilization x 10), W."""
        j, f = segment(x10)
        j += 11 * k
        return self.w_list[j] + self.slope_list[j] * f

    def watts_rows(self, k: np.ndarray, x10: np.ndarray) -> np.ndarray:
        """Curve ``k[i]`` at ``x10[i]`` (tenths) for every ``i``, W."""
        j, f = segments(x10)
        j += 11 * np.asarray(k, dtype=np.int64)
        return self.flat_w.take(j) + self.flat_slope.take(j) * f
