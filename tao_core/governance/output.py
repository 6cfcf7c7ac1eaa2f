"""Writing reports: JSON, Markdown (PNG plots beside it), HTML (plots embedded) or the Model
Documentation Form items alone (``mdf``: Markdown text to paste into the form), all
through ``tao_core.files``: every file is written whole or not at all (the Markdown and
its plots together), never over anything but a regular file, and never over an input."""
from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Mapping, Optional, Sequence, Tuple, Union

from tao_core.errors import InputError, ParameterError
from tao_core.files import OutputSet

PathLike = Union[str, "os.PathLike[str]"]
FORMATS = ("json", "md", "html", "mdf")


def report_json_bytes(report: Mapping[str, Any]) -> bytes:
    return (json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")


def write_report(report: Mapping[str, Any], path: PathLike, fmt: str = "json", *, field: str = "path",
                 inputs: Sequence[Tuple[str, Optional[PathLike]]] = ()) -> list[pathlib.Path]:
    """Write ``report`` as ``fmt`` (json, md, html or mdf) to ``path``; returns the files
    written (Markdown also writes its PNG plots beside it, ``<stem>-<plot>.png``).
    ``field`` names the path in errors; ``inputs``: (field, path) pairs none of the outputs
    may be. Raises ``InputError`` (one line; nothing written) when a target is a folder,
    device, FIFO or link, its folder is missing or read-only, or it is an input."""
    fmt = str(fmt).lower()
    if fmt not in FORMATS:
        raise ParameterError("fmt", fmt, f"must be one of {', '.join(FORMATS)}")
    path = check_report_targets(path, fmt, field=field, inputs=inputs)  # refuse bad targets before rendering
    if fmt == "json":
        return _write_all([(field, path, report_json_bytes(report))], inputs)
    from tao_core.governance import render

    if fmt == "html":
        return _write_all([(field, path, render.render_html(report).encode("utf-8"))], inputs)
    if fmt == "mdf":
        return _write_all([(field, path, render.render_mdf(report).encode("utf-8"))], inputs)
    pngs = render.render_pngs(report)
    targets = {name: path.with_name(f"{path.stem}-{name}.png") for name in pngs}
    text = render.render_markdown(report, {name: p.name for name, p in targets.items()})
    files = [(f"{field} plot {name}", targets[name], data) for name, data in pngs.items()]
    return _write_all(files + [(field, path, text.encode("utf-8"))], inputs)


def check_report_targets(path: PathLike, fmt: str, *, field: str = "path",
                         inputs: Sequence[Tuple[str, Optional[PathLike]]] = ()) -> pathlib.Path:
    """``path`` when ``write_report`` may write ``fmt`` there (and, for Markdown, its plots
    beside it); ``InputError`` naming ``field`` otherwise. Writes nothing."""
    from tao_core.governance.render import PLOT_TITLES

    path = pathlib.Path(path)
    plots = [(f"{field} plot {name}", path.with_name(f"{path.stem}-{name}.png")) for name in PLOT_TITLES]
    targets = [(field, path)] + (plots if fmt == "md" else [])
    OutputSet(targets, inputs=inputs)
    for f, p in targets:
        _refuse_precious(p, f)
    return path


def _refuse_precious(path: pathlib.Path, field: str) -> None:
    """A report never replaces a ledger or a key file, whatever the command's inputs."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return
    if head.startswith(b'{"hash":"') and b'"kind":"ledger"' in head.split(b"\n", 1)[0]:
        raise InputError(f"{field} {path}: is a ledger; a ledger is never overwritten: give another path")
    if head.startswith((b"-----BEGIN PRIVATE KEY", b"-----BEGIN PUBLIC KEY")):
        raise InputError(f"{field} {path}: is a key file; give another path")


def _write_all(files: Sequence[Tuple[str, pathlib.Path, bytes]],
               inputs: Sequence[Tuple[str, Optional[PathLike]]]) -> list[pathlib.Path]:
    with OutputSet([(f, p) for f, p, _ in files], inputs=inputs) as outs:
        for f, _, data in files:
            outs[f].write(data)
    return [p for _, p, _ in files]
