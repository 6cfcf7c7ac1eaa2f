"""Hardware discovery and the power model it leads to.

Adapters call :func:`describe_this_node` with no arguments in each node (a Ray sampler, a
Dask worker plugin) and use ``.node_type``; nodes of the same hardware get the same type.
Modules: ``root`` (the file tree read), ``cpu``, ``memory``, ``platform``, ``gpu``,
``naming`` (hardware key), ``describe`` (the model), ``probe`` (the ``tao probe`` section).
"""
from tao_core.hardware.describe import (
    HardwareInfo, NodeDescription, NodePowerModel, curve_provenance, describe_this_node, discover_hardware,
)
from tao_core.hardware.gpu import DriverGpus, GpuInfo, Gpus, NoGpus, NvmlGpus, discover_gpus
from tao_core.hardware.probe import format_probe_section, probe_dict
from tao_core.hardware.root import ROOT_ENV, HostRoot

__all__ = [
    "HardwareInfo", "NodeDescription", "NodePowerModel", "curve_provenance", "describe_this_node",
    "discover_hardware", "DriverGpus", "GpuInfo", "Gpus", "NoGpus", "NvmlGpus", "discover_gpus",
    "format_probe_section", "probe_dict", "ROOT_ENV", "HostRoot",
]
