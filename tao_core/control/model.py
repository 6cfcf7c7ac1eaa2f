"""Node power models, calibrated online from telemetry.

A :class:`NodeModel` starts from a declared :class:`NodeType` (an 11-point wall-watts
curve against CPU utilization, per-GPU idle and busy watts, boot time and energy, off
watts, relative speed) and fits the CPU curve to observed ``(utilization, watts)``
pairs.

The fit is least squares on the 11 breakpoints: power at utilization ``u`` is
``sum_k h_k(u) p_k`` with ``h_k`` the piecewise-linear "hat" functions of the
breakpoints, so every sample adds to the normal equations ``A p = b`` (a tridiagonal
11x11 system) in O(1). The declared curve is a prior of weight ``prior`` samples per
breakpoint (ridge towards the declared points), so breakpoints never observed keep
their declared value scaled by the overall fitted/declared ratio. The solution is made
non-decreasing by pool-adjacent-violators (isotonic regression) and clipped at 0 W.

Units: watts, joules, seconds.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from tao_core.control.types import NodeType
from tao_core.power.curve import PowerCurve, segment


def isotonic_increasing(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted least-squares non-decreasing fit of ``y`` (pool adjacent violators)."""
    vals: list[float] = []
    wts: list[float] = []
    counts: list[int] = []
    for yi, wi in zip(y.tolist(), w.tolist()):
        vals.append(yi)
        wts.append(wi)
        counts.append(1)
        while len(vals) > 1 and vals[-2] > vals[-1]:
            wsum = wts[-2] + wts[-1]
            v = (vals[-2] * wts[-2] + vals[-1] * wts[-1]) / wsum if wsum > 0 else 0.5 * (vals[-2] + vals[-1])
            c = counts[-2] + counts[-1]
            del vals[-1], wts[-1], counts[-1]
            vals[-1], wts[-1], counts[-1] = v, wsum, c
    return np.repeat(np.array(vals), counts)


@dataclass(frozen=True)
class ModelSnapshot:
    """Declared and fitted CPU curves of one node type (watts at 0, 10, ..., 100 %)."""

    node_type: str
    declared_w: tuple[float, ...]
    fitted_w: tuple[float, ...]
    samples: int
    rms_error_w: Optional[float]  #: RMS residual of the fitted curve over the samples seen

    @property
    def fitted_curve(self) -> PowerCurve:
        """The fitted curve as a :class:`PowerCurve` (non-decreasing and non-negative by
        construction): what a node type's calibrated model can be saved as, per hardware
        model, and declared again as ``NodeType(power_curve=...)``."""
        return PowerCurve(self.fitted_w)


class NodeModel:
    """The power model of one node type: declared :class:`NodeType` plus an online fit of
    its CPU curve. ``cpu_curve_w`` is the curve in use (fitted once samples exist)."""

    def __init__(self, node_type: NodeType, *, prior: float = 5.0) -> None:
        self.declared = node_type
        self.prior = float(prior)
        self._declared_pts = np.asarray(node_type.power_curve.points_w, dtype=float)
        self.cpu_curve_w = self._declared_pts.copy()
        self._A = np.zeros((11, 11))
        self._b = np.zeros(11)
        self._yy = 0.0
        self.samples = 0
        self._since_fit = 0

    # -- declared figures -------------------------------------------------
    @property
    def name(self) -> str:
        return self.declared.name

    @property
    def gpu_idle_w(self) -> float:
        return self.declared.gpu_idle_w

    @property
    def gpu_busy_w(self) -> float:
        return self.declared.gpu_busy_w

    @property
    def idle_w(self) -> float:
        """Watts of an ON node with nothing running, CPU curve as fitted."""
        return float(self.cpu_curve_w[0]) + self.declared.gpus * self.declared.gpu_idle_w

    @property
    def peak_w(self) -> float:
        return float(self.cpu_curve_w[-1]) + self.declared.gpus * self.declared.gpu_busy_w

    @property
    def boot_energy_j(self) -> float:
        return self.declared.boot_energy_j

    # -- calibration ----------------------------------------------------------
    def add_sample(self, utilization: float, cpu_power_w: float) -> None:
        """Add one observation: CPU utilization (0..1) and the watts of the CPU curve part
        (node wall power minus modeled GPU power)."""
        if not (np.isfinite(utilization) and np.isfinite(cpu_power_w)):
            return
        i, f = segment(float(utilization) * 10.0)
        h0, h1 = 1.0 - f, f
        A = self._A
        A[i, i] += h0 * h0
        A[i, i + 1] += h0 * h1
        A[i + 1, i] += h0 * h1
        A[i + 1, i + 1] += h1 * h1
        self._b[i] += h0 * cpu_power_w
        self._b[i + 1] += h1 * cpu_power_w
        self._yy += cpu_power_w * cpu_power_w
        self.samples += 1
        self._since_fit += 1

    def due(self, every: int) -> bool:
        return self._since_fit >= every

    def fit(self) -> np.ndarray:
        """Refit the CPU curve from the samples so far; returns the new 11 points (W)."""
        self._since_fit = 0
        if self.samples == 0:
            self.cpu_curve_w = self._declared_pts.copy()
            return self.cpu_curve_w
        A = self._A
        b = self._b
        diag = np.diag(A)
        # prior: towards the declared curve scaled by the overall observed/declared ratio,
        # so breakpoints without samples follow the ones that have them.
        pred = A @ self._declared_pts
        denom = float(self._declared_pts @ pred)
        scale = float(self._declared_pts @ b) / denom if denom > 0 else 1.0
        scale = min(max(scale, 0.2), 5.0)
        prior_pts = self._declared_pts * scale
        lam = self.prior
        p = np.linalg.solve(A + lam * np.eye(11), b + lam * prior_pts)
        weights = diag + lam
        p = isotonic_increasing(p, weights)
        self.cpu_curve_w = np.clip(p, 0.0, None)
        return self.cpu_curve_w

    def rms_error_w(self) -> Optional[float]:
        """Root-mean-square residual (W) of the curve in use over the samples seen."""
        if self.samples == 0:
            return None
        p = self.cpu_curve_w
        sse = float(p @ self._A @ p - 2.0 * p @ self._b + self._yy)
        return float(np.sqrt(max(sse, 0.0) / self.samples))

    def snapshot(self) -> ModelSnapshot:
        return ModelSnapshot(
            node_type=self.name,
            declared_w=tuple(float(x) for x in self._declared_pts),
            fitted_w=tuple(float(x) for x in self.cpu_curve_w),
            samples=self.samples,
            rms_error_w=self.rms_error_w(),
        )
