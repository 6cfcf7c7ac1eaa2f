"""Model-based energy: node wall power from a power curve at the CPU utilization psutil
measures, GPU power from utilization. Every figure is labelled ``modeled``.

Node power: an 11-point :class:`~tao_core.power.curve.PowerCurve` (wall watts at 0..100 %
utilization), evaluated at the mean utilization of each interval between two reads and
integrated over it (joules = watts x seconds).

- Machine-wide (``processes=None``): utilization = busy CPU seconds of the whole machine
  (``psutil.cpu_times()``: everything but idle and iowait) / (``cpus`` x seconds).
- Process set (``processes`` = an iterable of pids, or a callable returning the current
  pids): utilization = CPU seconds (user + system) of those processes and all their
  descendants / (``cpus`` x seconds). CPU time of children that exited and were waited for
  is counted through their parent's ``children_user``/``children_system`` times; a process
  that exits between two reads loses its CPU time since the previous read unless a tracked
  parent reaps it. This lets one machine host several virtual nodes (Ray's
  ``cluster_utils`` nodes, Dask worker processes), each with its own curve and CPU count.

Uncertainty (relative standard uncertainty of the joules):

- ``CURVE_UNCERTAINTY`` = 0.10 with a curve measured for the machine (SPECpower style): an
  assumed figure for workloads other than the one the curve was measured with; it is not a
  measured error.
- ``TDP_UNCERTAINTY`` = 0.25 with a TDP and the default curve shape
  (:data:`~tao_core.power.curve.DEFAULT_SHAPE`): the RMS relative error of that shape
  against the seven normalised SPECpower curves in ``tao_core/data/specpower_servers.csv``
  is 20 % (up to 64 % at idle on the older servers); rounded up because the TDP only
  approximates the peak wall power.
- ``GPU_MODEL_UNCERTAINTY`` = 0.30 for GPU power from utilization: NVML utilization is the
  fraction of time a kernel ran, not how hard it ran, so power at a given utilization
  varies widely between kernels (an assumed figure).
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Optional, Sequence, Union

import psutil

from tao_core.power.curve import DEFAULT_SHAPE, PowerCurve
from tao_core.telemetry.base import DomainReading, EnergySource, Reading, SourceKind

__all__ = [
    "ModeledSource", "ModeledGpu", "gpu_power_from_util", "CURVE_UNCERTAINTY", "TDP_UNCERTAINTY",
    "GPU_MODEL_UNCERTAINTY",
]

CURVE_UNCERTAINTY = 0.10
TDP_UNCERTAINTY = 0.25
GPU_MODEL_UNCERTAINTY = 0.30

Pids = Union[Iterable[int], Callable[[], Iterable[int]]]


def gpu_power_from_util(utilization: float, idle_w: float, max_w: float) -> float:
    """Watts of a GPU at ``utilization`` (fraction 0..1): linear between idle and max."""
    u = min(max(float(utilization), 0.0), 1.0)
    return idle_w + (max_w - idle_w) * u


@dataclass(frozen=True)
class ModeledGpu:
    """A GPU whose power is modeled from its utilization. ``utilization`` returns a fraction
    0..1, or ``None`` when it cannot be read (the interval then counts as idle)."""

    name: str
    idle_w: float
    max_w: float
    utilization: Callable[[], Optional[float]]

    def __post_init__(self) -> None:
        if not (0 <= self.idle_w <= self.max_w):
            raise ValueError(f"gpu {self.name!r}: need 0 <= idle_w <= max_w (watts)")


def descendants(top: psutil.Process) -> list[psutil.Process]:
    """The processes below ``top`` (children, theirs, ...). On Linux from each thread's
    ``/proc/PID/task/TID/children`` (a few small reads), not by scanning every process of the
    machine as ``psutil.Process.children`` does (tens of ms on a busy host, on every sample);
    elsewhere, or when the kernel has no such file, through psutil."""
    out: list[psutil.Process] = []
    todo = [top.pid]
    seen = {top.pid}
    while todo:
        pid = todo.pop()
        try:
            tids = os.listdir(f"/proc/{pid}/task")
            kids = []
            for tid in tids:
                with open(f"/proc/{pid}/task/{tid}/children") as fh:
                    kids += [int(x) for x in fh.read().split()]
        except FileNotFoundError:
            if pid == top.pid and not os.path.exists(f"/proc/{pid}/task/{pid}/children"):
                return top.children(recursive=True)
            continue  # a process or thread gone meanwhile
        except OSError:
            return top.children(recursive=True)
        for k in kids:
            if k not in seen:
                seen.add(k)
                todo.append(k)
                try:
                    out.append(psutil.Process(k))
                except psutil.NoSuchProcess:
                    pass
    return out


class ModeledSource(EnergySource):
    """Node energy from a power curve at measured CPU utilization (see module doc).

    ``power_curve``: wall watts at 0..100 % utilization of ``cpus`` logical CPUs (default:
    all CPUs of this machine). ``processes``: ``None`` for machine-wide, else the pids (or a
    callable returning them) whose CPU time (with their descendants') is this node's work.
    ``gpu``: GPUs modeled from utilization. ``name``: the node's domain name.
    """

    kind = SourceKind.MODELED

    def __init__(
        self,
        power_curve: PowerCurve,
        *,
        cpus: float | None = None,
        processes: Pids | None = None,
        gpu: Sequence[ModeledGpu] | ModeledGpu | None = None,
        name: str = "node",
        uncertainty: float = CURVE_UNCERTAINTY,
        curve_label: str = "power curve",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(power_curve, PowerCurve):
            raise TypeError("power_curve: expected a tao_core.power.curve.PowerCurve")
        self.power_curve = power_curve
        self.cpus = float(cpus) if cpus is not None else float(psutil.cpu_count() or 1)
        if not self.cpus > 0:
            raise ValueError("cpus: must be a number of logical CPUs > 0")
        self.processes = processes
        self.gpus: tuple[ModeledGpu, ...] = (gpu,) if isinstance(gpu, ModeledGpu) else tuple(gpu or ())
        self.name = name
        self.uncertainty = uncertainty
        self._clock = clock
        self._lock = threading.Lock()
        scope = "machine-wide" if processes is None else "process set"
        self.method = (
            f"{curve_label} (idle {power_curve.idle_w:.0f} W, peak {power_curve.peak_w:.0f} W) "
            f"at psutil CPU utilization ({scope}, {self.cpus:g} CPU(s))"
        )
        #: mean CPU utilization (0..1) of the last interval, ``None`` before the second read
        self.last_utilization: Optional[float] = None
        self._proc_cpu: dict[tuple[int, float], float] = {}
        self._energy_j = 0.0
        self._gpu_energy = {g.name: 0.0 for g in self.gpus}
        self._gpu_last_w: dict[str, Optional[float]] = {g.name: None for g in self.gpus}
        self._last_power: Optional[float] = None
        self._last_t = self._clock()
        self._last_wall = time.time()
        self._last_busy = self._busy_cpu_s(baseline=True)

    @classmethod
    def from_tdp(cls, tdp_w: float, **kwargs) -> "ModeledSource":
        """A node whose peak wall power is ``tdp_w`` watts, with the default curve shape."""
        kwargs.setdefault("uncertainty", TDP_UNCERTAINTY)
        kwargs.setdefault("curve_label", f"TDP {tdp_w:g} W x default SPECpower shape")
        return cls(PowerCurve.from_tdp(tdp_w, DEFAULT_SHAPE), **kwargs)

    # --- CPU seconds -------------------------------------------------------------------
    def _busy_cpu_s(self, baseline: bool = False) -> float:
        if self.processes is None:
            ct = psutil.cpu_times()
            return float(sum(ct) - ct.idle - getattr(ct, "iowait", 0.0))
        return self._process_cpu_s(baseline)

    def _pids(self) -> list[int]:
        src = self.processes() if callable(self.processes) else self.processes  # type: ignore[operator]
        return [p.pid if isinstance(p, psutil.Process) else int(p) for p in (src or ())]

    def _process_cpu_s(self, baseline: bool) -> float:
        """CPU seconds accumulated since the previous call by the tracked processes."""
        seen: dict[tuple[int, float], float] = {}
        for pid in self._pids():
            try:
                top = psutil.Process(pid)
                procs = [(top, True)] + [(c, False) for c in descendants(top)]
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            for p, is_top in procs:
                try:
                    with p.oneshot():
                        key = (p.pid, p.create_time())
                        t = p.cpu_times()
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    continue
                cpu = t.user + t.system + ((t.children_user + t.children_system) if is_top else 0.0)
                seen[key] = max(seen.get(key, 0.0), cpu)
        delta = 0.0
        if not baseline:
            for key, cpu in seen.items():
                if key in self._proc_cpu:
                    delta += max(cpu - self._proc_cpu[key], 0.0)
                elif key[1] >= self._last_wall - 0.01:
                    delta += cpu  # born during the interval: all its CPU time is new
        self._proc_cpu = seen
        return delta

    # --- reading -----------------------------------------------------------------------
    def read(self) -> Reading:
        with self._lock:
            t = self._clock()
            dt = t - self._last_t
            if self.processes is None:
                busy_now = self._busy_cpu_s()
                busy = busy_now - self._last_busy
                self._last_busy = busy_now
            else:
                busy = self._busy_cpu_s()
            self._last_wall = time.time()
            power = self._last_power
            if dt > 0:
                util = min(max(busy / (self.cpus * dt), 0.0), 1.0)
                self.last_utilization = util
                power = float(self.power_curve.power_w(util))
                self._energy_j += power * dt
                self._last_power = power
            domains = {
                self.name: DomainReading(
                    name=self.name, energy_j=self._energy_j, source=SourceKind.MODELED,
                    method=self.method, power_w=power, uncertainty=self.uncertainty,
                )
            }
            for g in self.gpus:
                try:
                    u = g.utilization()
                except Exception:  # a GPU that vanished: count the interval as idle
                    u = None
                w = gpu_power_from_util(u or 0.0, g.idle_w, g.max_w)
                prev = self._gpu_last_w[g.name]
                if dt > 0:
                    self._gpu_energy[g.name] += ((prev if prev is not None else w) + w) / 2 * dt
                self._gpu_last_w[g.name] = w
                domains[g.name] = DomainReading(
                    name=g.name, energy_j=self._gpu_energy[g.name], source=SourceKind.MODELED,
                    method=f"GPU utilization x ({g.idle_w:g} W idle .. {g.max_w:g} W max), linear",
                    power_w=w, uncertainty=GPU_MODEL_UNCERTAINTY,
                )
            self._last_t = t
            return Reading(t_s=t, domains=domains)


def default_tdp_w(cpus: Optional[int] = None) -> float:
    """Peak wall watts assumed for this machine when nothing better is known: 10 W per
    logical CPU plus 50 W for the rest of the server (a rough figure for a small server;
    pass a real curve or TDP for anything that matters)."""
    n = cpus if cpus is not None else (psutil.cpu_count() or os.cpu_count() or 1)
    return 50.0 + 10.0 * n
