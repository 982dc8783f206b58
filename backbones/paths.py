"""Where Backbone Lens keeps its own files (results database, uploads, caches)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$BACKBONES_CACHE_DIR``, else ``$XDG_CACHE_HOME/backbone-lens``, else ``~/.cache/backbone-lens``."""
    explicit = os.environ.get("BACKBONES_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "backbone-lens"
