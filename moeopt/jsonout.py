"""Strict JSON for everything moeopt prints or writes: no NaN or Infinity (strict parsers
reject them), ``null`` where a figure does not exist, numpy values as plain numbers."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np


def strict(value: Any) -> Any:
    """JSON-ready: numpy scalars and arrays to Python, NaN and infinities to None, keys to str."""
    if isinstance(value, dict):
        return {str(k): strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict(v) for v in value]
    if isinstance(value, np.ndarray):
        return strict(value.tolist())
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value


def dumps(data: Any, indent: int | None = 2) -> str:
    """``json.dumps`` of :func:`strict` data; anything else JSON cannot hold is its ``str``."""
    return json.dumps(strict(data), indent=indent, default=str, allow_nan=False)
