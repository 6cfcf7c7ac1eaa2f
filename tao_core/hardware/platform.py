"""Where the OS runs: bare metal, a virtual machine, a container (or a container in a VM),
with the evidence for each and the CPUs a container may use.

- VM: the CPU's ``hypervisor`` flag, ``lscpu``'s hypervisor vendor, ``/sys/hypervisor/type``,
  or a DMI product/vendor string of a hypervisor (QEMU, KVM, VMware, VirtualBox, Xen HVM,
  Hyper-V "Virtual Machine", Bochs, BHYVE, Parallels). A cloud vendor string alone
  ("Amazon EC2") is not a VM: its bare-metal instances carry it too.
- Container: ``/.dockerenv``, ``/run/.containerenv`` (Podman), or a cgroup path of PID 1 naming
  docker, kubepods, containerd, libpod, lxc or crio.
- CPU limit: the cgroup v2 ``cpu.max`` quota/period or v1 ``cpu.cfs_quota_us`` /
  ``cpu.cfs_period_us``, in CPUs.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from tao_core.hardware.cpu import CpuInfo
from tao_core.hardware.root import HostRoot

__all__ = ["PlatformInfo", "read_platform", "DMI_FIELDS"]

DMI_FIELDS = ("sys_vendor", "product_name", "product_version", "board_vendor", "board_name", "bios_vendor",
              "chassis_vendor")
_VM_DMI = re.compile(r"qemu|kvm|vmware|virtualbox|innotek|xen|hvm domu|virtual machine|bochs|bhyve|parallels",
                     re.I)
_CONTAINER_CGROUP = re.compile(r"docker|kubepods|containerd|libpod|lxc|crio")

BARE_METAL = "bare-metal"
VM = "vm"
CONTAINER = "container"
CONTAINER_IN_VM = "container-in-vm"


@dataclass(frozen=True)
class PlatformInfo:
    """``kind``: bare-metal, vm, container or container-in-vm; ``dmi``: the DMI strings read;
    ``cpu_limit``: CPUs of a cgroup quota (``None``: no quota); ``evidence``: why."""

    kind: str
    virtual: bool
    container: bool
    hypervisor: Optional[str]
    dmi: dict[str, str]
    cpu_limit: Optional[float]
    evidence: tuple[str, ...]

    @property
    def product(self) -> str:
        """The DMI product name (``PowerEdge R740``), empty when unknown."""
        return self.dmi.get("product_name", "")


def _dmi(root: HostRoot) -> dict[str, str]:
    out = {}
    for f in DMI_FIELDS:
        v = root.read(f"/sys/class/dmi/id/{f}")
        if v:
            out[f] = v
    return out


def _vm_evidence(root: HostRoot, cpu: CpuInfo, dmi: dict[str, str]) -> tuple[list[str], Optional[str]]:
    ev, hv = [], cpu.hypervisor_vendor
    if cpu.hypervisor_flag:
        ev.append("CPU flag 'hypervisor' in /proc/cpuinfo")
    if cpu.hypervisor_vendor:
        ev.append(f"lscpu: hypervisor vendor {cpu.hypervisor_vendor}")
    xen = root.read("/sys/hypervisor/type")
    if xen:
        ev.append(f"/sys/hypervisor/type: {xen}")
        hv = hv or xen
    for k in ("product_name", "sys_vendor", "bios_vendor", "board_vendor"):
        m = _VM_DMI.search(dmi.get(k, ""))
        if m:
            ev.append(f"DMI {k}: {dmi[k]}")
            hv = hv or m.group(0)
            break
    return ev, hv


def _container_evidence(root: HostRoot) -> list[str]:
    ev = [f"{p} exists" for p in ("/.dockerenv", "/run/.containerenv") if root.exists(p)]
    cg = root.read("/proc/1/cgroup") or ""
    m = _CONTAINER_CGROUP.search(cg)
    if m:
        ev.append(f"/proc/1/cgroup names {m.group(0)}")
    return ev


def _cpu_limit(root: HostRoot) -> Optional[float]:
    v2 = root.read("/sys/fs/cgroup/cpu.max")
    if v2:
        quota, _, period = v2.partition(" ")
        if quota.isdigit() and period.strip().isdigit() and int(period) > 0:
            return int(quota) / int(period)
        return None
    for d in ("/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"):
        q, p = root.read(f"{d}/cpu.cfs_quota_us"), root.read(f"{d}/cpu.cfs_period_us")
        if q and p and q.lstrip("-").isdigit() and p.isdigit() and int(q) > 0 and int(p) > 0:
            return int(q) / int(p)
    return None


def read_platform(cpu: CpuInfo, root: Optional[HostRoot] = None) -> PlatformInfo:
    """The platform under ``root`` for a machine whose CPU is ``cpu``."""
    root = root or HostRoot()
    dmi = _dmi(root)
    vm_ev, hv = _vm_evidence(root, cpu, dmi)
    ct_ev = _container_evidence(root)
    virtual, container = bool(vm_ev), bool(ct_ev)
    kind = (CONTAINER_IN_VM if virtual and container else VM if virtual else CONTAINER if container else BARE_METAL)
    ev = tuple(vm_ev + ct_ev) or ("no hypervisor flag, hypervisor DMI string or container marker found",)
    return PlatformInfo(kind, virtual, container, hv, dmi, _cpu_limit(root), ev)
