"""Telemetry: every source of power and energy figures behind one interface
(:class:`~tao_core.telemetry.base.EnergySource` yielding
:class:`~tao_core.telemetry.base.Reading`).

Modules: ``rapl`` (powercap sysfs), ``pyrapl_backend`` (optional pyRAPL), ``nvml`` (NVIDIA
GPUs), ``thermal`` (CPU temperature), ``estimator`` (model-based, ``modeled``), ``replay``
(CSV or ``tao monitor --json`` files), ``composite`` (several as one), ``detect`` (choose
the best on this machine and say why: ``from tao_core.telemetry.detect import detect``).
"""
from tao_core.telemetry.base import DomainReading, EnergySource, Reading, SourceKind

__all__ = ["DomainReading", "EnergySource", "Reading", "SourceKind"]
