"""The one safe unpacker for every archive a user hands us (dataset uploads, ``eval x.zip``).

An archive is untrusted input. Every member name is normalised first (``\\`` to ``/``,
drive letters, Unicode look-alikes of ``/``, ``\\`` and ``..``), then refused when its
target would not lie inside the destination; links, devices and FIFOs are refused;
limits on total unpacked bytes, member count, compression ratio and folder depth are
checked from the directory before anything is written, and the byte limit again while
writing. Members are written into a fresh temporary folder that is renamed into place
only when everything succeeded, so a refused or broken archive (a CRC error, a full
disk) leaves nothing behind. Unpacked datasets live under ``cache_dir()/datasets`` by
content digest and are pruned least-recently-used beyond a quota (:mod:`backbones.paths`).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path

from backbones.errors import DatasetError
from backbones.paths import (
    DiskCost,
    block_size,
    building_folder,
    cache_dir,
    estimate_cost,
    prune_least_recently_used,
    touch,
    upload_quota,
)
from backbones.settings import env_number

#: Archives whose members compress better than this are refused (zip bombs compress ~1000:1).
_RATIO_CHECK_FROM = 1 << 20  # small members may compress well (text, blank images) and cannot hurt


@dataclass(frozen=True)
class ArchiveLimits:
    """What one archive may unpack to. Defaults: 2 GiB, 50,000 files, ratio 200, 32 folders deep.

    Each can be set with an environment variable (``BACKBONES_ARCHIVE_MAX_BYTES``,
    ``BACKBONES_ARCHIVE_MAX_FILES``, ``BACKBONES_ARCHIVE_MAX_RATIO``, ``BACKBONES_ARCHIVE_MAX_DEPTH``).
    """

    max_bytes: int = 2 << 30
    max_files: int = 50_000
    max_ratio: int = 200
    max_depth: int = 32

    @classmethod
    def from_env(cls) -> ArchiveLimits:
        d = cls()
        return cls(
            max_bytes=env_number("BACKBONES_ARCHIVE_MAX_BYTES", d.max_bytes, integer=True),
            max_files=env_number("BACKBONES_ARCHIVE_MAX_FILES", d.max_files, integer=True),
            max_ratio=env_number("BACKBONES_ARCHIVE_MAX_RATIO", d.max_ratio, integer=True),
            max_depth=env_number("BACKBONES_ARCHIVE_MAX_DEPTH", d.max_depth, integer=True),
        )


def _is_junk(part: str) -> bool:
    """Hidden files and folders (.DS_Store, ._x resource forks, __MACOSX): skipped, never refused."""
    return part.startswith(".") or part.startswith("__")


def _refuse(label: str, name: str, why: str) -> DatasetError:
    shown = name.encode("unicode_escape").decode("ascii")[:120]  # no control characters in a message
    return DatasetError(f"{label}: member '{shown}' {why}; archive refused")


def member_parts(name: str, *, label: str = "archive", max_depth: int = 32) -> tuple[str, ...]:
    """The relative path of an archive member as folder parts, or a :class:`DatasetError`.

    Windows separators and drive letters are normalised *before* any check, so
    ``\\srv\\app\\x.py``, ``C:\\x`` and ``..\\x`` are all seen for what they are.
    """
    if "\x00" in name:
        raise _refuse(label, name, "has a NUL character in its name")
    text = name.replace("\\", "/")
    if re.match(r"^[A-Za-z]:", text) or text.startswith("/"):
        raise _refuse(label, name, "has an absolute path")
    parts = tuple(p for p in text.split("/") if p not in ("", "."))
    for part in parts:
        # Fullwidth solidus, dots and the like become '/', '\\' and '..' under NFKC on some systems.
        folded = unicodedata.normalize("NFKC", part)
        if part == ".." or folded.strip() in ("..", ".") or any(c in folded for c in "/\\") or ":" in folded:
            raise _refuse(label, name, "leaves the destination folder")
    if len(parts) > max_depth:
        raise _refuse(label, name, f"is nested more than {max_depth} folders deep")
    return parts


def _kind(info: zipfile.ZipInfo) -> str:
    mode = info.external_attr >> 16
    if info.create_system == 3 and stat.S_IFMT(mode):  # Unix-made archives record the file type
        if stat.S_ISLNK(mode):
            return "a symbolic link"
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            return "a device or special file"
    return "dir" if info.is_dir() else "file"


def _plan(archive: zipfile.ZipFile, label: str, limits: ArchiveLimits) -> list[tuple[zipfile.ZipInfo, tuple[str, ...]]]:
    """Check every member against the limits before writing anything; the files to write."""
    members = archive.infolist()
    files = [m for m in members if not m.is_dir()]
    if len(files) > limits.max_files:
        raise DatasetError(f"{label}: {len(files):,} files, more than the {limits.max_files:,} allowed")
    total = sum(m.file_size for m in files)
    if total > limits.max_bytes:
        raise DatasetError(
            f"{label}: {total / 2**30:.2f} GiB uncompressed, over the {limits.max_bytes / 2**30:.2f} GiB limit"
        )
    plan = []
    for m in members:
        parts = member_parts(m.filename, label=label, max_depth=limits.max_depth)
        kind = _kind(m)
        if kind not in ("dir", "file"):
            raise _refuse(label, m.filename, f"is {kind}")
        if (m.file_size > _RATIO_CHECK_FROM
                and m.file_size > limits.max_ratio * max(m.compress_size, 1)):
            raise _refuse(label, m.filename, f"expands more than {limits.max_ratio}:1 (a zip bomb?)")
        if kind == "file" and parts and not any(_is_junk(p) for p in parts):
            plan.append((m, parts))
    return plan


def _extract(archive: zipfile.ZipFile, plan, into: Path, label: str, limits: ArchiveLimits) -> None:
    root = os.path.realpath(into)
    written = 0
    for m, parts in plan:
        target = into.joinpath(*parts)
        if not os.path.realpath(target).startswith(root + os.sep):
            raise _refuse(label, m.filename, "leaves the destination folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with archive.open(m) as src, open(target, "xb") as out:
                while chunk := src.read(1 << 20):
                    written += len(chunk)
                    if written > limits.max_bytes:
                        raise DatasetError(f"{label}: unpacks to more than the {limits.max_bytes / 2**30:.2f} GiB limit")
                    out.write(chunk)
        except FileExistsError as exc:  # two names that are one file here (case, normalisation)
            raise _refuse(label, m.filename, "appears twice") from exc
        except (zipfile.BadZipFile, RuntimeError, EOFError, zipfile.LargeZipFile, NotImplementedError) as exc:
            raise DatasetError(f"{label}: cannot extract a member ({type(exc).__name__}: broken or encrypted archive)") from exc
        except OSError as exc:
            raise DatasetError(f"{label}: cannot write the unpacked files ({exc.strerror or exc})") from exc


def _check_budget(plan, dest: Path, label: str, budget: DiskCost) -> None:
    """Refuse an archive whose files would cost more blocks or inodes than ``budget``, before writing any."""
    folders = {parts[:i] for _, parts in plan for i in range(1, len(parts))}
    cost = estimate_cost((m.file_size for m, _ in plan), len(folders) + 1, block=block_size(dest.parent))
    if not cost.fits(budget):
        raise DatasetError(
            f"{label}: unpacks to {cost.describe()}, more than the upload quota of {budget.describe()} "
            "(BACKBONES_UPLOAD_QUOTA_MB, BACKBONES_UPLOAD_MAX_FILES)"
        )


def _dataset_folder(dest: Path) -> Path:
    entries = [p for p in dest.iterdir() if not _is_junk(p.name)]
    if len(entries) == 1 and entries[0].is_dir():
        inner = entries[0]
        # One wrapper folder around the class folders ("flowers/daisy/1.jpg"), not a single class.
        if any(p.is_dir() for p in inner.iterdir() if not _is_junk(p.name)):
            return inner
    return dest


def unpack_archive(
    source: bytes | str | os.PathLike,
    dest: str | os.PathLike,
    *,
    label: str | None = None,
    limits: ArchiveLimits | None = None,
    budget: DiskCost | None = None,
) -> Path:
    """Unpack a zip archive into ``dest`` (which must not exist yet), all or nothing; returns ``dest``.

    ``budget``: what the unpacked files may cost the disk (blocks and inodes, :class:`~backbones.paths.DiskCost`),
    checked from the archive's directory before anything is written.
    """
    limits = limits or ArchiveLimits.from_env()
    data = bytes(source) if isinstance(source, (bytes, bytearray, memoryview)) else None
    label = label or ("upload.zip" if data is not None else Path(source).name)
    dest = Path(dest)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data) if data is not None else Path(source))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise DatasetError(f"{label}: not a zip archive ({type(exc).__name__})") from exc
    with archive:
        plan = _plan(archive, label, limits)
        if budget is not None:
            _check_budget(plan, dest, label, budget)
        with building_folder(dest, prefix=".unpacking-") as tmp:
            _extract(archive, plan, tmp, label, limits)
    return dest


def unpack_dataset(
    source: bytes | str | os.PathLike,
    *,
    dest: str | os.PathLike | None = None,
    label: str | None = None,
    limits: ArchiveLimits | None = None,
) -> Path:
    """Unpack a ``.zip`` of class folders and return the dataset folder for :func:`read_dataset`.

    Without ``dest`` the archive goes to ``cache_dir()/datasets/<sha256 prefix>``, so the
    same upload is unpacked once and shared; that folder is pruned least-recently-used
    beyond ``$BACKBONES_UPLOAD_QUOTA_MB`` (blocks and inodes) and ``$BACKBONES_UPLOAD_MAX_FILES``, and an archive
    that alone would cost more is refused before it is unpacked. When everything sits in one top-level folder
    that holds the class folders, that folder is returned.
    """
    data = bytes(source) if isinstance(source, (bytes, bytearray, memoryview)) else None
    if dest is None:
        if data is None:
            try:
                data = Path(source).read_bytes()
            except OSError as exc:
                raise DatasetError(f"{Path(source).name}: cannot read ({exc.strerror or exc})") from exc
            label = label or Path(source).name
        folder = cache_dir() / "datasets"
        target = folder / hashlib.sha256(data).hexdigest()[:16]
        quota = upload_quota()
        if not target.is_dir():
            try:
                unpack_archive(data, target, label=label, limits=limits, budget=quota)
            except FileExistsError:  # another session unpacked the same upload first
                pass
            except OSError as exc:
                if not target.is_dir():
                    raise DatasetError(f"{label or 'upload.zip'}: cannot unpack ({exc.strerror or exc})") from exc
        touch(target)
        prune_least_recently_used(folder, quota.bytes, max_files=quota.files, keep={target})
        return _dataset_folder(target)
    target = Path(dest)
    if not (target.is_dir() and any(target.iterdir())):
        if target.is_dir():
            target.rmdir()
        unpack_archive(data if data is not None else source, target, label=label, limits=limits)
    return _dataset_folder(target)
