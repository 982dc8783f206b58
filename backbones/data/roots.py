"""Which folders on the server a dashboard visitor may evaluate (``BACKBONES_DATA_ROOTS``).

Off by default: a dashboard served to a group must not let a visitor read the server's disk. An administrator
opens chosen folders with ``BACKBONES_DATA_ROOTS=/data:/mnt/datasets``; a path is accepted only when it resolves,
after following symbolic links, inside one of them. Every refusal is the same message, so it does not reveal
whether a path exists. The command line reads any path its user can (it is the user's own machine).
"""

from __future__ import annotations

import os
from pathlib import Path

from backbones.errors import DatasetError

REFUSED = "not an allowed dataset path: give a folder or CSV inside one of the data roots set by the administrator"


def data_roots() -> tuple[Path, ...]:
    """The configured roots, resolved; empty when server paths are off."""
    raw = os.environ.get("BACKBONES_DATA_ROOTS", "")
    roots = []
    for part in raw.split(os.pathsep):
        part = part.strip()
        if part and os.path.isabs(part):
            resolved = Path(os.path.realpath(part))
            if resolved.is_dir() and resolved not in roots:
                roots.append(resolved)
    return tuple(roots)


def _inside(path: Path, root: Path) -> bool:
    return path == root or str(path).startswith(str(root).rstrip(os.sep) + os.sep)


def resolve_in_roots(text: str, roots: tuple[Path, ...] | None = None) -> Path:
    """The real path of ``text`` when it exists inside a root (relative paths are tried under each root).

    Raises :class:`DatasetError` with one message for everything else: off, outside, missing, unreadable.
    """
    roots = data_roots() if roots is None else tuple(Path(os.path.realpath(r)) for r in roots)
    text = (text or "").strip()
    if not roots or not text or "\x00" in text:
        raise DatasetError(REFUSED)
    candidates = [Path(text)] if os.path.isabs(text) else [root / text for root in roots]
    for candidate in candidates:
        real = Path(os.path.realpath(candidate))
        if any(_inside(real, root) for root in roots) and os.access(real, os.R_OK) and real.exists():
            return real
    raise DatasetError(REFUSED)
