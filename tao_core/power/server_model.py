"""A whole-server power curve for hardware that was discovered, not declared.

In order of preference:

1. **Measured server**: the DMI product name, CPU model and socket count match a
   SPECpower_ssj2008 result of :mod:`tao_core.power.specpower`; its curve is used, shifted
   by :data:`MEMORY_W_PER_GB` for the difference in memory.
2. **TDP**: the CPU model is in :mod:`tao_core.power.cpu_tdp`. Peak wall watts are
   ``CPU_FACTOR x sockets x TDP + MEMORY_W_PER_GB x memory GB + PLATFORM_W`` and the
   curve is that peak times the shape of the CPU's generation
   (:func:`tao_core.power.families.shape_for`).
3. **Per thread**: the model is unknown. The TDP is estimated as threads times the median
   TDP per thread of the table's server parts of the same generation (of all server parts
   when the generation has none), then as in 2. The method says so.

``CPU_FACTOR`` and ``PLATFORM_W`` are least squares over the results of
``specpower_results.csv`` whose CPU is in the TDP table (with memory fixed at
:data:`MEMORY_W_PER_GB`), and the uncertainty of methods 2 and 3 is the RMS relative error
of each method over the same results at all 11 load points; both are computed from the
shipped tables when first needed (:func:`calibration`).

In a virtual machine the guest sees some of the host's threads: the CPU and platform part
is scaled by visible threads / threads of the sockets the model implies, and memory counts
what the guest sees. Units: watts, GB.
"""
from __future__ import annotations

import functools
import math
import re
import statistics
from dataclasses import dataclass
from typing import Optional

import numpy as np

from tao_core.power.cpu_tdp import CpuTdp, cpu_tdp_table, lookup_tdp, normalize_model
from tao_core.power.curve import PowerCurve
from tao_core.power.families import CurveShape, cpu_generation, shape_for
from tao_core.power.specpower import NamedCurve, named_curves

__all__ = [
    "MEMORY_W_PER_GB", "MEASURED_SERVER_UNCERTAINTY", "Calibration", "CpuCurveEstimate",
    "calibration", "estimate_server_curve",
]

#: DRAM watts per GB: Cloud Carbon Footprint's memory coefficient, 0.000392 kWh per
#: GB-hour (cloudcarbonfootprint.org/docs/methodology, section "Memory")
MEMORY_W_PER_GB = 0.392
#: relative uncertainty of a measured SPECpower curve of the same server model used for
#: another workload and configuration (an assumed figure, as for a declared curve)
MEASURED_SERVER_UNCERTAINTY = 0.10
#: method names, as shown by ``tao probe`` and in :class:`CpuCurveEstimate`
METHOD_SERVER = "specpower-server"
METHOD_TDP = "tdp-table"
METHOD_THREADS = "per-thread"


@dataclass(frozen=True)
class Calibration:
    """Constants of the TDP model and the errors of the TDP and per-thread methods over the
    SPECpower results whose CPU is in the TDP table."""

    cpu_factor: float  #: wall watts at 100 % load per watt of TDP
    platform_w: float  #: watts of the rest of the server at 100 % load
    results: int  #: SPECpower results fitted
    tdp_rms: float  #: RMS relative error of method 2 over those results, 11 points each
    per_thread_rms: float  #: the same for method 3


@dataclass(frozen=True)
class CpuCurveEstimate:
    """A server curve, how it was made and its relative standard uncertainty."""

    curve: PowerCurve
    method: str  #: specpower-server, tdp-table or per-thread
    detail: str  #: one line a person can check
    uncertainty: float
    generation: str
    tdp: Optional[CpuTdp] = None
    matched_result: Optional[str] = None
    host_share: float = 1.0


def _server_tdp_rows() -> list[CpuTdp]:
    return [r for r in cpu_tdp_table().values() if r.server and r.threads]


@functools.lru_cache(maxsize=32)
def _w_per_thread(generation: str) -> tuple[float, str]:
    rows = _server_tdp_rows()
    same = [r for r in rows if generation not in ("unknown", "arm") and cpu_generation(r.model) == generation]
    use, scope = (same, f"{generation} parts") if same else (rows, "all server parts")
    return statistics.median(r.tdp_w / r.threads for r in use), f"median of {len(use)} {scope}"


@functools.lru_cache(maxsize=1)
def _median_server_threads() -> int:
    return int(statistics.median(r.threads for r in _server_tdp_rows()))


def _peak(cpu_w: float, memory_gb: float, cal: Calibration) -> float:
    return cal.cpu_factor * cpu_w + cal.platform_w + MEMORY_W_PER_GB * memory_gb


def _rms(pred: list[np.ndarray], meas: list[np.ndarray]) -> float:
    rel = np.concatenate([(p - m) / m for p, m in zip(pred, meas)])
    return float(np.sqrt(np.mean(rel ** 2)))


@functools.lru_cache(maxsize=1)
def calibration() -> Calibration:
    """Fit of ``CPU_FACTOR`` and ``PLATFORM_W`` and the methods' errors (module doc)."""
    rows: list[tuple[NamedCurve, CpuTdp]] = []
    for c in named_curves().values():
        t = lookup_tdp(c.cpu) if c.memory_gb is not None else None
        if t is not None:
            rows.append((c, t))
    x = np.array([[c.sockets * t.tdp_w, 1.0] for c, t in rows])
    y = np.array([c.curve.peak_w - MEMORY_W_PER_GB * c.memory_gb for c, t in rows])
    (factor, platform), *_ = np.linalg.lstsq(x, y, rcond=None)
    cal0 = Calibration(float(factor), float(platform), len(rows), 0.0, 0.0)
    meas = [np.asarray(c.curve.points_w) for c, _ in rows]
    tdp_pred, thr_pred = [], []
    for c, t in rows:
        shape = np.asarray(shape_for(cpu_generation(c.cpu)).fractions)
        tdp_pred.append(shape * _peak(c.sockets * t.tdp_w, c.memory_gb, cal0))
        wpt, _ = _w_per_thread(cpu_generation(c.cpu))
        thr_pred.append(shape * _peak((c.threads or c.cores) * wpt, c.memory_gb, cal0))
    return Calibration(cal0.cpu_factor, cal0.platform_w, len(rows), _rms(tdp_pred, meas), _rms(thr_pred, meas))


def _tokens(s: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", s.lower()))


def _measured_server(product: str, model_name: str, sockets: int) -> Optional[NamedCurve]:
    """A SPECpower result of this server model (all product-name words in its model), CPU
    and socket count; the most recent when several match."""
    want = _tokens(product) - {"inc", "corp", "corporation", "server", "system"}
    cpu = normalize_model(model_name)
    if len(want) < 2 or not cpu:
        return None
    hits = [c for c in named_curves().values()
            if c.memory_gb is not None and c.sockets == sockets and normalize_model(c.cpu).startswith(cpu)
            and want <= _tokens(c.server)]
    return max(hits, key=lambda c: c.name) if hits else None


def _host_share(threads: int, model_threads: Optional[int], sockets: int, virtual: bool) -> tuple[float, int]:
    """(share of the host's CPU and platform watts this node has, sockets the host has)."""
    if not virtual or not model_threads:
        return 1.0, sockets
    host_sockets = max(sockets, math.ceil(threads / model_threads))
    return min(1.0, threads / (model_threads * host_sockets)), host_sockets


def estimate_server_curve(model_name: str, *, sockets: int, threads: int, memory_gb: float,
                          product: str = "", virtual: bool = False) -> CpuCurveEstimate:
    """The curve of a server with this CPU (``model_name`` as Linux reports it), socket and
    thread counts, memory (GB) and DMI product name; ``virtual`` for a guest (module doc)."""
    gen = cpu_generation(model_name)
    shape: CurveShape = shape_for(gen)
    cal = calibration()
    if not virtual and product:
        hit = _measured_server(product, model_name, sockets)
        if hit is not None:
            shift = MEMORY_W_PER_GB * (memory_gb - float(hit.memory_gb or 0.0))
            pts = tuple(max(p + shift, 0.0) for p in hit.curve.points_w)
            return CpuCurveEstimate(
                PowerCurve(pts), METHOD_SERVER,
                f"{hit.source} ({hit.server}, {hit.sockets} x {hit.cpu}, {hit.memory_gb:g} GB), "
                f"{shift:+.0f} W for {memory_gb:.1f} GB of memory", MEASURED_SERVER_UNCERTAINTY, gen,
                matched_result=hit.name)
    tdp = lookup_tdp(model_name)
    if tdp is not None:
        share, host_sockets = _host_share(threads, tdp.threads, sockets, virtual)
        cpu_w = host_sockets * tdp.tdp_w
        peak = share * (cal.cpu_factor * cpu_w + cal.platform_w) + MEMORY_W_PER_GB * memory_gb
        detail = (f"{host_sockets} x {tdp.model} TDP {tdp.tdp_w:g} W ({tdp.source}); peak "
                  f"{cal.cpu_factor:.2f} x {cpu_w:g} W + {cal.platform_w:.0f} W platform"
                  f"{f' x host share {share:.3f}' if share < 1 else ''} + {MEMORY_W_PER_GB} W/GB x {memory_gb:.1f} GB; "
                  f"{shape.describe()}")
        return CpuCurveEstimate(PowerCurve(tuple(peak * f for f in shape.fractions)), METHOD_TDP, detail,
                                cal.tdp_rms, gen, tdp=tdp, host_share=share)
    wpt, scope = _w_per_thread(gen)
    share, _ = _host_share(threads, _median_server_threads(), 1, virtual)
    peak = cal.cpu_factor * threads * wpt + share * cal.platform_w + MEMORY_W_PER_GB * memory_gb
    detail = (f"CPU model {model_name!r} not in the TDP table: {threads} threads x {wpt:.2f} W per thread "
              f"({scope}); peak {cal.cpu_factor:.2f} x {threads * wpt:.0f} W + {cal.platform_w:.0f} W platform"
              f"{f' x host share {share:.3f} (guest threads / {_median_server_threads()}, the median threads of the server parts)' if share < 1 else ''}"
              f" + {MEMORY_W_PER_GB} W/GB x {memory_gb:.1f} GB; {shape.describe()}")
    return CpuCurveEstimate(PowerCurve(tuple(peak * f for f in shape.fractions)), METHOD_THREADS, detail,
                            cal.per_thread_rms, gen, host_share=share)
