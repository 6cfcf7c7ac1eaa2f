"""Writing reports: JSON, Markdown (PNG plots beside it) or HTML (plots embedded), each
file through a temporary file in the same folder and a rename, so nothing is half written."""
from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Mapping, Union

from tao_core.errors import InputError

PathLike = Union[str, "os.PathLike[str]"]


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def report_json_bytes(report: Mapping[str, Any]) -> bytes:
    return (json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")


def write_report(report: Mapping[str, Any], path: PathLike, fmt: str = "json") -> list[pathlib.Path]:
    """Write ``report`` as ``fmt`` (json, md or html) to ``path``; returns the files
    written (Markdown also writes its PNG plots beside it, ``<stem>-<plot>.png``). Every
    file goes through a temporary file and a rename, so nothing is half written."""
    fmt = fmt.lower()
    if fmt not in ("json", "md", "html"):
        raise InputError(f"--format {fmt}: must be json, md or html")
    path = pathlib.Path(path)
    if not path.parent.exists():
        raise InputError(f"--out {path}: folder {path.parent} does not exist")
    if fmt == "json":
        atomic_write_bytes(path, report_json_bytes(report))
        return [path]
    from tao_core.governance import render

    if fmt == "html":
        atomic_write_bytes(path, render.render_html(report).encode("utf-8"))
        return [path]
    pngs = render.render_pngs(report)
    targets = {name: path.with_name(f"{path.stem}-{name}.png") for name in pngs}
    text = render.render_markdown(report, {name: p.name for name, p in targets.items()})
    written = []
    for name, data in pngs.items():
        atomic_write_bytes(targets[name], data)
        written.append(targets[name])
    atomic_write_bytes(path, text.encode("utf-8"))
    written.append(path)
    return written
