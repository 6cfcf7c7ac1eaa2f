"""Per-GPU idle and busy watts for a node type, from what NVML says or, where NVML is
absent, from ``tao_core/data/gpu_power.csv`` by model name.

- With NVML: busy watts = the default power limit (the board's rated power,
  ``nvmlDeviceGetPowerManagementDefaultLimit``), else the enforced limit; a lower enforced
  limit becomes the node type's ``gpu_power_limit_w``. Idle watts from the table by name,
  else :data:`~tao_core.telemetry.nvml.IDLE_FRACTION_OF_LIMIT` of the limit (as NVML's
  utilization model does).
- Without NVML (the GPU named by the driver's ``/proc/driver/nvidia/gpus/*/information``):
  idle and default-limit watts from the table; a GPU not in it adds no watts and says so.
"""
from __future__ import annotations

import csv
import functools
import re
from dataclasses import dataclass
from importlib import resources
from typing import Optional

from tao_core.telemetry.estimator import GPU_MODEL_UNCERTAINTY
from tao_core.telemetry.nvml import IDLE_FRACTION_OF_LIMIT

__all__ = ["GpuPower", "gpu_power", "gpu_table"]


@dataclass(frozen=True)
class GpuPower:
    """Watts of one GPU idle and fully busy, the enforced limit when below busy, and how."""

    idle_w: float
    max_w: float
    limit_w: Optional[float]
    method: str
    uncertainty: float


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower().replace("nvidia", ""))


@functools.lru_cache(maxsize=1)
def gpu_table() -> dict[str, dict[str, str]]:
    """Normalised GPU name -> row of ``data/gpu_power.csv``."""
    text = resources.files("tao_core").joinpath("data/gpu_power.csv").read_text(encoding="utf-8")
    return {_key(r["gpu"]): r for r in csv.DictReader(text.splitlines())}


def _num(v: Optional[str]) -> Optional[float]:
    try:
        return float(v) if v not in (None, "") else None
    except ValueError:
        return None


def gpu_power(name: str, *, default_limit_w: Optional[float] = None,
              enforced_limit_w: Optional[float] = None) -> GpuPower:
    """Idle and busy watts of a GPU named ``name`` (limits in watts as NVML gives them, or
    ``None`` without NVML)."""
    row = gpu_table().get(_key(name))
    table_idle = _num(row["idle_w"]) if row else None
    busy = default_limit_w or enforced_limit_w
    if busy:
        limit = enforced_limit_w if enforced_limit_w and enforced_limit_w < busy else None
        if table_idle is not None:
            idle, how = min(table_idle, busy), f"idle {table_idle:g} W from gpu_power.csv ({row['source']})"
        else:
            idle, how = IDLE_FRACTION_OF_LIMIT * busy, f"idle {IDLE_FRACTION_OF_LIMIT:.0%} of the limit (not in gpu_power.csv)"
        lim = f", enforced limit {limit:g} W" if limit else ""
        return GpuPower(idle, busy, limit, f"NVML power limit {busy:g} W as busy watts{lim}; {how}", GPU_MODEL_UNCERTAINTY)
    table_max = _num(row["default_limit_w"]) if row else None
    if table_max:
        idle = table_idle if table_idle is not None else IDLE_FRACTION_OF_LIMIT * table_max
        return GpuPower(idle, table_max, None,
                        f"no NVML: idle {idle:g} W and busy {table_max:g} W from gpu_power.csv ({row['source']})",
                        GPU_MODEL_UNCERTAINTY)
    return GpuPower(0.0, 0.0, None, f"no NVML and {name!r} not in gpu_power.csv: GPU power not modeled", 1.0)
