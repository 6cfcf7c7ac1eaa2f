"""What the controller knows of the cluster: node types, nodes, their power state,
reserved CPUs and GPUs, and the modeled watts of each node and of the whole cluster.

:class:`ClusterView` owns the per-node column store (:class:`~tao_core.control.state.NodeTable`),
the per-type tables the hot path reads (speed, CPUs, GPUs, boot, off and GPU watts, the
calibrated CPU curves in one :class:`~tao_core.power.curve.CurveTable`), and the scorer's
per-shape cache, which it updates one row at a time as nodes change. The controller
changes it (membership, power states, reservations, telemetry); scaling and anyone else
read it through the public methods below and the ``nodes`` columns, never by writing.

Units: CPUs and GPUs in the engine's units, watts, joules, seconds, kelvin.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Mapping, Optional, Sequence

import numpy as np

from tao_core.control.model import NodeModel
from tao_core.control.penalty import Scorer
from tao_core.control.state import BOOTING, CODE_STATE, DRAINING, OFF, ON, STATE_CODE, NodeTable
from tao_core.control.types import NodeState, NodeType
from tao_core.errors import InputError
from tao_core.power.curve import CurveTable

_INF = math.inf


class ClusterView:
    """Node types and nodes as the controller sees them (see the module docstring).

    Public read-only attributes: ``types`` (declared :class:`NodeType` list), ``type_index``
    (name -> row), ``models`` (calibrated :class:`NodeModel` per type), ``nodes`` (the
    column store; ``nodes.ids``, ``nodes.state``, ``nodes.used_c``, ...), ``curves`` (CPU
    curves in use, one row per type), ``modeled_w`` and ``modeled_static_w`` (modeled
    cluster IT watts and their static part), ``not_on`` (nodes not ON), and per type the
    arrays ``type_speed``, ``type_cpus``, ``type_gpus``, ``type_boot_s``, ``type_best_u`` (the
    utilization with the fewest watts per unit of work on the type's curve)."""

    def __init__(self, node_types: Sequence[NodeType], *, calibration_prior: float = 5.0, allow_wake: bool = True,
                 node_caps_w: Optional[Mapping[str, float]] = None, idle_timeout_s: Optional[float] = None,
                 min_idle_timeout_s: float = 1.0, wake_tail_cap_s: float = 300.0) -> None:
        self.types: list[NodeType] = []
        self._idle_timeout_s = idle_timeout_s
        self._min_idle_timeout_s = min_idle_timeout_s
        self._wake_tail_cap_s = wake_tail_cap_s
        self.type_index: dict[str, int] = {}
        self.models: list[NodeModel] = []
        self.curves = CurveTable()
        self._prior = calibration_prior
        self._caps = dict(node_caps_w or {})
        self.nodes = NodeTable()
        self.scorer = Scorer(self.nodes, self.curves, allow_wake=allow_wake)
        self.modeled_w = 0.0         #: modeled cluster IT watts (sum of the nodes' p_node)
        self.modeled_static_w = 0.0  #: its static part (sum of the nodes' p_static)
        self.not_on = 0              #: nodes not ON
        self.any_temp = False        #: some node reported a temperature
        self.any_cap = False         #: some node has a power cap
        self._wake: "OrderedDict[str, float]" = OrderedDict()
        for t in node_types:
            self.add_type(t)

    # ------------------------------------------------------------------ types
    def add_type(self, node_type: NodeType) -> int:
        """Declare a node type; returns its row. Nodes and reservations are kept."""
        if node_type.name in self.type_index:
            raise InputError(f"node_type: {node_type.name!r} is already declared; give each type a unique name")
        k = len(self.types)
        self.type_index[node_type.name] = k
        self.types.append(node_type)
        m = NodeModel(node_type, prior=self._prior)
        self.models.append(m)
        self.curves.add(m.cpu_curve_w)
        self._build_type_tables()
        self.scorer.invalidate()
        return k

    def _build_type_tables(self) -> None:
        ts = self.types
        self.type_speed = np.array([t.speed for t in ts], dtype=float)
        self.type_cpus = np.array([t.cpus for t in ts], dtype=float)
        self.type_gpus = np.array([t.gpus for t in ts], dtype=float)
        self.type_inv_gpus = np.where(self.type_gpus > 0, 1.0 / np.maximum(self.type_gpus, 1e-12), 0.0)
        self.type_boot_s = np.array([t.boot_s for t in ts], dtype=float)
        self.type_boot_j = np.array([t.boot_energy_j for t in ts], dtype=float)
        self.type_off_w = np.array([t.off_w for t in ts], dtype=float)
        self._boot_w = [float(t.boot_power_w) for t in ts]
        self._off_w = [float(t.off_w) for t in ts]
        self._gpu_dyn = [float(t.gpu_busy_w - t.gpu_idle_w) for t in ts]
        self._gpu_idle_total = [float(t.gpus * t.gpu_idle_w) for t in ts]
        self._model_tables()

    def _model_tables(self) -> None:
        """Per-type watts of the calibrated models (after a type is added or a curve refit),
        the idle timeouts and what waking a node costs."""
        self.type_peak_w = np.array([m.peak_w for m in self.models], dtype=float)
        self.type_idle_w = np.array([m.idle_w for m in self.models], dtype=float)
        # the utilization with the fewest watts per unit of work on each CPU curve
        u = np.arange(1, 11) / 10.0
        pts = self.curves.points[:, 1:] if len(self.curves) else np.zeros((0, 10))
        self.type_best_u = u[np.argmin(pts / u, axis=1)] if len(pts) else np.zeros(0)
        self.type_timeout_s = self.idle_timeouts_s(self._idle_timeout_s, self._min_idle_timeout_s)
        # waking a node costs its boot and the idle watts (above off) it draws after its work
        # until it is powered off again: its idle timeout (capped when it is never powered off)
        tail = np.minimum(self.type_timeout_s, self._wake_tail_cap_s)
        self.type_wake_j = self.type_boot_j + np.maximum(self.type_idle_w - self.type_off_w, 0.0) * tail

    def type_of(self, name: str) -> int:
        """Row of the node type called ``name``; InputError when none is."""
        k = self.type_index.get(name)
        if k is None:
            raise InputError(f"node_type: unknown type {name!r}; known: {sorted(self.type_index)}")
        return k

    def has_type(self, name: str) -> bool:
        """Whether a node type called ``name`` is declared."""
        return name in self.type_index

    # ------------------------------------------------------------------ nodes
    def __len__(self) -> int:
        return self.nodes.n

    @property
    def node_ids(self) -> tuple[str, ...]:
        """Every node, in row order."""
        return tuple(self.nodes.ids)

    def has_node(self, node_id: str) -> bool:
        """Whether ``node_id`` is known."""
        return node_id in self.nodes.index

    def index_of(self, node_id: str) -> int:
        """Row of ``node_id``; InputError when it is unknown."""
        i = self.nodes.index.get(node_id)
        if i is None:
            raise InputError(f"node_id: unknown node {node_id!r}; add it first with add_node")
        return i

    def node_type(self, node_id: str) -> NodeType:
        """The declared type of ``node_id``."""
        return self.types[self.nodes.ti.item(self.index_of(node_id))]

    def state_of(self, node_id: str) -> NodeState:
        """Power state of ``node_id``."""
        return CODE_STATE[self.nodes.state.item(self.index_of(node_id))]

    def reserved(self, node_id: str) -> tuple[float, float, int]:
        """(CPUs, GPUs, tasks) reserved on ``node_id``."""
        i = self.index_of(node_id)
        nt = self.nodes
        return nt.used_c.item(i), nt.used_g.item(i), nt.n_tasks.item(i)

    def add_node(self, node_id: str, node_type: str, state: NodeState, now_s: float) -> int:
        """Add a node of a declared type in ``state``; returns its row."""
        if node_id in self.nodes.index:
            raise InputError(f"node_id: node {node_id!r} is already known; remove it first or use another id")
        k = self.type_of(node_type)
        t = self.types[k]
        nt = self.nodes
        i = nt.append(node_id)
        nt.ti[i] = k
        nt.cpus[i] = t.cpus
        nt.gpus[i] = t.gpus
        nt.inv10[i] = 10.0 / t.cpus
        nt.used_c[i] = nt.used_g[i] = 0.0
        nt.free_c[i] = t.cpus
        nt.free_g[i] = t.gpus
        nt.p_node[i] = nt.p_static[i] = 0.0
        nt.gpu_dyn[i] = self._gpu_dyn[k]
        nt.idle_w[i] = self.models[k].idle_w
        nt.state[i] = STATE_CODE[state]
        nt.ready_at[i] = now_s + t.boot_s if state == NodeState.BOOTING else -_INF
        nt.busy_until[i] = -_INF
        nt.busy_from[i] = _INF
        nt.temp_ratio[i] = 1.0
        cap = self._caps.get(node_id)
        nt.cap_w[i] = _INF if cap is None else float(cap)
        self.any_cap = self.any_cap or cap is not None
        nt.idle_since[i] = nt.on_since[i] = now_s
        nt.measured_w[i] = nt.util_obs[i] = np.nan
        nt.n_tasks[i] = nt.cap_block[i] = 0
        self.scorer.invalidate()
        self.refresh_node(i)
        if state != NodeState.ON:
            self.not_on += 1
        return i

    def remove_node(self, node_id: str) -> None:
        """Forget a node (its reservations must have been released)."""
        i = self.index_of(node_id)
        self.modeled_w -= self.nodes.p_node.item(i)
        self.modeled_static_w -= self.nodes.p_static.item(i)
        if self.nodes.state.item(i) != ON:
            self.not_on -= 1
        self.nodes.remove(node_id)
        self.scorer.invalidate()
        self._wake.pop(node_id, None)

    def set_state(self, i: int, new: int, now_s: float) -> None:
        """Move row ``i`` to power state code ``new`` (reservations already handled)."""
        nt = self.nodes
        old = nt.state.item(i)
        nt.state[i] = new
        nt.ready_at[i] = now_s + self.type_boot_s.item(nt.ti.item(i)) if new == BOOTING else -_INF
        if new == ON and old in (OFF, BOOTING):
            nt.on_since[i] = now_s
            nt.idle_since[i] = now_s
        if new != OFF:
            self._wake.pop(nt.ids[i], None)
        self.not_on += (new != ON) - (old != ON)
        self.refresh_node(i)

    # ----------------------------------------------------------- reservations
    def reserve(self, i: int, cpus: float, gpus: float, end_s: float, now_s: float) -> None:
        """Reserve ``cpus`` and ``gpus`` on row ``i`` until the predicted ``end_s``."""
        nt = self.nodes
        if nt.n_tasks.item(i) == 0:
            nt.busy_from[i] = now_s
        used = nt.used_c.item(i) + cpus
        nt.used_c[i] = used
        nt.free_c[i] = nt.cpus.item(i) - used
        if gpus:
            used = nt.used_g.item(i) + gpus
            nt.used_g[i] = used
            nt.free_g[i] = nt.gpus.item(i) - used
        nt.n_tasks[i] += 1
        if end_s > nt.busy_until.item(i):
            nt.busy_until[i] = end_s
        self.refresh_node(i, False)

    def unreserve(self, i: int, cpus: float, gpus: float, now_s: float, busy_until_s: Optional[float]) -> None:
        """Free what one task held on row ``i``; ``busy_until_s`` is the latest predicted
        end of the work still reserved there (None: unchanged)."""
        nt = self.nodes
        n = nt.n_tasks.item(i) - 1
        if n <= 0:
            nt.n_tasks[i] = 0
            nt.used_c[i] = nt.used_g[i] = 0.0
            nt.free_c[i] = nt.cpus.item(i)
            nt.free_g[i] = nt.gpus.item(i)
            nt.busy_until[i] = -_INF
            nt.busy_from[i] = _INF
            nt.idle_since[i] = now_s
        else:
            nt.n_tasks[i] = n
            nt.used_c[i] = max(0.0, nt.used_c.item(i) - cpus)
            nt.used_g[i] = max(0.0, nt.used_g.item(i) - gpus)
            nt.free_c[i] = nt.cpus.item(i) - nt.used_c.item(i)
            nt.free_g[i] = nt.gpus.item(i) - nt.used_g.item(i)
            if busy_until_s is not None:
                nt.busy_until[i] = busy_until_s
        self.refresh_node(i, False)

    def extend_busy(self, i: int, end_s: float) -> None:
        """Work reserved on row ``i`` is now predicted to end at ``end_s`` (it started late)."""
        if end_s > self.nodes.busy_until.item(i):
            self.nodes.busy_until[i] = end_s

    def expected_end(self, now_s: float) -> np.ndarray:
        """Per node, when its reserved work is expected to end: the latest predicted end,
        or, when that is nearer, as far ahead as the node has been busy so far (a stretch of
        work that has lasted ``a`` seconds is expected to last about as long again: run
        times are heavy-tailed and a node that has been refilled keeps being refilled;
        Lindy's rule); -inf for nodes without reserved work."""
        nt = self.nodes
        return np.maximum(nt.busy_until, 2.0 * now_s - nt.busy_from)

    # ------------------------------------------------------------- modeled watts
    def refresh_node(self, i: int, state_changed: bool = True) -> None:
        """Recompute the modeled watts of row ``i`` from its state and reserved load, and
        the scorer's cached rows."""
        nt = self.nodes
        k = nt.ti.item(i)
        st = nt.state.item(i)
        gd = nt.gpu_dyn.item(i)
        gidle = self._gpu_idle_total[k]
        gs = gidle + nt.used_g.item(i) * gd
        inv10 = nt.inv10.item(i)
        used_c = nt.used_c.item(i)
        p_on = self.curves.watts(k, used_c * inv10) + gs
        if st == ON or st == DRAINING:
            p = p_on
            ps = self.curves.w_list[11 * k] + gidle  # the curve at 0 %
        elif st == BOOTING:
            p = ps = self._boot_w[k]
        else:
            p = ps = self._off_w[k]
        self.modeled_w += p - nt.p_node.item(i)
        self.modeled_static_w += ps - nt.p_static.item(i)
        nt.gpu_static[i] = gs
        nt.p_on[i] = p_on
        nt.p_node[i] = p
        nt.p_static[i] = ps
        if state_changed:
            off = st == OFF
            nt.wake_j[i] = self.type_wake_j.item(k) if off else 0.0
            nt.boot_wait[i] = self.type_boot_s.item(k) if off else 0.0
        self.scorer.row_changed(i, st, used_c, nt.free_c.item(i), nt.free_g.item(i), inv10, k, gs, gd, p_on, p)

    def refresh_rows(self, rows: np.ndarray) -> None:
        """:meth:`refresh_node` for many rows at once (after a curve refit)."""
        nt = self.nodes
        if rows.size == 0:
            return
        k = nt.ti[rows]
        st = nt.state[rows]
        gidle = np.asarray(self._gpu_idle_total)[k]
        gs = gidle + nt.used_g[rows] * nt.gpu_dyn[rows]
        p_on = self.curves.watts_rows(k, nt.used_c[rows] * nt.inv10[rows]) + gs
        on = (st == ON) | (st == DRAINING)
        other = np.where(st == BOOTING, np.asarray(self._boot_w)[k], self.type_off_w[k])
        nt.gpu_static[rows] = gs
        nt.p_on[rows] = p_on
        nt.p_node[rows] = np.where(on, p_on, other)
        nt.p_static[rows] = np.where(on, self.curves.idle_w[k] + gidle, other)
        self.modeled_w = float(nt.p_node.sum())
        self.modeled_static_w = float(nt.p_static.sum())
        self.scorer.invalidate()

    def set_curve(self, k: int, points_w: Sequence[float]) -> None:
        """Use ``points_w`` as node type ``k``'s CPU curve (a refit) on every node of it."""
        self.curves.set(k, points_w)
        self._model_tables()
        rows = np.flatnonzero(self.nodes.ti == k)
        self.nodes.idle_w[rows] = self.models[k].idle_w
        self.nodes.wake_j[rows] = np.where(self.nodes.state[rows] == OFF, self.type_wake_j[k], 0.0)
        self.refresh_rows(rows)

    # ------------------------------------------------------------- telemetry
    def set_temperature(self, i: int, ratio: float) -> None:
        """Row ``i``'s temperature over the reference temperature (T / T_ref)."""
        self.nodes.temp_ratio[i] = ratio
        self.any_temp = True

    # ------------------------------------------------------------- wake requests
    def request_wake(self, node_id: str, now_s: float) -> None:
        """A decision chose ``node_id``, which is off: the next scaling plan boots it."""
        self._wake[node_id] = now_s
        self._wake.move_to_end(node_id)

    def wake_requests(self) -> tuple[str, ...]:
        """Nodes decisions asked to wake since the last plan, oldest first."""
        return tuple(self._wake)

    def clear_wake_requests(self) -> None:
        """Wake requests hold for one plan: a task still waiting asks again."""
        self._wake.clear()

    # ------------------------------------------------------------- reads for scaling
    def has_room(self, cpus: float, gpus: float = 0.0) -> bool:
        """Whether some node that is ON has ``cpus`` CPUs and ``gpus`` GPUs free."""
        nt = self.nodes
        return bool(((nt.state == ON) & (nt.free_c >= cpus - 1e-9) & (nt.free_g >= gpus - 1e-9)).any())

    def supply(self) -> tuple[float, float, float, float]:
        """(CPUs, GPUs, reserved CPUs, reserved GPUs) of the nodes ON or BOOTING."""
        nt = self.nodes
        m = (nt.state == ON) | (nt.state == BOOTING)
        return float(nt.cpus[m].sum()), float(nt.gpus[m].sum()), float(nt.used_c[m].sum()), float(nt.used_g[m].sum())

    def speed(self) -> np.ndarray:
        """Per node, speed relative to the reference node."""
        return self.type_speed[self.nodes.ti]

    def peak_w(self) -> np.ndarray:
        """Per node, modeled watts with every CPU and GPU busy (calibrated curve)."""
        return self.type_peak_w[self.nodes.ti]

    def idle_w(self) -> np.ndarray:
        """Per node, modeled watts on and idle (calibrated curve)."""
        return self.nodes.idle_w.copy()

    def boot_energy_j(self) -> np.ndarray:
        """Per node, joules one boot costs."""
        return self.type_boot_j[self.nodes.ti]

    def off_w(self) -> np.ndarray:
        """Per node, watts drawn when off."""
        return self.type_off_w[self.nodes.ti]

    def max_boot_s(self) -> float:
        """The longest boot time of any node type, seconds (0 with no types)."""
        return float(self.type_boot_s.max()) if len(self.types) else 0.0

    def efficiency(self) -> np.ndarray:
        """Per node, watts per unit of work at full load (peak W / (CPUs x speed)) times
        T/T_ref: lower is better."""
        return self.peak_w() / (self.nodes.cpus * self.speed()) * self.nodes.temp_ratio

    def gpu_efficiency(self) -> np.ndarray:
        """Per node, watts per GPU of work at full load times T/T_ref; inf for nodes
        without GPUs (lower is better)."""
        work = self.nodes.gpus * self.speed()
        per = np.where(work > 0, self.peak_w() / np.maximum(work, 1e-12), math.inf)
        return per * self.nodes.temp_ratio

    def idle_timeouts_s(self, idle_timeout_s: Optional[float], min_idle_timeout_s: float) -> np.ndarray:
        """Per node type, seconds of idleness before a node is powered off: ``idle_timeout_s``
        when given, else the break-even time boot J / (idle W - off W), at least
        ``min_idle_timeout_s``."""
        if idle_timeout_s is not None:
            return np.full(len(self.types), float(idle_timeout_s))
        saved_w = self.type_idle_w - self.type_off_w
        with np.errstate(divide="ignore", invalid="ignore"):
            be = np.where(saved_w > 0, self.type_boot_j / np.where(saved_w > 0, saved_w, 1.0), math.inf)
        return np.maximum(be, min_idle_timeout_s)
