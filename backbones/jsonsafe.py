"""Strict JSON for everything the project writes (CLI output, the results store, exports)."""

from __future__ import annotations

import math


def json_safe(obj):
    """``obj`` with NaN/Infinity as None and keys as strings: JSON every reader can parse."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj
