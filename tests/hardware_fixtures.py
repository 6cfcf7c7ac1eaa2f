"""Fake machines for hardware discovery: a /proc, /sys and DMI tree in a temp folder, laid
out as Linux lays them out, and a stand-in for the pynvml functions discovery calls.

The CPU models are real parts; the file formats follow real machines (an x86 cpuinfo block
per logical CPU with physical id / core id, an Arm block with implementer and part codes)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import pynvml

X86_FLAGS = "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht syscall nx lm"


def write(root: Path, path: str, text: str) -> None:
    p = root / path.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def x86_cpuinfo(model: str, sockets: int, cores: int, smt: int, *, vendor: str = "GenuineIntel",
                hypervisor: bool = False) -> str:
    """``/proc/cpuinfo`` of ``sockets`` x ``cores`` x ``smt`` logical CPUs."""
    flags = X86_FLAGS + (" hypervisor" if hypervisor else "")
    blocks, n = [], 0
    for t in range(smt):
        for s in range(sockets):
            for c in range(cores):
                blocks.append(
                    f"processor\t: {n}\nvendor_id\t: {vendor}\ncpu family\t: 6\nmodel\t\t: 85\n"
                    f"model name\t: {model}\nstepping\t: 7\ncpu MHz\t\t: 2700.000\nphysical id\t: {s}\n"
                    f"siblings\t: {cores * smt}\ncore id\t\t: {c}\ncpu cores\t: {cores}\nflags\t\t: {flags}\n"
                    "bogomips\t: 5400.00\n")
                n += 1
    return "\n".join(blocks) + "\n"


def arm_cpuinfo(cpus: int, implementer: str = "0x41", part: str = "0xd0c") -> str:
    return "\n".join(
        f"processor\t: {i}\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics\n"
        f"CPU implementer\t: {implementer}\nCPU architecture: 8\nCPU variant\t: 0x3\nCPU part\t: {part}\n"
        "CPU revision\t: 1\n" for i in range(cpus)) + "\n"


@dataclass
class Machine:
    """A fake machine; :meth:`lay` writes its tree under a folder."""

    cpuinfo: str
    mem_gib: float
    dmi: dict = field(default_factory=dict)
    topology: Optional[list] = None  # [(package, core)] per logical CPU, for /sys topology
    extra: dict = field(default_factory=dict)  # path -> text

    def lay(self, root: Path) -> Path:
        write(root, "/proc/cpuinfo", self.cpuinfo)
        write(root, "/proc/meminfo", f"MemTotal:       {int(self.mem_gib * 2**20)} kB\nMemFree:        1024 kB\n")
        for k, v in self.dmi.items():
            write(root, f"/sys/class/dmi/id/{k}", v + "\n")
        for i, (pkg, core) in enumerate(self.topology or ()):
            write(root, f"/sys/devices/system/cpu/cpu{i}/topology/physical_package_id", f"{pkg}\n")
            write(root, f"/sys/devices/system/cpu/cpu{i}/topology/core_id", f"{core}\n")
        for p, text in self.extra.items():
            write(root, p, text)
        write(root, "/proc/1/cgroup", "0::/init.scope\n") if "/proc/1/cgroup" not in self.extra else None
        return root


#: a 2010 server: IBM System x3550 M3, 2 x Xeon X5670 (6 cores, HT), 96 GB
OLD_XEON = Machine(x86_cpuinfo("Intel(R) Xeon(R) CPU           X5670  @ 2.93GHz", 2, 6, 2), 94.4,
                   {"sys_vendor": "IBM", "product_name": "System x3550 M3 -[7944AC1]-"})
#: Dell PowerEdge R740, 2 x Xeon Platinum 8280 (28 cores, HT), 192 GB: a SPECpower-tested model
R740 = Machine(x86_cpuinfo("Intel(R) Xeon(R) Platinum 8280 CPU @ 2.70GHz", 2, 28, 2), 187.5,
               {"sys_vendor": "Dell Inc.", "product_name": "PowerEdge R740"})
#: a white-box Ice Lake server, 2 x Xeon Gold 6338 (32 cores, HT), 512 GB
ICELAKE = Machine(x86_cpuinfo("Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz", 2, 32, 2), 503.0,
                  {"sys_vendor": "Supermicro", "product_name": "SYS-120U-TNR"})
#: a single-socket EPYC 7763 (64 cores, SMT) server, 256 GB, not a SPECpower-tested model
EPYC = Machine(x86_cpuinfo("AMD EPYC 7763 64-Core Processor", 1, 64, 2, vendor="AuthenticAMD"), 251.0,
               {"sys_vendor": "Wiwynn", "product_name": "Custom 1S"})
#: a KVM guest with 8 vCPUs of a Xeon Gold 6338 host, 32 GB
VM = Machine(x86_cpuinfo("Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz", 1, 8, 1, hypervisor=True), 31.3,
             {"sys_vendor": "QEMU", "product_name": "Standard PC (Q35 + ICH9, 2009)"})
#: an Ampere Altra server: 80 Neoverse-N1 cores, no SMT, one socket, 256 GB
ARM = Machine(arm_cpuinfo(80), 250.0, {"sys_vendor": "Ampere Computing", "product_name": "Mt.Jade"},
              topology=[(0, c) for c in range(80)])
#: a CPU the TDP table does not know (a Hygon Dhyana), 2 sockets x 32 cores x 2 threads, 128 GB
UNKNOWN = Machine(x86_cpuinfo("Hygon C86 7285 32-core Processor", 2, 32, 2, vendor="HygonGenuine"), 125.0)
#: a Docker container limited to 4 CPUs on the EPYC host
CONTAINER = Machine(EPYC.cpuinfo, 251.0, dict(EPYC.dmi),
                    extra={"/.dockerenv": "", "/sys/fs/cgroup/cpu.max": "400000 100000\n",
                           "/proc/1/cgroup": "0::/system.slice/docker-3f2a.scope\n"})


@dataclass
class FakeGpu:
    name: str
    default_mw: Optional[int] = 400_000
    enforced_mw: Optional[int] = 400_000
    constraints_mw: Optional[tuple] = (100_000, 400_000)
    mig: Optional[tuple] = None  # (current, pending); None: NOT_SUPPORTED
    memory: int = 80 * 2**30


@dataclass
class FakeNvml:
    """The pynvml functions hardware discovery calls, answering for ``gpus``; errors are the
    real pynvml error class and codes."""

    gpus: list
    init_error: Optional[int] = None
    calls: list = field(default_factory=list)

    NVMLError = pynvml.NVMLError
    NVML_DEVICE_MIG_ENABLE = pynvml.NVML_DEVICE_MIG_ENABLE

    @staticmethod
    def _val(v):
        if v is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return v

    def nvmlInit(self):
        self.calls.append("init")
        if self.init_error is not None:
            raise pynvml.NVMLError(self.init_error)

    def nvmlShutdown(self):
        self.calls.append("shutdown")

    def nvmlDeviceGetCount(self):
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetName(self, h):
        return self.gpus[h].name

    def nvmlDeviceGetUUID(self, h):
        return f"GPU-{h:08d}-fake"

    def nvmlDeviceGetMemoryInfo(self, h):
        return SimpleNamespace(total=self.gpus[h].memory, free=0, used=0)

    def nvmlDeviceGetEnforcedPowerLimit(self, h):
        return self._val(self.gpus[h].enforced_mw)

    def nvmlDeviceGetPowerManagementDefaultLimit(self, h):
        return self._val(self.gpus[h].default_mw)

    def nvmlDeviceGetPowerManagementLimitConstraints(self, h):
        return list(self._val(self.gpus[h].constraints_mw))

    def nvmlDeviceGetMigMode(self, h):
        return list(self._val(self.gpus[h].mig))
