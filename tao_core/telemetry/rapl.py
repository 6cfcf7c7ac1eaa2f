"""RAPL energy counters from the Linux powercap sysfs tree, read directly (no helper process).

Root: the ``root`` argument, else the ``TAO_POWERCAP_ROOT`` environment variable, else
``/sys/class/powercap``. Every zone and subzone is read: ``intel-rapl:N`` (a package, or
``psys`` on client platforms), ``intel-rapl:N:M`` (its ``core``, ``uncore`` and ``dram``
subzones) and ``intel-rapl-mmio:N``; AMD processors (``amd_energy``/``rapl`` driver) expose
the same ``intel-rapl`` layout and names. Zones may sit flat in the root (as the kernel's
``/sys/class/powercap`` symlinks do) or nested in their parent's folder.

Domain names: the kernel's ``name`` file with the socket index: ``package-0``, ``core-0``,
``uncore-0``, ``dram-0``, ``package-1``, ...; ``psys`` keeps its name.

What contains what (``DomainReading.parent``, so totals count nothing twice):

- ``core-N`` and ``uncore-N`` lie inside ``package-N`` (Intel SDM: the PP0 and PP1 power
  planes are parts of the package domain): parent ``package-N``.
- ``dram-N`` is NOT part of the package domain (the DRAM domain is metered separately; the
  kernel files it under the package zone only for grouping): it is top level, so a node's
  total is package + dram.
- ``psys`` (platform: SoC plus more, on client parts) covers the packages and DRAM, so when
  it is present it is the top-level domain and ``package-N`` and ``dram-N`` get parent
  ``psys``.
- An ``intel-rapl-mmio`` zone with the same name as an MSR zone (``package-0`` twice) is a
  second view of one counter and is skipped.

Counters: ``energy_uj`` is a microjoule counter that wraps at ``max_energy_range_uj``; a
decrease between two reads is taken as one wrap (``max - previous + current``). A counter
that wraps twice between reads cannot be told from one wrap, so read at least once per
``max_energy_range_uj / peak power`` (about 20 min for a 262 kJ range at 200 W). A counter
that does not move while time passes (seen on some VMs) gives 0 W and is flagged in the
domain's ``method`` and in :attr:`RaplSource.frozen`.

Since the fix for CVE-2020-8694 (Platypus), ``energy_uj`` is readable by root only. An
unreadable counter raises :class:`RaplPermissionError`, whose :class:`RaplDiagnosis` names
the fixes; :func:`tao_core.telemetry.detect.detect` then falls back to the estimator.
"""
from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from tao_core.telemetry.base import DomainReading, EnergySource, Reading, SourceKind

__all__ = [
    "DEFAULT_ROOT", "RaplZone", "RaplDiagnosis", "RaplUnavailable", "RaplPermissionError",
    "RaplSource", "resolve_root", "discover_zones", "diagnose",
]

DEFAULT_ROOT = "/sys/class/powercap"
ENV_ROOT = "TAO_POWERCAP_ROOT"
#: relative standard uncertainty given to RAPL joules: RAPL is the processor's own meter of
#: its package/DRAM domains; 5 % is a conservative figure for those domains (it never
#: covers fans, disks, NICs or power-supply losses, which are outside every RAPL domain).
RAPL_UNCERTAINTY = 0.05
METHOD = "powercap sysfs energy_uj"
_ZONE_RE = re.compile(r"^(?P<ctl>[a-z-]*rapl[a-z-]*):(?P<idx>\d+(?::\d+)*)$")

PERMISSION_FIXES = (
    "grant read permission on the counters to a group you are in, until reboot: "
    "sudo chgrp <group> /sys/class/powercap/intel-rapl:*/energy_uj /sys/class/powercap/intel-rapl:*:*/energy_uj "
    "&& sudo chmod g+r /sys/class/powercap/intel-rapl:*/energy_uj /sys/class/powercap/intel-rapl:*:*/energy_uj",
    "make it persistent with a udev rule, e.g. /etc/udev/rules.d/90-powercap.rules: "
    'ACTION=="add", SUBSYSTEM=="powercap", RUN+="/bin/chgrp <group> /sys%p/energy_uj", '
    'RUN+="/bin/chmod g+r /sys%p/energy_uj" (or a systemd-tmpfiles line: '
    "z /sys/class/powercap/intel-rapl:*/energy_uj 0440 root <group> -)",
    "or run a privileged sampler: sudo tao monitor --json > energy.jsonl, and read that file "
    "with tao_core.telemetry.replay.ReplaySource.from_jsonl",
    "note: the counters were made root-only because of CVE-2020-8694; grant read access only "
    "to a trusted group",
)


@dataclass(frozen=True)
class RaplZone:
    """One powercap zone: its folder, domain name and parent domain (``None`` at top level)."""

    zone_id: str  #: folder name, e.g. ``intel-rapl:0:1``
    path: Path
    kernel_name: str  #: contents of ``name``: ``package-0``, ``core``, ``dram``, ``psys``
    name: str  #: domain name TAO uses: ``package-0``, ``core-0``, ``dram-0``, ``psys``
    parent: Optional[str]
    max_energy_range_uj: Optional[int]


@dataclass
class RaplDiagnosis:
    """Why RAPL is or is not usable here, and what would fix it."""

    available: bool
    root: str
    reason: str
    zones: list[str] = field(default_factory=list)
    fixes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"available": self.available, "root": self.root, "reason": self.reason,
                "zones": list(self.zones), "fixes": list(self.fixes)}


class RaplUnavailable(RuntimeError):
    """No usable RAPL zone under the root; ``.diagnosis`` says why."""

    def __init__(self, diagnosis: RaplDiagnosis):
        super().__init__(diagnosis.reason)
        self.diagnosis = diagnosis


class RaplPermissionError(RaplUnavailable, PermissionError):
    """``energy_uj`` exists but cannot be opened; ``.diagnosis.fixes`` names the fixes."""


def resolve_root(root: "str | os.PathLike[str] | None" = None) -> Path:
    """The powercap root: ``root``, else ``$TAO_POWERCAP_ROOT``, else ``/sys/class/powercap``."""
    if root is not None:
        return Path(root)
    env = os.environ.get(ENV_ROOT)
    return Path(env) if env else Path(DEFAULT_ROOT)


def _read_text(path: Path) -> str:
    with open(path, "r") as f:  # module-level ``open``: the one boundary tests replace
        return f.read().strip()


def _read_int(path: Path) -> int:
    return int(_read_text(path))


def _find_zone_dirs(root: Path) -> dict[str, Path]:
    """Zone folder name -> path, flat or nested, each zone once."""
    found: dict[str, Path] = {}
    stack = [root]
    seen_real: set[str] = set()
    while stack:
        d = stack.pop()
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError:
            continue
        for e in entries:
            if not _ZONE_RE.match(e.name) and not e.name.startswith(("intel-rapl", "amd-rapl")):
                continue
            try:
                if not e.is_dir():
                    continue
                real = os.path.realpath(e.path)
            except OSError:
                continue
            if real in seen_real:
                continue
            seen_real.add(real)
            p = Path(e.path)
            if _ZONE_RE.match(e.name) and (p / "energy_uj").exists():
                found.setdefault(e.name, p)
            stack.append(p)
    return found


def discover_zones(root: "str | os.PathLike[str] | None" = None) -> list[RaplZone]:
    """Every RAPL zone under ``root`` (see :func:`resolve_root`), named and parented as the
    module doc says. Raises :class:`RaplUnavailable` when the root is missing or holds none."""
    r = resolve_root(root)
    if not r.is_dir():
        raise RaplUnavailable(RaplDiagnosis(False, str(r), f"no powercap tree at {r} (kernel without powercap/RAPL, a VM or a container that hides /sys/class/powercap)"))
    dirs = _find_zone_dirs(r)
    if not dirs:
        raise RaplUnavailable(RaplDiagnosis(False, str(r), f"no RAPL zone (intel-rapl:N with energy_uj) under {r}"))

    raw = []  # (zone_id, ctl, indices, kernel_name, path, max_range)
    for zid, p in dirs.items():
        m = _ZONE_RE.match(zid)
        assert m is not None
        idx = tuple(int(x) for x in m.group("idx").split(":"))
        try:
            kname = _read_text(p / "name")
        except OSError:
            kname = zid
        try:
            mx = _read_int(p / "max_energy_range_uj")
        except (OSError, ValueError):
            mx = None
        raw.append((zid, m.group("ctl"), idx, kname, p, mx))
    raw.sort(key=lambda z: (z[1] != "intel-rapl", z[1], z[2]))

    top_names: dict[tuple[str, int], str] = {}
    zones: list[RaplZone] = []
    used: set[str] = set()
    for zid, ctl, idx, kname, p, mx in raw:
        if len(idx) == 1:
            name = _top_name(kname, idx[0])
            top_names[(ctl, idx[0])] = name
            parent = None
        else:
            pname = top_names.get((ctl, idx[0]))
            sock = _socket_of(pname, idx[0])
            name = f"{kname}-{sock}" if not re.search(r"-\d+$", kname) else kname
            parent = None if kname.startswith("dram") else pname
        if name in used:
            if ctl != "intel-rapl":
                continue  # a second view (mmio) of a counter already read
            name = f"{name}@{zid}"
        used.add(name)
        zones.append(RaplZone(zid, p, kname, name, parent, mx))

    if any(z.kernel_name == "psys" for z in zones):
        psys = next(z.name for z in zones if z.kernel_name == "psys")
        zones = [
            RaplZone(z.zone_id, z.path, z.kernel_name, z.name, psys, z.max_energy_range_uj)
            if z.parent is None and z.name != psys and z.kernel_name.startswith(("package", "dram"))
            else z
            for z in zones
        ]
    return zones


def _top_name(kname: str, idx: int) -> str:
    if kname == "psys" or re.search(r"-\d+$", kname):
        return kname
    return f"{kname}-{idx}"


def _socket_of(pname: Optional[str], idx: int) -> int:
    if pname:
        m = re.search(r"-(\d+)$", pname)
        if m:
            return int(m.group(1))
    return idx


def diagnose(root: "str | os.PathLike[str] | None" = None) -> RaplDiagnosis:
    """Whether RAPL can be read under ``root``, without keeping anything open."""
    r = resolve_root(root)
    try:
        zones = discover_zones(r)
    except RaplUnavailable as exc:
        return exc.diagnosis
    names = [z.name for z in zones]
    denied = []
    for z in zones:
        try:
            _read_int(z.path / "energy_uj")
        except PermissionError:
            denied.append(z.name)
        except (OSError, ValueError):
            denied.append(z.name)
    if denied and len(denied) == len(zones):
        return RaplDiagnosis(
            False, str(r),
            f"permission denied reading energy_uj of {', '.join(denied)} under {r} (root-only since CVE-2020-8694)",
            names, list(PERMISSION_FIXES),
        )
    reason = f"{len(zones)} zone(s) readable under {r}: {', '.join(n for n in names if n not in denied)}"
    if denied:
        reason += f"; unreadable: {', '.join(denied)}"
    return RaplDiagnosis(True, str(r), reason, names, list(PERMISSION_FIXES) if denied else [])


class RaplSource(EnergySource):
    """Cumulative joules per RAPL domain since the source was opened (wraps corrected).

    ``frozen_after_s``: a counter unchanged over at least this many seconds is flagged
    frozen (RAPL counters update about every millisecond).
    """

    kind = SourceKind.MEASURED_RAPL

    def __init__(
        self,
        root: "str | os.PathLike[str] | None" = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        frozen_after_s: float = 0.05,
    ) -> None:
        self.root = resolve_root(root)
        self._clock = clock
        self._frozen_after_s = frozen_after_s
        self._lock = threading.Lock()
        zones = discover_zones(self.root)
        readable, denied = [], []
        first: dict[str, int] = {}
        for z in zones:
            try:
                first[z.name] = _read_int(z.path / "energy_uj")
                readable.append(z)
            except PermissionError:
                denied.append(z.name)
        if not readable:
            raise RaplPermissionError(
                RaplDiagnosis(
                    False, str(self.root),
                    f"permission denied reading energy_uj of {', '.join(denied)} under {self.root} "
                    "(root-only since CVE-2020-8694)",
                    [z.name for z in zones], list(PERMISSION_FIXES),
                )
            )
        #: domains whose counters could not be opened (permission denied)
        self.denied: list[str] = denied
        self.zones: list[RaplZone] = readable
        names = {z.name for z in readable}
        # a parent that cannot be read must not hide its children from the totals
        self.zones = [
            z if z.parent is None or z.parent in names
            else RaplZone(z.zone_id, z.path, z.kernel_name, z.name, None, z.max_energy_range_uj)
            for z in readable
        ]
        t = self._clock()
        self._last_raw = dict(first)
        self._last_move_t = {n: t for n in first}
        self._energy_j = {n: 0.0 for n in first}
        self._last_t = t
        self._last_power: dict[str, Optional[float]] = {n: None for n in first}
        #: domain name -> seconds its counter has not moved (only domains now frozen)
        self.frozen: dict[str, float] = {}
        #: domain name -> number of wraps seen
        self.wraps: dict[str, int] = {n: 0 for n in first}
        self.errors: dict[str, str] = {}

    def read(self) -> Reading:
        with self._lock:
            raw: dict[str, Optional[int]] = {}
            for z in self.zones:
                try:
                    raw[z.name] = _read_int(z.path / "energy_uj")
                except (OSError, ValueError) as exc:
                    raw[z.name] = None
                    self.errors[z.name] = f"{type(exc).__name__}: {exc}"
            t = self._clock()
            dt = t - self._last_t
            domains: dict[str, DomainReading] = {}
            for z in self.zones:
                cur, prev = raw[z.name], self._last_raw[z.name]
                method = METHOD
                if cur is None:
                    method += f"; read failed ({self.errors.get(z.name)}), value held"
                    power = None
                else:
                    delta = cur - prev
                    if delta < 0:
                        if z.max_energy_range_uj:
                            delta = z.max_energy_range_uj - prev + cur
                            self.wraps[z.name] += 1
                        else:
                            delta = 0
                            method += "; counter went back and max_energy_range_uj is unreadable, interval dropped"
                    if delta == 0 and dt > 0:
                        if t - self._last_move_t[z.name] >= self._frozen_after_s:
                            self.frozen[z.name] = t - self._last_move_t[z.name]
                    elif delta != 0:
                        self._last_move_t[z.name] = t
                        self.frozen.pop(z.name, None)
                    self._energy_j[z.name] += delta * 1e-6
                    self._last_raw[z.name] = cur
                    power = (delta * 1e-6 / dt) if dt > 0 else self._last_power[z.name]
                    self._last_power[z.name] = power
                if z.name in self.frozen:
                    method += f"; FROZEN: counter unchanged for {self.frozen[z.name]:.3g} s"
                domains[z.name] = DomainReading(
                    name=z.name, energy_j=self._energy_j[z.name], source=SourceKind.MEASURED_RAPL,
                    method=method, power_w=power, uncertainty=RAPL_UNCERTAINTY, parent=z.parent,
                )
            self._last_t = t
            return Reading(t_s=t, domains=domains)
