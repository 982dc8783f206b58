"""Bring a weights file downloaded elsewhere into the cache, after checking it is the right one.

``import_weights("squeezenet1_1", "squeezenet1_1-b8a52dc0.pth")`` checks the file against the
official hash (where its source publishes one), loads it into the architecture, then copies it
atomically to where :mod:`backbones.zoo.weights` looks for it. Nothing is cached that would not load.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from backbones.errors import CheckpointError
from backbones.paths import write_atomically
from backbones.zoo.architectures import build_architecture, fit_state_dict
from backbones.zoo.catalog import get_entry
from backbones.zoo.downloads import sha256_of as _sha256  # a module attribute: tests stand in for the digest
from backbones.zoo.weights import resolve_weights, weights_source


def import_weights(name: str, file: str | os.PathLike, *, weights: str = "default") -> Path:
    """Check that ``file`` is ``name``'s official weights and loads, then copy it into the cache.

    torchvision files are checked against the hash prefix in their official
    file name (as torch.hub does after a download), then loaded into the
    architecture; the copy is atomic. Returns the cached path.
    """
    entry = get_entry(name)
    source = weights_source(entry)
    if source.import_refusal:
        raise CheckpointError(f"{name}: {source.import_refusal}")
    info = resolve_weights(entry, weights)
    if info is None:
        raise CheckpointError("choose which weights the file holds (not 'none')")
    src = Path(file)
    if not src.is_file():
        raise CheckpointError(f"{src}: no such file")
    prefix = source.official_digest_prefix(info)
    if prefix:
        digest = _sha256(src)
        if not digest.startswith(prefix):
            raise CheckpointError(
                f"{src.name}: SHA-256 starts {digest[:8]}, but {info.filename} starts {prefix}: "
                "not the official file; load your own weights as a checkpoint instead"
            )
    state = source.read_import(src)
    fit_state_dict(build_architecture(entry), state, label=src.name)
    dest = source.expected_path(entry, info)
    _write_atomically(dest, lambda tmp: source.write_cache_file(src, state, tmp))
    return dest


def _write_atomically(dest: Path, write: Callable[[str], None]) -> None:
    """:func:`backbones.paths.write_atomically`, with a failure reported as a one-line CheckpointError."""
    try:
        write_atomically(dest, write)
    except OSError as exc:
        raise CheckpointError(f"cannot write {dest}: {exc.strerror or exc}") from exc
