"""The closed power loop: measured cluster power against the budget.

Two corrections keep measured power within the budget when the models are wrong:

1. a ratio ``r = measured / modeled`` cluster IT power, smoothed with half-life
   ``ratio_halflife_s``; every modeled watt (cluster power now and each placement's added
   watts) is multiplied by ``r`` before the barrier sees it. A model that is 30 % low is
   corrected as soon as one measurement arrives (the idle cluster is enough);
2. a PI term on the admission margin ``m`` (a fraction of the budget held back): with
   error ``e = (measured - setpoint) / budget`` and ``setpoint = budget x (1 -
   target_headroom)``, ``m = clamp(kp x e + ki x integral(e dt), 0, margin_max)``
   (the integral is clamped too, so it does not wind up). The barrier uses
   ``budget x (1 - m)``. This catches what the ratio cannot: power that rises between
   measurements, model errors that differ between idle and busy power.

Units: watts, seconds.
"""
from __future__ import annotations

import math
from typing import Optional


class PowerLoop:
    """Admission margin and measured/modeled ratio for one cluster power budget (IT watts)."""

    def __init__(self, budget_w: Optional[float], *, kp: float, ki: float, target_headroom: float,
                 margin_max: float, ratio_halflife_s: float) -> None:
        self.budget_w = budget_w
        self.kp = kp
        self.ki = ki
        self.target_headroom = target_headroom
        self.margin_max = margin_max
        self.ratio_halflife_s = max(ratio_halflife_s, 1e-9)
        self.ratio = 1.0
        self.margin = 0.0
        self.integral = 0.0
        self.measured_w: Optional[float] = None
        self.measured_at: Optional[float] = None
        self._last_t: Optional[float] = None
        self.samples = 0

    @property
    def effective_budget_w(self) -> Optional[float]:
        """Budget the barrier uses: ``budget x (1 - margin)``, IT watts (None: no budget)."""
        if self.budget_w is None:
            return None
        return self.budget_w * (1.0 - self.margin)

    def observe(self, now_s: float, measured_w: float, modeled_w: float) -> float:
        """Feed one measurement of cluster IT power (W) and what the model says for the same
        instant (W). Returns the new margin."""
        dt = 0.0 if self._last_t is None else max(0.0, now_s - self._last_t)
        self._last_t = now_s
        self.measured_w = measured_w
        self.measured_at = now_s
        if modeled_w > 0 and measured_w >= 0:
            obs = measured_w / modeled_w
            if self.samples == 0:
                w = 1.0  # the first measurement replaces the prior outright
            elif dt > 0:
                w = 1.0 - math.exp(-math.log(2.0) * dt / self.ratio_halflife_s)
            else:
                w = 0.5
            self.ratio = (1.0 - w) * self.ratio + w * obs
            self.samples += 1
        if self.budget_w is None:
            return 0.0
        setpoint = self.budget_w * (1.0 - self.target_headroom)
        e = (measured_w - setpoint) / self.budget_w
        if self.ki > 0:
            self.integral += e * dt
            lim = self.margin_max / self.ki
            self.integral = min(max(self.integral, 0.0), lim)
        m = self.kp * e + self.ki * self.integral
        self.margin = min(max(m, 0.0), self.margin_max)
        return self.margin
