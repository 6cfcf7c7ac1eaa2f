"""Find the best telemetry sources on this machine and say why the others were not used.

Order of choice:

- CPU energy: RAPL from the powercap tree (:mod:`~tao_core.telemetry.rapl`); pyRAPL instead
  only when ``prefer_pyrapl=True``; else the model-based estimator
  (:mod:`~tao_core.telemetry.estimator`, labelled ``modeled``) with ``power_curve``, or a
  ``tdp_w`` with the default curve shape, or (nothing given) the curve of this machine's
  discovered hardware (:func:`tao_core.hardware.describe_this_node`; an assumed TDP from
  :func:`~tao_core.telemetry.estimator.default_tdp_w` only if discovery fails), which the
  method label says.
- GPU energy: NVML where pynvml, a driver and a GPU are present (each GPU by energy counter,
  power polls, or modeled from utilization; see :mod:`~tao_core.telemetry.nvml`).
- CPU temperature: hwmon or thermal zones, attached to the CPU domains.

Every candidate (``rapl``, ``pyrapl``, ``nvml``, ``thermal``, ``modeled``) is reported found or
not, chosen or not, and why.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Optional

from tao_core.power.curve import PowerCurve
from tao_core.telemetry.base import EnergySource
from tao_core.telemetry.composite import CompositeSource
from tao_core.telemetry.estimator import ModeledSource, default_tdp_w
from tao_core.telemetry.nvml import NvmlSource, NvmlUnavailable
from tao_core.telemetry.rapl import RaplPermissionError, RaplSource, RaplUnavailable, resolve_root
from tao_core.telemetry.thermal import CpuThermal, diagnose_thermal

__all__ = ["Candidate", "Detection", "detect"]


@dataclass
class Candidate:
    """One telemetry source TAO looked for."""

    name: str  #: rapl, pyrapl, nvml, thermal, modeled
    found: bool
    chosen: bool
    reason: str
    fixes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = {"name": self.name, "found": self.found, "chosen": self.chosen, "reason": self.reason}
        if self.fixes:
            d["fixes"] = list(self.fixes)
        if self.details:
            d["details"] = self.details
        return d


@dataclass
class Detection:
    """The sources chosen (open; close them with :meth:`close`) and the report."""

    sources: list[EnergySource]
    candidates: list[Candidate]
    thermal: Optional[CpuThermal] = None

    @property
    def measured(self) -> bool:
        """True when a measured source (RAPL, pyRAPL or NVML) was chosen."""
        return any(c.chosen for c in self.candidates if c.name in ("rapl", "pyrapl", "nvml"))

    def candidate(self, name: str) -> Candidate:
        return next(c for c in self.candidates if c.name == name)

    def source(self) -> CompositeSource:
        """All chosen sources as one (CPU temperature attached where found)."""
        return CompositeSource(self.sources, thermal=self.thermal)

    def to_dict(self) -> dict[str, Any]:
        return {"candidates": [c.to_dict() for c in self.candidates],
                "chosen": [c.name for c in self.candidates if c.chosen]}

    def close(self) -> None:
        for s in self.sources:
            s.close()

    def __enter__(self) -> "Detection":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _detect_rapl(root: "os.PathLike[str]") -> tuple[Optional[RaplSource], Candidate]:
    """The RAPL source under ``root`` (None when unusable) and its candidate entry."""
    try:
        rapl = RaplSource(root)
    except RaplUnavailable as exc:
        # zones whose counters only root may read are found, not usable
        return None, Candidate("rapl", isinstance(exc, RaplPermissionError), False, exc.diagnosis.reason,
                               list(exc.diagnosis.fixes), {"root": str(root)})
    reason = f"{len(rapl.zones)} zone(s) under {root}: " + ", ".join(z.name for z in rapl.zones)
    if rapl.denied:
        reason += f"; permission denied on {', '.join(rapl.denied)}"
    if rapl.invalid:
        reason += "; left out: " + ", ".join(f"{n} ({why})" for n, why in rapl.invalid.items())
    return rapl, Candidate("rapl", True, False, reason, details={"root": str(root), "domains": [z.name for z in rapl.zones]})


def _detect_nvml(nvml: Any) -> tuple[Optional[NvmlSource], Candidate]:
    """The NVML source (None when no GPU gives energy, power or utilization) and its entry."""
    try:
        nv = NvmlSource(nvml)
        nv.read()
    except NvmlUnavailable as exc:
        return None, Candidate("nvml", False, False, str(exc))
    gpus = nv.status()
    usable = [g for g in gpus if g.mode != "none" and not g.lost]
    details = {"gpus": [{"domain": g.domain, "name": g.name, "mode": g.mode, "lost": g.lost,
                         "power_limit_w": g.power_limit_w, "errors": g.errors} for g in gpus]}
    if not usable:
        nv.close()
        return None, Candidate("nvml", True, False, f"{len(gpus)} GPU(s), none gives energy, power or utilization",
                               details=details)
    return nv, Candidate("nvml", True, True, f"{len(usable)} GPU(s): " + ", ".join(
        f"{g.domain} {g.name} ({g.mode})" for g in usable), details=details)


def detect(
    powercap_root: "str | os.PathLike[str] | None" = None,
    *,
    sysfs_root: "str | os.PathLike[str]" = "/sys",
    nvml: Any = None,
    use_nvml: bool = True,
    prefer_pyrapl: bool = False,
    power_curve: Optional[PowerCurve] = None,
    tdp_w: Optional[float] = None,
    cpus: Optional[float] = None,
) -> Detection:
    """Open the best sources on this machine (see module doc). ``powercap_root``: the RAPL
    tree (default ``$TAO_POWERCAP_ROOT`` or ``/sys/class/powercap``); ``sysfs_root``: where
    hwmon and thermal zones are looked for; ``nvml``: a pynvml stand-in for tests."""
    cands: list[Candidate] = []
    sources: list[EnergySource] = []
    cpu_measured = False

    # --- RAPL ----------------------------------------------------------------------------
    root = resolve_root(powercap_root)
    rapl, rapl_c = _detect_rapl(root)

    # --- pyRAPL --------------------------------------------------------------------------
    pyrapl_c: Candidate
    if prefer_pyrapl:
        try:
            from tao_core.telemetry.pyrapl_backend import PyRaplSource, PyRaplUnavailable  # noqa: PLC0415
            try:
                src = PyRaplSource()
                pyrapl_c = Candidate("pyrapl", True, True, "pyRAPL chosen explicitly (prefer_pyrapl=True)")
                sources.append(src)
                cpu_measured = True
                if rapl is not None:
                    rapl.close()
                    rapl = None
                    rapl_c.reason += "; not chosen: pyRAPL asked for"
            except PyRaplUnavailable as exc:
                pyrapl_c = Candidate("pyrapl", False, False, str(exc))
        except ImportError as exc:  # pragma: no cover
            pyrapl_c = Candidate("pyrapl", False, False, str(exc))
    else:
        try:
            import importlib.util  # noqa: PLC0415

            installed = importlib.util.find_spec("pyRAPL") is not None
        except (ImportError, ValueError):
            installed = False
        pyrapl_c = Candidate(
            "pyrapl", installed, False,
            "installed; optional backend, used only when chosen explicitly (prefer_pyrapl=True)"
            if installed else "pyRAPL not installed (optional: pip install 'tao-energy[rapl]')",
        )
    if rapl is not None:
        sources.append(rapl)
        rapl_c.chosen = True
        cpu_measured = True

    # --- NVML ----------------------------------------------------------------------------
    nv, nvml_c = _detect_nvml(nvml) if use_nvml else (None, Candidate("nvml", False, False,
                                                                       "not looked for (use_nvml=False)"))
    if nv is not None:
        sources.append(nv)

    # --- thermal -------------------------------------------------------------------------
    th_diag = diagnose_thermal(sysfs_root)
    thermal = CpuThermal(sysfs_root) if th_diag.available else None
    thermal_c = Candidate("thermal", th_diag.available, th_diag.available, th_diag.reason,
                          details={"sensors": th_diag.sensors} if th_diag.sensors else {})

    # --- modeled -------------------------------------------------------------------------
    if cpu_measured:
        modeled_c = Candidate("modeled", True, False, "not needed: CPU energy is measured")
    else:
        if power_curve is not None:
            m = ModeledSource(power_curve, cpus=cpus)
            why = "given power curve"
        elif tdp_w is not None:
            m = ModeledSource.from_tdp(tdp_w, cpus=cpus)
            why = f"given TDP {tdp_w:g} W with the default curve shape"
        else:
            m, why = _discovered_model(cpus)
        sources.insert(0, m)
        modeled_c = Candidate(
            "modeled", True, True,
            f"no measured CPU energy ({'RAPL: ' + rapl_c.reason}); estimating node power from CPU utilization ({why})",
            details={"method": m.method, "uncertainty": m.uncertainty},
        )

    cands = [rapl_c, pyrapl_c, nvml_c, thermal_c, modeled_c]
    return Detection(sources=sources, candidates=cands, thermal=thermal)


def _discovered_model(cpus: Optional[float]) -> tuple[ModeledSource, str]:
    """No curve or TDP given: the model of this machine's discovered hardware
    (:func:`tao_core.hardware.describe_this_node`); if discovery fails, an assumed TDP."""
    from tao_core.hardware import describe_this_node

    try:
        d = describe_this_node(cpus=cpus)
    except Exception as exc:  # noqa: BLE001 - any failure of discovery: the assumed TDP, said so
        tdp = default_tdp_w()
        return (ModeledSource.from_tdp(tdp, cpus=cpus, curve_label=f"assumed TDP {tdp:g} W (50 W + 10 W per CPU) x "
                                       "default SPECpower shape"),
                f"no curve or TDP given and hardware discovery failed ({type(exc).__name__}): assumed TDP {tdp:g} W "
                "with the default curve shape")
    prov = d.model.provenance
    nt = d.node_type
    src = ModeledSource(nt.power_curve, cpus=cpus if cpus is not None else nt.cpus, uncertainty=prov.uncertainty,
                        curve_label=f"curve of the discovered hardware {nt.name} ({prov.origin})")
    return src, f"no curve or TDP given: the curve of this machine's discovered hardware, {nt.name} ({prov.method})"
