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

Counters: ``energy_uj`` is a microjoule counter that wraps at ``max_energy_range_uj``. A
step is taken as measured only when the power it implies is plausible for the domain: at
most ``max_power_w`` (default :data:`MAX_DOMAIN_POWER_W`) over the interval plus 10 ms (the
counter's update period is about 1 ms). A decrease is one wrap
(``max - previous + current``) when ``max_energy_range_uj`` is known and the wrapped step is
plausible; otherwise it is a *reset* (the counter restarted, e.g. after a CPU hot-plug or a
driver reload). A reset, or a forward jump above the ceiling, is never counted as measured:
the interval's joules are modeled at the domain's last measured power (0 W before any), the
reading's source is ``modeled`` and its method says what happened, and later readings say
how many joules of their total were modeled (:attr:`RaplSource.modeled_j`,
:attr:`RaplSource.resets`). An impossible value (not a whole number, negative, above
``max_energy_range_uj`` or 2^64) is ignored and flagged in the method
(:attr:`RaplSource.impossible`); the joules stay at the last good value, and the next good
value counts the whole interval since it, as a failed read does. A counter that wraps twice
between reads cannot be told from one wrap, so read at least once per
``max_energy_range_uj / peak power`` (about 20 min for a 262 kJ range at 200 W). A counter
that does not move while time passes (seen on some VMs) gives 0 W and is flagged in the
domain's ``method`` and in :attr:`RaplSource.frozen`. A zone whose counter cannot be read
or holds no whole number when the source opens is left out (:attr:`RaplSource.invalid`).

Since the fix for CVE-2020-8694 (Platypus), ``energy_uj`` is readable by root only. An
unreadable counter raises :class:`RaplPermissionError`, whose :class:`RaplDiagnosis` names
the fixes; :func:`tao_core.telemetry.detect.detect` then falls back to the estimator.
"""
from __future__ import annotations

import math
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
_NAME_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_INT_RE = re.compile(r"[+-]?[0-9]{1,40}")
#: highest plausible power of one RAPL domain, watts: twice the highest socket TDP sold
#: (500 W, e.g. Xeon 6980P and EPYC 9965); a step implying more is not a measurement
MAX_DOMAIN_POWER_W = 1000.0
#: energy_uj is a 64-bit counter in the kernel
MAX_COUNTER_UJ = 2 ** 64
#: seconds added to each interval for the plausibility bound (the counter updates about
#: every millisecond, so a read can see up to one update more than the interval holds)
_SLACK_S = 0.01
#: most bytes read from one sysfs attribute (a counter is at most 20 digits)
_MAX_ATTR_BYTES = 4096
#: most zones and folder depth searched under a root (real trees: a few per socket, depth 2)
MAX_ZONES = 1024
MAX_DEPTH = 8

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
    """A sysfs attribute as ASCII text, stripped (ValueError when longer than
    4,096 bytes or not ASCII)."""
    with open(path, "rb") as f:  # module-level ``open``: the one boundary tests replace
        data = f.read(_MAX_ATTR_BYTES + 1)
    if len(data) > _MAX_ATTR_BYTES:
        raise ValueError(f"more than {_MAX_ATTR_BYTES} bytes")
    return data.decode("ascii").strip()


def _read_int(path: Path) -> int:
    """A sysfs attribute holding a whole number (ValueError when it does not)."""
    text = _read_text(path)
    if not _INT_RE.fullmatch(text):
        raise ValueError(f"{text[:24]!r} is not a whole number")
    return int(text)


def _find_zone_dirs(root: Path) -> dict[str, Path]:
    """Zone folder name -> path, flat or nested, each zone once."""
    found: dict[str, Path] = {}
    stack = [(root, 0)]
    seen_real: set[str] = set()
    while stack:
        d, depth = stack.pop()
        if depth > MAX_DEPTH:
            continue
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
                if len(found) > MAX_ZONES:
                    raise RaplUnavailable(RaplDiagnosis(
                        False, str(root), f"more than {MAX_ZONES} RAPL zones under {root}: not a powercap tree"))
            stack.append((p, depth + 1))
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

    raw = sorted((_zone_facts(zid, p) for zid, p in dirs.items()), key=lambda z: (z[1] != "intel-rapl", z[1], z[2]))
    return _under_psys(_named_zones(raw))


def _zone_facts(zid: str, p: Path) -> tuple:
    """(zone_id, controller, indices, kernel name, path, max_energy_range_uj or None) of one
    zone folder; a name or range that cannot be read or is not plausible is left out."""
    m = _ZONE_RE.match(zid)
    assert m is not None
    idx = tuple(int(x) for x in m.group("idx").split(":"))
    try:
        kname = _read_text(p / "name")
    except (OSError, ValueError):
        kname = zid
    if not _NAME_RE.fullmatch(kname):
        kname = zid
    try:
        mx: Optional[int] = _read_int(p / "max_energy_range_uj")
    except (OSError, ValueError):
        mx = None
    if mx is not None and not 0 < mx <= MAX_COUNTER_UJ:
        mx = None
    return zid, m.group("ctl"), idx, kname, p, mx


def _named_zones(raw: list[tuple]) -> list[RaplZone]:
    """Zones with TAO's domain names and parents (see the module doc); a second view
    (mmio) of a counter already read is dropped."""
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
    return zones


def _under_psys(zones: list[RaplZone]) -> list[RaplZone]:
    """With a ``psys`` zone, packages and DRAM lie inside it."""
    psys = next((z.name for z in zones if z.kernel_name == "psys"), None)
    if psys is None:
        return zones
    return [
        RaplZone(z.zone_id, z.path, z.kernel_name, z.name, psys, z.max_energy_range_uj)
        if z.parent is None and z.name != psys and z.kernel_name.startswith(("package", "dram"))
        else z
        for z in zones
    ]


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
    denied: list[str] = []
    invalid: dict[str, str] = {}
    for z in zones:
        why = _first_value(z, denied)[1]
        if why is not None and z.name not in denied:
            invalid[z.name] = why
    bad = set(denied) | set(invalid)
    if denied and len(bad) == len(zones):
        return RaplDiagnosis(
            False, str(r),
            f"permission denied reading energy_uj of {', '.join(denied)} under {r} (root-only since CVE-2020-8694)",
            names, list(PERMISSION_FIXES),
        )
    if len(bad) == len(zones):
        return RaplDiagnosis(False, str(r), _invalid_reason(invalid, r), names)
    reason = f"{len(zones)} zone(s) readable under {r}: {', '.join(n for n in names if n not in bad)}"
    if denied:
        reason += f"; permission denied: {', '.join(denied)}"
    if invalid:
        reason += f"; unusable: {', '.join(f'{n} ({w})' for n, w in invalid.items())}"
    return RaplDiagnosis(True, str(r), reason, names, list(PERMISSION_FIXES) if denied else [])


def _counter_limit(z: RaplZone) -> int:
    return z.max_energy_range_uj if z.max_energy_range_uj else MAX_COUNTER_UJ


def _first_value(z: RaplZone, denied: list[str]) -> tuple[Optional[int], Optional[str]]:
    """(counter value, None), or (None, why the zone is unusable); a zone whose counter
    cannot be opened for permission is added to ``denied``."""
    try:
        v = _read_int(z.path / "energy_uj")
    except PermissionError:
        denied.append(z.name)
        return None, "permission denied"
    except OSError as exc:
        return None, f"energy_uj cannot be read ({exc.strerror or exc})"
    except ValueError as exc:
        return None, f"energy_uj: {exc}"
    if not 0 <= v <= _counter_limit(z):
        return None, f"energy_uj {v} is outside 0..{_counter_limit(z)}"
    return v, None


def _invalid_reason(invalid: dict[str, str], root: Path) -> str:
    return (f"no usable RAPL counter under {root}: "
            + "; ".join(f"{n}: {w}" for n, w in list(invalid.items())[:4])
            + ("" if len(invalid) <= 4 else f"; and {len(invalid) - 4} more"))


def _open_zones(root: Path) -> tuple[list[RaplZone], dict[str, int], list[str], dict[str, str]]:
    """(zones whose counter reads a good value, those values, names denied for permission,
    name -> why a zone is unusable); raises when no zone is usable."""
    zones = discover_zones(root)
    readable: list[RaplZone] = []
    denied: list[str] = []
    invalid: dict[str, str] = {}
    first: dict[str, int] = {}
    for z in zones:
        v, why = _first_value(z, denied)
        if v is not None:
            first[z.name] = v
            readable.append(z)
        elif z.name not in denied:
            invalid[z.name] = why or "unusable"
    if not readable and not denied:
        raise RaplUnavailable(RaplDiagnosis(False, str(root), _invalid_reason(invalid, root), [z.name for z in zones]))
    if not readable:
        raise RaplPermissionError(RaplDiagnosis(
            False, str(root),
            f"permission denied reading energy_uj of {', '.join(denied)} under {root} (root-only since CVE-2020-8694)",
            [z.name for z in zones], list(PERMISSION_FIXES)))
    return readable, first, denied, invalid


class RaplSource(EnergySource):
    """Cumulative joules per RAPL domain since the source was opened (wraps corrected).

    ``frozen_after_s``: a counter unchanged over at least this many seconds is flagged
    frozen (RAPL counters update about every millisecond). ``max_power_w``: the highest
    plausible power of one domain (see the module doc).
    """

    kind = SourceKind.MEASURED_RAPL

    def __init__(
        self,
        root: "str | os.PathLike[str] | None" = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        frozen_after_s: float = 0.05,
        max_power_w: float = MAX_DOMAIN_POWER_W,
    ) -> None:
        if not (max_power_w > 0 and math.isfinite(max_power_w)):
            raise ValueError("max_power_w: give a finite number of watts > 0")
        self.root = resolve_root(root)
        self._clock = clock
        self._frozen_after_s = frozen_after_s
        self.max_power_w = float(max_power_w)
        self._lock = threading.Lock()
        readable, first, denied, invalid = _open_zones(self.root)
        #: domain name -> why its zone was left out (counter unreadable or not a number)
        self.invalid: dict[str, str] = invalid
        #: domains whose counters could not be opened (permission denied)
        self.denied: list[str] = denied
        names = {z.name for z in readable}
        # a parent that cannot be read must not hide its children from the totals
        self.zones: list[RaplZone] = [
            z if z.parent is None or z.parent in names
            else RaplZone(z.zone_id, z.path, z.kernel_name, z.name, None, z.max_energy_range_uj)
            for z in readable
        ]
        t = self._clock()
        self._last_raw = dict(first)
        self._base_t = {n: t for n in first}  # when each domain's last good value was read
        self._last_move_t = {n: t for n in first}
        self._energy_j = {n: 0.0 for n in first}
        self._last_power: dict[str, Optional[float]] = {n: None for n in first}
        #: domain name -> seconds its counter has not moved (only domains now frozen)
        self.frozen: dict[str, float] = {}
        #: domain name -> number of wraps seen
        self.wraps: dict[str, int] = {n: 0 for n in first}
        #: domain name -> number of counter resets (decreases or jumps that are no plausible wrap)
        self.resets: dict[str, int] = {n: 0 for n in first}
        #: domain name -> number of impossible values read (negative, above the range, not a number),
        #: each ignored
        self.impossible: dict[str, int] = {n: 0 for n in first}
        #: domain name -> joules of its total that were modeled, not measured
        self.modeled_j: dict[str, float] = {n: 0.0 for n in first}
        self._measured_power: dict[str, Optional[float]] = {n: None for n in first}
        self.errors: dict[str, str] = {}

    def read(self) -> Reading:
        with self._lock:
            raw: dict[str, "int | str | None"] = {}
            for z in self.zones:
                try:
                    raw[z.name] = _read_int(z.path / "energy_uj")
                except OSError as exc:
                    raw[z.name] = None
                    self.errors[z.name] = f"{type(exc).__name__}: {exc}"
                except ValueError as exc:
                    raw[z.name] = str(exc)
            t = self._clock()
            domains = {z.name: self._step(z, raw[z.name], t) for z in self.zones}
            return Reading(t_s=t, domains=domains)

    def _step(self, z: RaplZone, cur: "int | str | None", t: float) -> DomainReading:
        """The reading of one domain after its counter read ``cur`` (None: the read failed;
        text: what was wrong with the value) at time ``t``."""
        name = z.name
        prev = self._last_raw[name]
        dt = t - self._base_t[name]  # since the last good value
        method = METHOD
        kind = SourceKind.MEASURED_RAPL
        power: Optional[float] = None
        limit = _counter_limit(z)
        if isinstance(cur, int) and not 0 <= cur <= limit:
            cur = f"energy_uj {cur} is outside 0..{limit}"
        if cur is None:
            method += f"; read failed ({self.errors.get(name)}), value held"
        elif isinstance(cur, str):
            self.impossible[name] += 1
            method += f"; IMPOSSIBLE: {cur}, value ignored and joules held until the next good value"
        else:
            bound_uj = self.max_power_w * (max(dt, 0.0) + _SLACK_S) * 1e6
            delta = cur - prev
            if delta < 0 and z.max_energy_range_uj and limit - prev + cur <= bound_uj:
                delta = limit - prev + cur  # one wrap, plausible
                self.wraps[name] += 1
            if delta < 0 or delta > bound_uj:
                self.resets[name] += 1
                what = "went back" if delta < 0 else "jumped"
                implied = (limit - prev + cur) if delta < 0 and z.max_energy_range_uj else delta
                as_power = f" ({'as a wrap: ' if delta < 0 else ''}{implied * 1e-6 / dt:.3g} W)" if dt > 0 else ""
                kind, power, method = self._model_interval(
                    name, dt, method, f"RESET: energy_uj {what} from {prev} to {cur}{as_power}, above the "
                                      f"{self.max_power_w:g} W plausible for one domain")
            else:
                self._track_frozen(name, delta, t, dt)
                self._energy_j[name] += delta * 1e-6
                power = (delta * 1e-6 / dt) if dt > 0 else self._last_power[name]
                self._measured_power[name] = power
            self._last_raw[name] = cur
            self._base_t[name] = t
            self._last_power[name] = power
        if name in self.frozen:
            method += f"; FROZEN: counter unchanged for {self.frozen[name]:.3g} s"
        if self.modeled_j[name] > 0 and kind is SourceKind.MEASURED_RAPL:
            method += f"; includes {self.modeled_j[name]:.6g} J modeled over {self.resets[name]} counter reset(s)"
        return DomainReading(name=name, energy_j=self._energy_j[name], source=kind, method=method,
                             power_w=power, uncertainty=RAPL_UNCERTAINTY, parent=z.parent)

    def _model_interval(self, name: str, dt: float, method: str, problem: str) -> tuple[SourceKind, float, str]:
        """Joules of an interval the counter cannot tell: the last measured power x ``dt``."""
        p = self._measured_power[name]
        basis = f"the last measured {p:.6g} W" if p is not None else "0 W (no earlier measurement)"
        p = p or 0.0
        e = p * max(dt, 0.0)
        self._energy_j[name] += e
        self.modeled_j[name] += e
        return SourceKind.MODELED, p, f"{method}; {problem}; {e:.6g} J over {max(dt, 0.0):.3g} s modeled at {basis}"

    def _track_frozen(self, name: str, delta: int, t: float, dt: float) -> None:
        if delta == 0 and dt > 0:
            if t - self._last_move_t[name] >= self._frozen_after_s:
                self.frozen[name] = t - self._last_move_t[name]
        elif delta != 0:
            self._last_move_t[name] = t
            self.frozen.pop(name, None)
