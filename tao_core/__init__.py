"""TAO core: telemetry, energy attribution, power models, the controller, the simulator and
governance. Never imports Ray or Dask.

Main names (imported on first use, so ``import tao_core`` stays cheap)::

    from tao_core import EnergyMonitor, detect, Reading, DomainReading, SourceKind
    from tao_core import PowerCurve, TaskSpan, attribute, WindowResult
"""
from __future__ import annotations

from tao_core.lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "EnergyMonitor": "tao_core.monitor",
    "WindowResult": "tao_core.monitor",
    "detect": "tao_core.telemetry.detect",
    "Detection": "tao_core.telemetry.detect",
    "Reading": "tao_core.telemetry.base",
    "DomainReading": "tao_core.telemetry.base",
    "SourceKind": "tao_core.telemetry.base",
    "EnergySource": "tao_core.telemetry.base",
    "PowerCurve": "tao_core.power.curve",
    "TaskSpan": "tao_core.attribution",
    "Attribution": "tao_core.attribution",
    "attribute": "tao_core.attribution",
}

__all__ = sorted(_EXPORTS) + ["__version__"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
