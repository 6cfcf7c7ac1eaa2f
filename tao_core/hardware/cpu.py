"""The CPU: model name, vendor, architecture, sockets, cores and threads.

Read from ``/proc/cpuinfo`` and the topology files of ``/sys/devices/system/cpu`` under
the :class:`~tao_core.hardware.root.HostRoot`; on a live machine also from ``lscpu -J``
(fills what cpuinfo lacks: Arm model names, sockets) and psutil (counts). Arm cores, whose
cpuinfo has no model name, are named from their ``CPU implementer``/``CPU part`` codes
(the table of the Linux kernel's ``arch/arm64/include/asm/cputype.h``).
"""
from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Callable, Optional

from tao_core.hardware.root import HostRoot

__all__ = ["CpuInfo", "read_cpu", "run_lscpu", "arm_core_name"]

#: (implementer, part) -> core name, from arch/arm64/include/asm/cputype.h
ARM_PARTS = {
    (0x41, 0xD03): "ARM Cortex-A53", (0x41, 0xD08): "ARM Cortex-A72", (0x41, 0xD0B): "ARM Cortex-A76",
    (0x41, 0xD0C): "ARM Neoverse-N1", (0x41, 0xD40): "ARM Neoverse-V1", (0x41, 0xD49): "ARM Neoverse-N2",
    (0x41, 0xD4F): "ARM Neoverse-V2", (0x41, 0xD8E): "ARM Neoverse-N3", (0x41, 0xD84): "ARM Neoverse-V3",
    (0xC0, 0xAC3): "Ampere AmpereOne", (0x48, 0xD01): "HiSilicon TaiShan v110 (Kunpeng 920)",
    (0x46, 0x001): "Fujitsu A64FX", (0x4E, 0x004): "NVIDIA Carmel",
}
LSCPU_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class CpuInfo:
    """What the CPU is. ``model_name`` as the OS reports it; ``threads``: logical CPUs the
    OS sees; ``hypervisor_flag``: the CPU reports running under a hypervisor."""

    model_name: str
    vendor: str
    arch: str
    sockets: int
    cores: int
    threads: int
    hypervisor_flag: bool = False
    hypervisor_vendor: Optional[str] = None
    sources: tuple[str, ...] = field(default_factory=tuple)


def arm_core_name(implementer: str, part: str) -> Optional[str]:
    """The core name of cpuinfo's ``CPU implementer`` and ``CPU part`` (hex strings)."""
    try:
        return ARM_PARTS.get((int(implementer, 16), int(part, 16)))
    except ValueError:
        return None


def _blocks(text: str) -> list[dict[str, str]]:
    out = []
    for block in text.split("\n\n"):
        d = {}
        for line in block.splitlines():
            k, sep, v = line.partition(":")
            if sep:
                d[k.strip().lower()] = v.strip()
        if d:
            out.append(d)
    return out


def run_lscpu() -> Optional[dict[str, str]]:
    """``lscpu -J`` of this machine as field -> value, or ``None`` where there is none."""
    exe = shutil.which("lscpu")
    if exe is None:
        return None
    try:
        res = subprocess.run([exe, "-J"], capture_output=True, text=True, timeout=LSCPU_TIMEOUT_S, check=False)
        doc = json.loads(res.stdout)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    out: dict[str, str] = {}

    def walk(items: list) -> None:
        for it in items:
            if isinstance(it, dict):
                out[str(it.get("field", "")).rstrip(":").strip()] = str(it.get("data") or "")
                walk(it.get("children") or [])
    walk(doc.get("lscpu") or [])
    return out


def _topology(root: HostRoot) -> tuple[Optional[int], Optional[int]]:
    """(sockets, cores) from /sys/devices/system/cpu/cpu*/topology, when present."""
    pkgs, cores = set(), set()
    for cpu_dir in root.glob("/sys/devices/system/cpu/cpu[0-9]*"):
        pkg = root.read(f"{cpu_dir}/topology/physical_package_id")
        core = root.read(f"{cpu_dir}/topology/core_id")
        if pkg is None or core is None:
            continue
        pkgs.add(pkg)
        cores.add((pkg, core))
    return (len(pkgs) or None, len(cores) or None)


def _model_from_blocks(procs: list[dict[str, str]]) -> tuple[str, str, str]:
    """(model name, vendor, arch) from cpuinfo blocks."""
    first = procs[0] if procs else {}
    if "cpu implementer" in first:
        name = arm_core_name(first.get("cpu implementer", ""), first.get("cpu part", "")) or ""
        impl = first.get("cpu implementer", "")
        return (name or f"Arm implementer {impl} part {first.get('cpu part', '')}", f"arm-{impl}", "aarch64")
    return (first.get("model name", ""), first.get("vendor_id", ""), "x86_64" if "flags" in first else "")


def _identity(procs: list[dict[str, str]], ls: dict[str, str]) -> tuple[str, str, str]:
    """(model name, vendor, arch): cpuinfo first, lscpu for what it lacks."""
    model, vendor, arch = _model_from_blocks(procs)
    if ls and not (procs and procs[0].get("model name")):
        model = ls.get("Model name") or model
    return model or "unknown", vendor or ls.get("Vendor ID", ""), arch or ls.get("Architecture", "")


def _counts(root: HostRoot, procs: list[dict[str, str]], ls: dict[str, str]) -> tuple[int, int, int, bool]:
    """(sockets, cores, threads, from sysfs topology)."""
    threads = len(procs) or _int(ls.get("CPU(s)")) or _psutil_count(root, True) or 1
    topo_sockets, topo_cores = _topology(root)
    phys = {b.get("physical id") for b in procs if "physical id" in b}
    pairs = {(b.get("physical id"), b.get("core id")) for b in procs if "core id" in b}
    sockets = topo_sockets or len(phys) or _int(ls.get("Socket(s)")) or 1
    cores = topo_cores or len(pairs) or _psutil_count(root, False) or threads
    return sockets, cores, threads, topo_sockets is not None


def read_cpu(root: Optional[HostRoot] = None,
             lscpu: Optional[Callable[[], Optional[dict[str, str]]]] = None) -> CpuInfo:
    """The CPU under ``root``. ``lscpu``: returns ``lscpu -J`` fields (default: run it, on
    a live machine only)."""
    root = root or HostRoot()
    procs = [b for b in _blocks(root.read("/proc/cpuinfo") or "") if "processor" in b]
    ls = (lscpu or (run_lscpu if root.live else (lambda: None)))() or {}
    model, vendor, arch = _identity(procs, ls)
    sockets, cores, threads, topo = _counts(root, procs, ls)
    sources = [name for name, used in (("/proc/cpuinfo", procs), ("lscpu", ls), ("/sys/devices/system/cpu", topo)) if used]
    flags = procs[0].get("flags", "").split() if procs else []
    return CpuInfo(model_name=model, vendor=vendor, arch=arch, sockets=sockets, cores=cores, threads=threads,
                   hypervisor_flag="hypervisor" in flags, hypervisor_vendor=ls.get("Hypervisor vendor") or None,
                   sources=tuple(sources))


def _int(v: Optional[str]) -> Optional[int]:
    try:
        return int(str(v).split()[0]) if v else None
    except ValueError:
        return None


def _psutil_count(root: HostRoot, logical: bool) -> Optional[int]:
    if not root.live:
        return None
    import psutil

    return psutil.cpu_count(logical=logical)
