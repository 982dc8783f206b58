"""Where Backbone Lens keeps its own files (results database, uploads, unpacked datasets), and how they are bounded.

Uploads are written under names the server makes (a content digest and an allowed suffix), never under a
name a client sent; ``uploads/`` and ``datasets/`` are pruned least-recently-used beyond a quota.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from backbones.errors import BackboneError
from backbones.settings import env_number

#: Default quota of each of ``uploads/`` and ``datasets/`` (``$BACKBONES_UPLOAD_QUOTA_MB``).
DEFAULT_QUOTA_MB = 8192


def cache_dir() -> Path:
    """``$BACKBONES_CACHE_DIR``, else ``$XDG_CACHE_HOME/backbone-lens``, else ``~/.cache/backbone-lens``."""
    explicit = os.environ.get("BACKBONES_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "backbone-lens"


def runs_dir() -> Path:
    """``cache_dir()/runs``: one folder per fine-tune run on this machine (its log, CSV and checkpoint).

    The Training runs page lists every run found here without an upload.
    """
    return cache_dir() / "runs"


def checkpoints_index_dir() -> Path:
    """``cache_dir()/checkpoints``: one small JSON file per checkpoint saved on this machine (wherever the
    checkpoint itself lives); the Models page lists them as the user's own."""
    return cache_dir() / "checkpoints"


def folder_quota_bytes() -> int:
    """``$BACKBONES_UPLOAD_QUOTA_MB`` (default 8192) in bytes: the bound of each of uploads/ and datasets/."""
    return int(env_number("BACKBONES_UPLOAD_QUOTA_MB", DEFAULT_QUOTA_MB) * 2**20)


def touch(path: Path) -> None:
    """Mark ``path`` as used now (least-recently-used pruning reads modification times)."""
    try:
        os.utime(path)
    except OSError:
        pass


def _size(path: Path) -> int:
    if path.is_file() or path.is_symlink():
        return path.lstat().st_size
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def prune_least_recently_used(folder: Path, max_bytes: int, *, keep: Iterable[Path] = ()) -> list[Path]:
    """Delete the least recently used entries of ``folder`` until it holds at most ``max_bytes``.

    Entries in ``keep`` (the one just added) and unfinished temporary entries (names starting with a dot)
    are never deleted. Returns what was deleted.
    """
    keep = {Path(k).resolve() for k in keep}
    try:
        entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    except OSError:
        return []
    sized = []
    for p in entries:
        try:
            sized.append((p.lstat().st_mtime, _size(p), p))
        except OSError:
            continue
    total = sum(s for _, s, _ in sized)
    removed = []
    for _, size, p in sorted(sized, key=lambda t: t[0]):
        if total <= max_bytes:
            break
        if p.resolve() in keep:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        total -= size
        removed.append(p)
    return removed


@contextmanager
def building_folder(dest: Path, *, prefix: str = ".building-") -> Iterator[Path]:
    """A fresh temporary folder beside ``dest`` to fill; renamed to ``dest`` when the block succeeds.

    All or nothing: a failure (a bad archive member, a full disk) removes the temporary folder, so ``dest``
    either does not exist or is complete. The dot ``prefix`` keeps it safe from
    :func:`prune_least_recently_used` while it is being written. Renaming onto a ``dest`` another process
    finished first raises ``OSError``.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=dest.parent))
    try:
        yield tmp
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def allowed_suffix(original_name: str, allowed: Iterable[str]) -> str:
    """The lower-case suffix of a client-sent file name when it is one of ``allowed``, else a BackboneError."""
    allowed = tuple(s.lower() for s in allowed)
    suffix = os.path.splitext(str(original_name).replace("\\", "/").rsplit("/", 1)[-1])[1].lower()
    if suffix not in allowed:
        raise BackboneError(f"file type {suffix or '(none)'!r} is not accepted here (accepted: {', '.join(allowed)})")
    return suffix


def write_atomically(dest: Path, write: Callable[[str], object]) -> None:
    """Run ``write(tmp_path)`` on a hidden temporary file beside ``dest``, then rename it to ``dest``.

    A failure (or a crash) never leaves half a file at ``dest``, and the temporary file is removed; the dot
    prefix keeps it safe from :func:`prune_least_recently_used`. Raises ``OSError``.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".partial")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)


def store_upload(data: bytes, original_name: str, *, allowed: Iterable[str], folder: str = "uploads") -> Path:
    """Write uploaded bytes to ``cache_dir()/<folder>/<sha256 prefix><suffix>`` and return the path.

    The client's file name only chooses the suffix, from ``allowed``; the file is written to a temporary
    name and renamed, so a failed write leaves nothing. Call :func:`discard_upload` when the file is refused.
    """
    suffix = allowed_suffix(original_name, allowed)
    root = cache_dir() / folder
    path = root / f"{hashlib.sha256(data).hexdigest()[:16]}{suffix}"
    try:
        if not path.is_file():
            write_atomically(path, lambda tmp: Path(tmp).write_bytes(data))
    except OSError as exc:
        raise BackboneError(f"cannot store the upload ({exc.strerror or exc})") from exc
    touch(path)
    prune_least_recently_used(root, folder_quota_bytes(), keep={path})
    return path


def discard_upload(path: Path) -> None:
    """Remove an upload that was refused, so refused files do not pile up."""
    try:
        Path(path).unlink(missing_ok=True)
    except OSError:
        pass

