"""Numeric settings read from the environment at call time, with one rule for every variable.

Unset or empty means the default; anything that is not a positive number is a one-line error naming the
variable, so a typo in a server's configuration is reported instead of silently ignored.
"""

from __future__ import annotations

import os

from backbones.errors import BackboneError


def env_number(name: str, default: float, *, integer: bool = False) -> float:
    """``$name`` as a positive number (an int when ``integer``), or ``default`` when it is unset or empty."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise BackboneError(f"{name} must be a positive number, not {raw!r}")
    return int(value) if integer else value
