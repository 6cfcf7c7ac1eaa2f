"""Actuators: settings TAO may change (GPU power limits, CPU frequency caps), dry run by
default, every change recorded and undone on exit."""
from tao_core.actuators.base import Actuator, ActuatorChange, ActuatorError, restore_on_exit
from tao_core.actuators.cpufreq import CpuFrequencyCap
from tao_core.actuators.gpu_power_limit import GpuPowerLimit

__all__ = ["Actuator", "ActuatorChange", "ActuatorError", "CpuFrequencyCap", "GpuPowerLimit", "restore_on_exit"]
