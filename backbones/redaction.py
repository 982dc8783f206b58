"""Paths as a visitor of a shared dashboard may see them: relative to the caches, never the server's folders.

The command line prints real paths (its user owns the machine). The dashboard passes every message and
path it shows through :func:`redact_paths` / :func:`display_path`, which name the cache a file is in
(``torch hub cache/checkpoints/resnet50-0676ba61.pth``) and reduce any other absolute path to its last part.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

#: Absolute paths inside a message: a slash-rooted run of path characters (POSIX), or a drive path.
_ABSOLUTE = re.compile(r"(?<![\w:/.])(?:/|[A-Za-z]:\\)[^\s'\"`()<>,;]*")


def cache_roots() -> list[tuple[Path, str]]:
    """``(folder, label)`` for every place the tool keeps files, most specific first; resolved now (env at call time)."""
    from backbones.paths import cache_dir
    from backbones.zoo.downloads import hf_cache_dir
    from backbones.zoo.weights import hub_checkpoint_dir  # torch-free: the sidebar shows notices before torch loads

    roots = [
        (hub_checkpoint_dir().parent, "torch hub cache"),
        (hf_cache_dir(), "Hugging Face cache"),
        (cache_dir(), "Backbone Lens cache"),
    ]
    out = []
    for folder, label in roots:
        for variant in {str(folder), os.path.realpath(folder)}:
            out.append((Path(variant), label))
    return sorted(out, key=lambda r: len(str(r[0])), reverse=True)


def display_path(path: str | os.PathLike | None) -> str:
    """``path`` relative to the cache that holds it (``torch hub cache/checkpoints/x.pth``), else its file name."""
    if path is None or str(path) == "":
        return ""
    text = str(path)
    if re.match(r"[A-Za-z]:\\", text):  # a Windows path in a message from another machine
        return text.rsplit("\\", 1)[-1] or "…"
    p = Path(text)
    if not p.is_absolute():
        return text
    for folder, label in cache_roots():
        try:
            rel = p.relative_to(folder)
        except ValueError:
            continue
        return f"{label}/{rel.as_posix()}" if str(rel) != "." else label
    return p.name or "…"


def redact_paths(text: str) -> str:
    """``text`` with every absolute path replaced by :func:`display_path` of it."""
    return _ABSOLUTE.sub(lambda m: display_path(m.group(0)), str(text))
