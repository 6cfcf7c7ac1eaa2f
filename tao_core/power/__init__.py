"""Power models shared by the estimator, the controller and the simulator."""
from tao_core.power.curve import BREAKPOINTS, DEFAULT_SHAPE, PowerCurve

__all__ = ["BREAKPOINTS", "DEFAULT_SHAPE", "PowerCurve"]
