"""What this node is and the power model it leads to, with no arguments.

:func:`describe_this_node` discovers the hardware (:func:`discover_hardware`), builds the
CPU curve (:func:`tao_core.power.server_model.estimate_server_curve`) and the GPU figures
(:func:`tao_core.power.gpu_model.gpu_power`), starts from a fitted curve kept for the same
hardware key when there is one (:mod:`tao_core.power.fitted_cache`), and returns a
:class:`NodeDescription` whose :class:`~tao_core.control.types.NodeType` is named after the
hardware, so nodes of the same hardware share a type.

CPUs of the node type: the threads the OS sees, or fewer under a cgroup CPU quota or when
the caller says so (:meth:`NodeDescription.for_cpus`, for an engine that gives a node fewer
CPUs than the machine has); the curve is then scaled by cpus / threads, the share of the
machine the node stands for.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Optional, Union

from tao_core.control.types import NodeType
from tao_core.hardware.cpu import CpuInfo, read_cpu
from tao_core.hardware.gpu import Gpus, discover_gpus
from tao_core.hardware.memory import MemoryInfo, read_memory
from tao_core.hardware.naming import hardware_key, memory_bucket_gib
from tao_core.hardware.platform import PlatformInfo, read_platform
from tao_core.hardware.root import HostRoot
from tao_core.power.fitted_cache import FittedCurve, FittedCurveStore, MEASURED_SOURCES, MIN_SAMPLES
from tao_core.power.gpu_model import GpuPower, gpu_power
from tao_core.power.provenance import CurveOrigin, CurveProvenance
from tao_core.power.server_model import CpuCurveEstimate, estimate_server_curve
from tao_core.telemetry.estimator import CURVE_UNCERTAINTY, TDP_UNCERTAINTY

__all__ = ["HardwareInfo", "NodeDescription", "NodePowerModel", "curve_provenance", "describe_this_node",
           "discover_hardware"]

#: floor of a fitted curve's relative uncertainty (its RMS residual can be near zero)
FITTED_UNCERTAINTY_FLOOR = 0.02


@dataclass(frozen=True)
class HardwareInfo:
    """CPU, memory, platform and GPUs of one machine, and the root they were read from."""

    cpu: CpuInfo
    memory: MemoryInfo
    platform: PlatformInfo
    gpus: Gpus
    root: str = "/"

    @property
    def usable_cpus(self) -> float:
        """Threads the OS sees, or the cgroup CPU quota when lower."""
        lim = self.platform.cpu_limit
        return min(float(self.cpu.threads), lim) if lim else float(self.cpu.threads)

    def key(self, cpus: Optional[float] = None) -> str:
        """The hardware key (:func:`tao_core.hardware.naming.hardware_key`)."""
        return hardware_key(self.cpu.model_name, self.cpu.sockets, self.cpu.threads, self.memory.total_bytes,
                            [g.name for g in self.gpus.devices], cpus if cpus is not None else self.usable_cpus)


def discover_hardware(root: Union[HostRoot, str, None] = None, *, nvml: Any = None,
                      lscpu: Optional[Callable[[], Optional[dict[str, str]]]] = None) -> HardwareInfo:
    """The hardware under ``root`` (default this machine; see :class:`HostRoot`)."""
    r = root if isinstance(root, HostRoot) else HostRoot(root)
    cpu = read_cpu(r, lscpu=lscpu)
    return HardwareInfo(cpu, read_memory(r), read_platform(cpu, r), discover_gpus(r, nvml=nvml), str(r.root))


@dataclass(frozen=True)
class NodePowerModel:
    """The CPU curve estimate, the per-GPU figures (``None`` without GPUs), a fitted curve
    that replaced the estimate, and the curve's provenance."""

    cpu: CpuCurveEstimate
    gpu: Optional[GpuPower]
    fitted: Optional[FittedCurve]
    provenance: CurveProvenance


def _gpu_model(gpus: Gpus) -> Optional[GpuPower]:
    if not gpus.devices:
        return None
    each = [gpu_power(g.name, default_limit_w=g.default_limit_w, enforced_limit_w=g.power_limit_w) for g in gpus.devices]
    n = len(each)
    limits = [p.limit_w for p in each if p.limit_w is not None]
    methods = sorted({p.method for p in each})
    return GpuPower(sum(p.idle_w for p in each) / n, sum(p.max_w for p in each) / n,
                    sum(limits) / len(limits) if limits else None,
                    methods[0] if len(methods) == 1 else "mean over GPUs: " + " | ".join(methods),
                    max(p.uncertainty for p in each))


def _fitted_provenance(fit: FittedCurve, key: str, before: str) -> CurveProvenance:
    u = fit.rms_error_w / max(fit.curve.power_w(0.5), 1e-9) if fit.rms_error_w is not None else 0.0
    method = (f"fitted to {fit.samples} {fit.source} samples (saved {fit.saved_at}, RMS residual "
              f"{fit.rms_error_w if fit.rms_error_w is not None else float('nan'):.1f} W); before the fit: {before}")
    return CurveProvenance(CurveOrigin.FITTED, method, max(float(u), FITTED_UNCERTAINTY_FLOOR), key, fit.source,
                           fit.samples)


def _power_model(hw: HardwareInfo, key: str, cpus: float, store: Optional[FittedCurveStore]) -> NodePowerModel:
    est = estimate_server_curve(hw.cpu.model_name, sockets=hw.cpu.sockets, threads=hw.cpu.threads,
                                memory_gb=float(memory_bucket_gib(hw.memory.total_bytes)), product=hw.platform.product,
                                virtual=hw.platform.virtual)
    fit = store.load(key) if store is not None else None
    before = f"{est.method}: {est.detail}"
    if cpus != hw.cpu.threads:
        before += f"; x {cpus / hw.cpu.threads:.3f} for {cpus:g} of the machine's {hw.cpu.threads} threads"
    prov = (_fitted_provenance(fit, key, before) if fit is not None
            else CurveProvenance(CurveOrigin.DISCOVERED, before, est.uncertainty, key))
    return NodePowerModel(est, _gpu_model(hw.gpus), fit, prov)


@dataclass(frozen=True)
class NodeDescription:
    """Hardware, power model and the node type they make (named after the hardware key)."""

    hardware: HardwareInfo
    model: NodePowerModel
    node_type: NodeType

    @property
    def hardware_key(self) -> str:
        return self.node_type.name

    def for_cpus(self, cpus: float, store: Optional[FittedCurveStore] = None) -> "NodeDescription":
        """This node standing for ``cpus`` of its machine's threads (an engine node given
        fewer CPUs than the machine has): its own key, type and fitted-curve file."""
        return _describe(self.hardware, float(cpus), store)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``tao probe --json`` and reports."""
        from tao_core.hardware.probe import probe_dict  # noqa: PLC0415 (probe formats this class)

        return probe_dict(self)


def _node_type(hw: HardwareInfo, key: str, cpus: float, model: NodePowerModel) -> NodeType:
    curve = model.fitted.curve if model.fitted is not None else model.cpu.curve
    share = cpus / hw.cpu.threads
    if model.fitted is None and share != 1.0:
        curve = curve.scaled(share)
    g = model.gpu
    return NodeType(name=key, cpus=cpus, power_curve=curve, gpus=len(hw.gpus.devices),
                    gpu_idle_w=g.idle_w if g else 0.0, gpu_max_w=g.max_w if g else 0.0,
                    gpu_power_limit_w=g.limit_w if g else None)


def _describe(hw: HardwareInfo, cpus: float, store: Optional[FittedCurveStore]) -> NodeDescription:
    key = hw.key(cpus)
    model = _power_model(hw, key, cpus, store)
    return NodeDescription(hw, model, _node_type(hw, key, cpus, model))


def describe_this_node(*, root: Union[HostRoot, str, None] = None, nvml: Any = None,
                       lscpu: Optional[Callable[[], Optional[dict[str, str]]]] = None,
                       store: Union[FittedCurveStore, None, bool] = True,
                       cpus: Optional[float] = None) -> NodeDescription:
    """Describe this machine (or the tree under ``root``) and its power model.

    ``store``: where fitted curves are kept (``True``: the default cache folder; ``None``
    or ``False``: do not read one). ``cpus``: the CPUs the node has (default: threads, or
    the cgroup quota when lower)."""
    hw = discover_hardware(root, nvml=nvml, lscpu=lscpu)
    st = FittedCurveStore() if store is True else (store or None)
    return _describe(hw, float(cpus) if cpus is not None else hw.usable_cpus, st)


def curve_provenance(node_type: NodeType, description: Optional[NodeDescription] = None, *,
                     snapshot: Any = None, source: Optional[str] = None) -> CurveProvenance:
    """Where ``node_type``'s curve came from, for the report.

    ``description``: the NodeDescription the type was made from (``None``: the user
    declared it). ``snapshot``/``source``: the controller's ``fitted_models()[name]`` and the
    telemetry source of the node's readings; a fit of at least
    :data:`~tao_core.power.fitted_cache.MIN_SAMPLES` measured samples makes it ``fitted``."""
    src = None if source is None else str(getattr(source, "value", source))
    if snapshot is not None and src in MEASURED_SOURCES and snapshot.samples >= MIN_SAMPLES:
        rms = snapshot.rms_error_w
        mid = float(node_type.power_curve.power_w(0.5)) or 1.0
        return CurveProvenance(CurveOrigin.FITTED, f"fitted this run to {snapshot.samples} {src} samples",
                               max((rms or 0.0) / mid, FITTED_UNCERTAINTY_FLOOR),
                               description.hardware_key if description else None, src, int(snapshot.samples))
    if description is not None:
        return description.model.provenance
    is_tdp = node_type.name.startswith("tdp:")
    return CurveProvenance(CurveOrigin.DECLARED, "TDP and the default curve shape, declared" if is_tdp
                           else "power curve declared with the node type",
                           TDP_UNCERTAINTY if is_tdp else CURVE_UNCERTAINTY)
