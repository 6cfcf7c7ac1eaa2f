"""Process-wide TAO state of this driver (the runtime created by ``tao_ray.init``)."""
from __future__ import annotations

from typing import Any, Optional

runtime: Optional[Any] = None
