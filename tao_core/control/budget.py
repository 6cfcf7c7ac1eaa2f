"""The closed power loop: measured cluster power against the budget.

Two corrections keep measured power within the budget when the models are wrong:

1. a calibration of the cluster model from measurements: measured IT watts are fitted as
   ``a x S + b x D``, where ``S`` is the modeled static watts (idle draw of nodes that are
   on, boot draw of nodes booting, off draw of nodes off) and ``D`` the modeled dynamic
   watts of the reserved work. ``a`` and ``b`` are weighted least squares with exponential
   forgetting (half-life ``ratio_halflife_s``); a weak prior ties ``b`` to ``a`` (so an idle
   cluster alone already corrects a model that is uniformly off) and both to 1.0 before
   any measurement. Predicted cluster power is ``a S + b D`` and every placement's added
   watts are multiplied by ``b``;
2. a PI term on the admission margin ``m`` (a fraction of the budget held back): with
   error ``e = (measured - setpoint) / budget`` and ``setpoint = budget x (1 -
   target_headroom)``, ``m = clamp(kp x e + ki x integral(e dt), 0, margin_max)`` (the
   integral is clamped to ``[0, margin_max / ki]`` so it does not wind up). The barrier
   uses ``budget x (1 - target_headroom - m)``: admission aims at the setpoint, and holds
   back more while measured power sits above it. It catches what the calibration cannot:
   power that rises between measurements, errors that change faster than the fit follows.

Units: watts, seconds.
"""
from __future__ import annotations

import math
from typing import Optional

_PRIOR_TIE = 1e-5  # weight of (b - a)^2, relative to the data's scale
_PRIOR_ONE = 1e-6  # weight of (a - 1)^2 + (b - 1)^2
_MAX_REL_ERROR = 1e6  # measured power this many budgets over (or under) the setpoint counts as this


class PowerLoop:
    """Model calibration and admission margin for one cluster power budget (IT watts)."""

    def __init__(self, budget_w: Optional[float], *, kp: float, ki: float, target_headroom: float,
                 margin_max: float, ratio_halflife_s: float) -> None:
        self.budget_w = budget_w
        self.kp = kp
        self.ki = ki
        self.target_headroom = target_headroom
        self.margin_max = margin_max
        self.ratio_halflife_s = max(ratio_halflife_s, 1e-9)
        self.static_scale = 1.0   #: a: measured / modeled static watts
        self.dynamic_scale = 1.0  #: b: measured / modeled dynamic watts
        self.ratio = 1.0          #: measured / modeled cluster watts at the last measurement
        self.margin = 0.0
        self.integral = 0.0
        self.measured_w: Optional[float] = None
        self.measured_at: Optional[float] = None
        self.samples = 0
        self._last_t: Optional[float] = None
        self._sums = [0.0] * 5  # Sss, Ssd, Sdd, Sms, Smd (forgetting)
        self._effective: Optional[float] = None
        self._update_effective()

    @property
    def effective_budget_w(self) -> Optional[float]:
        """Budget the barrier uses: ``budget x (1 - target_headroom - margin)``, IT watts
        (None: no budget)."""
        return self._effective

    def _update_effective(self) -> None:
        if self.budget_w is None:
            self._effective = None
        else:
            self._effective = self.budget_w * max(1.0 - self.target_headroom - self.margin, 0.0)

    def predict_w(self, static_w: float, dynamic_w: float) -> float:
        """Calibrated cluster IT watts for modeled static and dynamic watts."""
        return self.static_scale * static_w + self.dynamic_scale * dynamic_w

    def observe(self, now_s: float, measured_w: float, static_w: float, dynamic_w: float) -> float:
        """Feed one measurement of cluster IT power (W) with the modeled static and dynamic
        watts of the same instant. Returns the new admission margin."""
        dt = 0.0 if self._last_t is None else max(0.0, now_s - self._last_t)
        self._last_t = now_s
        self.measured_w = measured_w
        self.measured_at = now_s
        s, d, m = float(static_w), max(float(dynamic_w), 0.0), float(measured_w)
        if s + d > 0 and m >= 0:
            keep = math.exp(-math.log(2.0) * dt / self.ratio_halflife_s) if self.samples else 0.0
            S = self._sums
            for j, v in enumerate((s * s, s * d, d * d, m * s, m * d)):
                S[j] = S[j] * keep + v
            scale = S[0] + S[2]
            tie = _PRIOR_TIE * scale
            one = _PRIOR_ONE * scale
            a11 = S[0] + tie + one
            a12 = S[1] - tie
            a22 = S[2] + tie + one
            r1 = S[3] + one
            r2 = S[4] + one
            det = a11 * a22 - a12 * a12
            a = (r1 * a22 - a12 * r2) / det if det > 0 else math.nan
            b = (a11 * r2 - a12 * r1) / det if det > 0 else math.nan
            if math.isfinite(a) and math.isfinite(b):  # sums that overflowed leave the fit as it was
                self.static_scale = min(max(a, 0.1), 10.0)
                self.dynamic_scale = min(max(b, 0.1), 10.0)
            self.ratio = m / (s + d)
            self.samples += 1
        if self.budget_w is None:
            return 0.0
        setpoint = self.budget_w * (1.0 - self.target_headroom)
        # relative error, bounded so that a tiny budget or a huge reading cannot overflow it
        e = min(max((m - setpoint) / self.budget_w, -_MAX_REL_ERROR), _MAX_REL_ERROR)
        if self.ki > 0:
            self.integral += e * dt
            self.integral = min(max(self.integral, 0.0), self.margin_max / self.ki)
        self.margin = min(max(self.kp * e + self.ki * self.integral, 0.0), self.margin_max)
        self._update_effective()
        return self.margin
