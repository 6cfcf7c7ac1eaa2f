"""The hardware section of ``tao probe``: what was found and the model it leads to, as
plain data (:func:`probe_dict`) and as text (:func:`format_probe_section`)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tao_core.power.node_json import node_type_to_dict

if TYPE_CHECKING:  # pragma: no cover
    from tao_core.hardware.describe import NodeDescription

__all__ = ["format_probe_section", "probe_dict"]


def probe_dict(d: "NodeDescription") -> dict[str, Any]:
    """Hardware, model and node type as JSON-ready data."""
    hw, m = d.hardware, d.model
    return {
        "hardware_key": d.hardware_key,
        "root": hw.root,
        "cpu": {"model": hw.cpu.model_name, "vendor": hw.cpu.vendor, "arch": hw.cpu.arch, "sockets": hw.cpu.sockets,
                "cores": hw.cpu.cores, "threads": hw.cpu.threads, "sources": list(hw.cpu.sources)},
        "memory": {"total_bytes": hw.memory.total_bytes, "cgroup_limit_bytes": hw.memory.limit_bytes},
        "platform": {"kind": hw.platform.kind, "hypervisor": hw.platform.hypervisor, "dmi": dict(hw.platform.dmi),
                     "cpu_limit": hw.platform.cpu_limit, "evidence": list(hw.platform.evidence)},
        "gpus": {"source": hw.gpus.source, "reason": hw.gpus.reason,
                 "devices": [vars(g).copy() for g in hw.gpus.devices]},
        "model": {
            "cpu_method": m.cpu.method, "cpu_detail": m.cpu.detail, "generation": m.cpu.generation,
            "cpu_uncertainty": m.cpu.uncertainty, "matched_result": m.cpu.matched_result,
            "tdp_w": m.cpu.tdp.tdp_w if m.cpu.tdp else None, "tdp_source": m.cpu.tdp.source if m.cpu.tdp else None,
            "gpu_method": m.gpu.method if m.gpu else None,
            **m.provenance.to_dict(),
        },
        "node_type": node_type_to_dict(d.node_type),
    }


def _gib(b: int) -> str:
    return f"{b / 2**30:.1f} GiB"


def format_probe_section(d: "NodeDescription") -> str:
    """The hardware and its model as text lines for ``tao probe``."""
    hw, m, t = d.hardware, d.model, d.node_type
    mem = _gib(hw.memory.total_bytes) + (f" (cgroup limit {_gib(hw.memory.limit_bytes)})" if hw.memory.limit_bytes else "")
    lines = [
        "hardware:" + ("" if hw.root == "/" else f" (files read below {hw.root})"),
        f"  cpu        {hw.cpu.model_name} ({hw.cpu.arch or 'arch unknown'}): {hw.cpu.sockets} socket(s), "
        f"{hw.cpu.cores} core(s), {hw.cpu.threads} thread(s)",
        f"  memory     {mem}",
        f"  platform   {hw.platform.kind}" + (f" ({hw.platform.hypervisor})" if hw.platform.hypervisor else "")
        + (f", CPU quota {hw.platform.cpu_limit:g}" if hw.platform.cpu_limit else "")
        + (f", DMI {hw.platform.product}" if hw.platform.product else ""),
        f"             evidence: {'; '.join(hw.platform.evidence)}",
        f"  gpus       {len(hw.gpus.devices)} ({hw.gpus.reason})",
    ]
    for g in hw.gpus.devices:
        lim = "" if g.power_limit_w is None else f", limit {g.power_limit_w:g} W"
        rng = "" if g.min_limit_w is None else f" (range {g.min_limit_w:g}-{g.max_limit_w:g} W)"
        mig = "" if g.mig_enabled is None else f", MIG {'on' if g.mig_enabled else 'off'}"
        lines.append(f"    gpu-{g.index}    {g.name}{lim}{rng}{mig}")
    pts = ", ".join(f"{p:.0f}" for p in t.power_curve.points_w)
    lines += [
        "model:",
        f"  node type  {t.name} ({t.cpus:g} CPUs" + (f", {t.gpus} GPU(s)" if t.gpus else "") + ")",
        f"  curve      [{pts}] W at 0..100 % CPU",
        f"  origin     {m.provenance.origin}, uncertainty {m.provenance.uncertainty:.0%}",
        f"  method     {m.provenance.method}",
    ]
    if m.gpu is not None:
        lines.append(f"  gpu power  {m.gpu.idle_w:.0f}-{m.gpu.max_w:.0f} W each: {m.gpu.method}")
    return "\n".join(lines) + "\n"
