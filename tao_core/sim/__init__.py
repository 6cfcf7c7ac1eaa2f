"""What-if simulator: a discrete-event model of a heterogeneous cluster that runs TAO's
controller and the engines' default policies over the same workload and reports energy,
delays, peak power and the physical lower bound. See the README section "Simulator"."""
from tao_core.sim.engine import SimResult, SimulationError, Simulator
from tao_core.sim.loaders import load_cluster, load_workload
from tao_core.sim.metrics import lower_bound_j, summarize
from tao_core.sim.model import ClusterSpec, SimNode, SimTask, Workload

__all__ = [
    "ClusterSpec", "SimNode", "SimTask", "Workload", "Simulator", "SimResult", "SimulationError",
    "load_cluster", "load_workload", "lower_bound_j", "summarize",
]
