"""Fitted power curves kept between runs, one small JSON file per hardware model.

Where the telemetry measures (RAPL, NVML), the controller fits each node type's curve to
the readings (:class:`tao_core.control.model.NodeModel`). :func:`remember_fit` stores such a
fit under the node's hardware key, and :func:`tao_core.hardware.describe_this_node` starts
the next run from it, so a node type begins calibrated.

Folder: ``$XDG_CACHE_HOME/tao/curves`` (default ``~/.cache/tao/curves``), or the folder
given. File ``<hardware key>.json``::

    {"format": "tao-fitted-curve", "version": 1, "hardware_key": "...",
     "points_w": [11 watts at 0..100 % CPU utilization], "samples": 1200,
     "rms_error_w": 3.1, "source": "measured-rapl", "saved_at": "2026-12-01T10:00:00+00:00"}

A file that cannot be read, is not that format, or has another ``version`` is ignored with
a warning (:class:`FittedCurveWarning`) and rewritten at the next :func:`remember_fit`.
Files are written whole through :func:`tao_core.files.write_output`.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from tao_core.errors import InputError
from tao_core.files import load_json_file, write_output
from tao_core.power.curve import PowerCurve

if TYPE_CHECKING:  # pragma: no cover
    from tao_core.control.model import ModelSnapshot

__all__ = [
    "FORMAT", "VERSION", "FittedCurve", "FittedCurveStore", "FittedCurveWarning", "MEASURED_SOURCES",
    "MIN_SAMPLES", "default_cache_dir", "remember_fit",
]

log = logging.getLogger("tao_core.power")

FORMAT = "tao-fitted-curve"
VERSION = 1
#: telemetry sources whose readings a fit may learn from (a modeled source would only
#: teach the curve back to itself)
MEASURED_SOURCES = ("measured-rapl", "measured-nvml")
#: fewest samples a fit needs before it is kept
MIN_SAMPLES = 30
#: largest cache file read (bytes)
MAX_FILE_BYTES = 64 * 1024


class FittedCurveWarning(UserWarning):
    """A cached fitted curve was unusable and is ignored."""


@dataclass(frozen=True)
class FittedCurve:
    """A curve fitted to measured telemetry: 11 watts, samples, RMS residual (W), source."""

    hardware_key: str
    curve: PowerCurve
    samples: int
    rms_error_w: Optional[float]
    source: str
    saved_at: str

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "hardware_key": self.hardware_key,
                "points_w": list(self.curve.points_w), "samples": self.samples,
                "rms_error_w": self.rms_error_w, "source": self.source, "saved_at": self.saved_at}


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/tao/curves``, or ``~/.cache/tao/curves``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tao" / "curves"


def _file_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", key)[:200] + ".json"


def _parse(doc: Any, key: str) -> FittedCurve:
    """A FittedCurve from a parsed file, or ValueError naming what is wrong."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} file")
    if doc.get("version") != VERSION:
        raise ValueError(f"version {doc.get('version')!r}, this TAO reads version {VERSION}")
    if doc.get("hardware_key") != key:
        raise ValueError(f"hardware_key {doc.get('hardware_key')!r} is not {key!r}")
    pts = doc.get("points_w")
    if (not isinstance(pts, list) or len(pts) != 11
            or not all(isinstance(p, (int, float)) and not isinstance(p, bool) for p in pts)):
        raise ValueError(f"points_w: expected 11 numbers (watts at 0, 10, ..., 100 %), got {pts!r}")
    samples = doc.get("samples")
    if not isinstance(samples, int) or samples < 0:
        raise ValueError("samples: expected a whole number >= 0")
    rms = doc.get("rms_error_w")
    if rms is not None and not isinstance(rms, (int, float)):
        raise ValueError("rms_error_w: expected a number or null")
    return FittedCurve(key, PowerCurve(tuple(float(p) for p in pts)), samples,
                       None if rms is None else float(rms), str(doc.get("source", "")), str(doc.get("saved_at", "")))


class FittedCurveStore:
    """The folder of fitted curves (default :func:`default_cache_dir`)."""

    def __init__(self, directory: "str | os.PathLike[str] | None" = None) -> None:
        self.directory = Path(directory) if directory is not None else default_cache_dir()

    def path_for(self, hardware_key: str) -> Path:
        return self.directory / _file_name(hardware_key)

    def load(self, hardware_key: str) -> Optional[FittedCurve]:
        """The stored fit of ``hardware_key``; ``None`` when there is none or it is unusable
        (then with a :class:`FittedCurveWarning`; the next save rewrites it)."""
        path = self.path_for(hardware_key)
        if not path.exists():
            return None
        try:
            return _parse(load_json_file(path, "fitted curve", max_bytes=MAX_FILE_BYTES), hardware_key)
        except (InputError, ValueError) as exc:
            msg = f"fitted curve {path}: {exc}; ignored, it is rewritten at the next fit"
            log.warning(msg)
            warnings.warn(msg, FittedCurveWarning, stacklevel=2)
            return None

    def save(self, fit: FittedCurve) -> Path:
        """Write ``fit`` (whole, or not at all) and return its path."""
        self.directory.mkdir(parents=True, exist_ok=True)
        return write_output(self.path_for(fit.hardware_key), json.dumps(fit.to_json(), indent=1) + "\n",
                            "fitted curve")


def remember_fit(snapshot: "ModelSnapshot", hardware_key: str, source: str, *,
                 store: Optional[FittedCurveStore] = None, min_samples: int = MIN_SAMPLES) -> Optional[Path]:
    """Keep the fitted curve of ``snapshot`` (``Controller.fitted_models()[type name]``) for
    ``hardware_key`` when it was fitted to a measured source (``measured-rapl`` or
    ``measured-nvml``, the :class:`~tao_core.telemetry.base.SourceKind` value) from at least
    ``min_samples`` samples. Returns the file written, or ``None`` (nothing kept)."""
    src = str(getattr(source, "value", source))
    if src not in MEASURED_SOURCES or snapshot.samples < min_samples:
        return None
    fit = FittedCurve(hardware_key, PowerCurve(tuple(snapshot.fitted_w)), int(snapshot.samples),
                      snapshot.rms_error_w, src,
                      _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    return (store or FittedCurveStore()).save(fit)
