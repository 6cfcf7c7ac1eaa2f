"""Writing a benchmark's JSON result: whole or not at all (a temporary file beside the
target, renamed into place), creating the folder if needed."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_json(doc: Any, path: str | os.PathLike[str], *, indent: int = 1) -> Path:
    """Write ``doc`` as JSON to ``path`` atomically; returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=indent)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p
