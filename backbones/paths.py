"""Where Backbone Lens keeps its own files (results database, uploads, unpacked datasets), and how they are bounded.

Uploads are written under names the server makes (a content digest and an allowed suffix), never under a
name a client sent; ``uploads/`` and ``datasets/`` are pruned least-recently-used beyond a quota. The quota counts
what the disk really gives up: allocated blocks plus an inode per file and folder (a zip of 50,000 tiny PNGs costs
its ~200 MB of blocks, not its 4 MB of bytes), and the number of files and folders.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from backbones.errors import BackboneError
from backbones.settings import env_number

#: Default quota of each of ``uploads/`` and ``datasets/`` (``$BACKBONES_UPLOAD_QUOTA_MB``).
DEFAULT_QUOTA_MB = 8192
#: Default number of files and folders each of them may hold (``$BACKBONES_UPLOAD_MAX_FILES``).
DEFAULT_MAX_FILES = 200_000
#: What a file or folder costs beyond its data blocks: its inode (ext4's default inode size).
INODE_BYTES = 256
_DEFAULT_BLOCK = 4096


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


def folder_max_files() -> int:
    """``$BACKBONES_UPLOAD_MAX_FILES`` (default 200,000): files and folders each of uploads/ and datasets/ may hold."""
    return env_number("BACKBONES_UPLOAD_MAX_FILES", DEFAULT_MAX_FILES, integer=True)


@dataclass(frozen=True)
class DiskCost:
    """What entries cost the file system: allocated bytes (blocks plus an inode each) and files (inodes)."""

    bytes: int
    files: int

    def __add__(self, other: DiskCost) -> DiskCost:
        return DiskCost(self.bytes + other.bytes, self.files + other.files)

    def fits(self, quota: DiskCost) -> bool:
        return self.bytes <= quota.bytes and self.files <= quota.files

    def describe(self) -> str:
        return f"{self.files:,} files and folders, {self.bytes / 2**20:.1f} MiB on disk"

    def to_dict(self) -> dict:
        return {"bytes": self.bytes, "files": self.files}


def upload_quota() -> DiskCost:
    """The bound of each of uploads/ and datasets/: ``BACKBONES_UPLOAD_QUOTA_MB`` and ``BACKBONES_UPLOAD_MAX_FILES``."""
    return DiskCost(folder_quota_bytes(), folder_max_files())


def block_size(folder: Path) -> int:
    """The allocation unit of the file system holding ``folder`` (or its nearest existing parent)."""
    probe = Path(folder)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return os.statvfs(probe).f_frsize or _DEFAULT_BLOCK
    except (AttributeError, OSError):  # no statvfs (Windows)
        return _DEFAULT_BLOCK


def _allocated(st: os.stat_result) -> int:
    blocks = getattr(st, "st_blocks", None)
    if blocks is not None:
        return blocks * 512  # POSIX: st_blocks counts 512-byte units whatever the block size
    unit = getattr(st, "st_blksize", 0) or _DEFAULT_BLOCK
    return -(-st.st_size // unit) * unit


def disk_cost(path: Path) -> DiskCost:
    """What ``path`` (a file, link or folder tree) costs the disk: allocated blocks + an inode each, and a count."""
    try:
        st = os.lstat(path)
    except OSError:
        return DiskCost(0, 0)
    total = DiskCost(_allocated(st) + INODE_BYTES, 1)
    if not stat.S_ISDIR(st.st_mode):
        return total
    nbytes, files = total.bytes, total.files
    for dirpath, dirs, names in os.walk(path):
        for name in (*dirs, *names):
            try:
                entry = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            nbytes += _allocated(entry) + INODE_BYTES
            files += 1
    return DiskCost(nbytes, files)


def estimate_cost(file_sizes: Iterable[int], folders: int, *, block: int = _DEFAULT_BLOCK) -> DiskCost:
    """What files of these sizes (and ``folders`` folders) will cost once written: sizes rounded up to ``block``."""
    nbytes = files = 0
    for size in file_sizes:
        nbytes += -(-size // block) * block + INODE_BYTES
        files += 1
    return DiskCost(nbytes + folders * (block + INODE_BYTES), files + folders)


def prune_least_recently_used(
    folder: Path, max_bytes: int, *, max_files: int | None = None, keep: Iterable[Path] = ()
) -> list[Path]:
    """Delete the least recently used entries of ``folder`` until they cost at most ``max_bytes`` on disk (blocks
    and inodes, :func:`disk_cost`) and hold at most ``max_files`` files and folders.

    Entries in ``keep`` (the one just added) and unfinished temporary entries (names starting with a dot)
    are never deleted. Returns what was deleted.
    """
    keep = {Path(k).resolve() for k in keep}
    try:
        entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    except OSError:
        return []
    costed = []
    for p in entries:
        try:
            costed.append((p.lstat().st_mtime, disk_cost(p), p))
        except OSError:
            continue
    total = sum((c for _, c, _ in costed), DiskCost(0, 0))
    quota = DiskCost(max_bytes, max_files if max_files is not None else total.files)
    removed = []
    for _, cost, p in sorted(costed, key=lambda t: t[0]):
        if total.fits(quota):
            break
        if p.resolve() in keep:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        total = DiskCost(total.bytes - cost.bytes, total.files - cost.files)
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
    prune_least_recently_used(root, folder_quota_bytes(), max_files=folder_max_files(), keep={path})
    return path


def discard_upload(path: Path) -> None:
    """Remove an upload that was refused, so refused files do not pile up."""
    try:
        Path(path).unlink(missing_ok=True)
    except OSError:
        pass

