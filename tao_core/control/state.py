"""Per-node state of the controller, held in numpy arrays so a decision scores every node
with a few vector operations. Rows are dense: removing a node moves the last row into
its place.

Units: CPUs and GPUs in units of the engine's resources, watts, seconds, kelvin.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from tao_core.control.types import NodeState

#: state codes in the ``state`` array
OFF, BOOTING, ON, DRAINING = 0, 1, 2, 3
STATE_CODE = {NodeState.OFF: OFF, NodeState.BOOTING: BOOTING, NodeState.ON: ON, NodeState.DRAINING: DRAINING}
CODE_STATE = {v: k for k, v in STATE_CODE.items()}

_FLOAT_FIELDS = (
    "cpus", "gpus", "inv10", "used_c", "used_g", "free_c", "free_g",
    "p_node",      # modeled watts now (ON/DRAINING: curve at reserved load + GPUs; BOOTING: boot W; OFF: off W)
    "p_static",    # modeled static watts now (ON/DRAINING: idle; BOOTING: boot W; OFF: off W)
    "p_on",        # modeled watts if on at the reserved load (equals p_node when ON)
    "gpu_static",  # GPU watts at the reserved GPU load: gpus*gpu_idle + used_g*(busy-idle)
    "gpu_dyn",     # watts one more busy GPU adds: busy - idle
    "idle_w",      # watts of the node on and idle
    "wake_j",      # joules to wake it now: boot energy when OFF, else 0
    "boot_wait",   # seconds before it could run work, when OFF: boot_s; else 0
    "ready_at",    # BOOTING: time it is expected ready; else -inf
    "busy_until",  # predicted end of the latest reserved work (-inf when none)
    "busy_from",   # when the node's current stretch of reserved work began (+inf when none)
    "temp_ratio",  # T_n / T_ref
    "cap_w",       # per-node cap, watts (inf when none)
    "idle_since",  # time the node last became empty of reserved work
    "on_since",    # time the node last came on (or was added on)
    "measured_w",  # last observed wall watts (nan when none)
    "util_obs",    # last observed CPU utilization (nan when none)
)
_INT_FIELDS = ("ti", "state", "n_tasks", "cap_block")  # cap_block: measured watts reached the cap


class NodeTable:
    """Growable column store of node state."""

    def __init__(self, capacity: int = 16) -> None:
        self.n = 0
        self.ids: list[str] = []
        self.index: dict[str, int] = {}
        self._cap = max(1, capacity)
        for f in _FLOAT_FIELDS:
            setattr(self, "_" + f, np.zeros(self._cap))
        for f in _INT_FIELDS:
            setattr(self, "_" + f, np.zeros(self._cap, dtype=np.int64))
        self._refresh_views()

    def _refresh_views(self) -> None:
        n = self.n
        for f in _FLOAT_FIELDS + _INT_FIELDS:
            setattr(self, f, getattr(self, "_" + f)[:n])

    def append(self, node_id: str) -> int:
        if self.n == self._cap:
            new = self._cap * 2
            for f in _FLOAT_FIELDS + _INT_FIELDS:
                old = getattr(self, "_" + f)
                arr = np.zeros(new, dtype=old.dtype)
                arr[: self._cap] = old
                setattr(self, "_" + f, arr)
            self._cap = new
        i = self.n
        self.n += 1
        self.ids.append(node_id)
        self.index[node_id] = i
        self._refresh_views()
        return i

    def remove(self, node_id: str) -> Optional[str]:
        """Remove a row; returns the id of the node moved into its place (or None)."""
        i = self.index.pop(node_id)
        last = self.n - 1
        moved: Optional[str] = None
        if i != last:
            for f in _FLOAT_FIELDS + _INT_FIELDS:
                arr = getattr(self, "_" + f)
                arr[i] = arr[last]
            moved = self.ids[last]
            self.ids[i] = moved
            self.index[moved] = i
        self.ids.pop()
        self.n -= 1
        self._refresh_views()
        return moved
