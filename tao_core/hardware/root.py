"""The file tree hardware discovery reads: ``/`` on a live machine, or a folder that holds a
copy of the files it reads (``proc/cpuinfo``, ``sys/class/dmi/id/...``) for tests and for
describing another machine. Nothing here needs root: unreadable files count as absent.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from tao_core.errors import InputError
from tao_core.files import read_input_text

__all__ = ["HostRoot", "ROOT_ENV"]

#: environment variable naming the root to read (default ``/``)
ROOT_ENV = "TAO_HOST_ROOT"
#: largest file read (bytes): /proc/cpuinfo of a 512-thread machine is about 1 MB
MAX_FILE_BYTES = 16 * 1024 * 1024


class HostRoot:
    """Reads files below ``root`` (default ``$TAO_HOST_ROOT`` or ``/``). ``live`` is true
    for ``/``: only then may discovery also ask psutil, ``lscpu`` and NVML about this
    machine."""

    def __init__(self, root: "str | os.PathLike[str] | None" = None) -> None:
        self.root = Path(root if root is not None else os.environ.get(ROOT_ENV) or "/")
        self.live = self.root.resolve() == Path("/")

    def path(self, p: str) -> Path:
        """``p`` (an absolute path of the machine) below the root."""
        return self.root / p.lstrip("/")

    def read(self, p: str) -> Optional[str]:
        """The text of file ``p``, stripped; ``None`` when missing or unreadable."""
        try:
            return read_input_text(self.path(p), "hardware file", max_bytes=MAX_FILE_BYTES).strip()
        except InputError:
            return None

    def exists(self, p: str) -> bool:
        return self.path(p).exists()

    def glob(self, pattern: str) -> list[str]:
        """Absolute machine paths below the root matching ``pattern`` (sorted)."""
        base = self.root
        return sorted("/" + str(q.relative_to(base)) for q in base.glob(pattern.lstrip("/")))

    def __repr__(self) -> str:
        return f"HostRoot({str(self.root)!r})"
