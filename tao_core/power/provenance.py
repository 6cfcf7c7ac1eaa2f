"""Where a node type's power curve came from, for reports and ``tao probe``.

- ``declared``: given by the user (a :class:`~tao_core.control.types.NodeType`, a named
  SPECpower server, ``tdp:<watts>``).
- ``discovered``: built by TAO from the hardware it found (measured server, TDP table or
  per-thread estimate; see :mod:`tao_core.power.server_model`).
- ``fitted``: fitted by the controller to measured telemetry (RAPL, NVML), this run or an
  earlier one (persisted per hardware model, :mod:`tao_core.power.fitted_cache`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any, Optional

__all__ = ["CurveOrigin", "CurveProvenance"]


class CurveOrigin(str, Enum):
    DECLARED = "declared"
    DISCOVERED = "discovered"
    FITTED = "fitted"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class CurveProvenance:
    """Origin, method (one line), relative standard uncertainty of the curve, the hardware
    key it belongs to (discovered and fitted curves), the telemetry source a fit used and
    its sample count."""

    origin: CurveOrigin
    method: str
    uncertainty: float
    hardware_key: Optional[str] = None
    fit_source: Optional[str] = None
    fit_samples: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain data for a report or ledger record: ``curve_origin``, ``curve_method``,
        ``curve_uncertainty``, ``hardware_key``, ``fit_source``, ``fit_samples``."""
        d = asdict(self)
        return {"curve_origin": str(self.origin), "curve_method": d["method"],
                "curve_uncertainty": d["uncertainty"], "hardware_key": d["hardware_key"],
                "fit_source": d["fit_source"], "fit_samples": d["fit_samples"]}
