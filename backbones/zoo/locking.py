"""A cross-process file lock that leaves no lock file behind, and undoing what a failed download created.

Used by the downloads: two processes (or two dashboard sessions) asking for one file take turns, the second finds the
file present; after a failure the caches hold exactly what they held before.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from backbones.errors import CancelledError

_LOCK_POLL_S = 0.05
_ON_WAIT_S = 0.25


def check_cancel(cancel: threading.Event | None, what: str) -> None:
    if cancel is not None and cancel.is_set():
        raise CancelledError(f"download of {what} cancelled")


@contextlib.contextmanager
def file_lock(
    path: Path, *, cancel: threading.Event | None = None, on_wait: Callable[[], None] | None = None
) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created and removed here), waiting as long as another holder works.

    The lock file is deleted on release so no ``.lock`` stays behind; a waiter that then holds a lock on the deleted
    file notices (the inode at ``path`` changed) and locks the new file instead. While waiting, ``cancel`` is checked
    every poll and ``on_wait()`` is called about four times a second (a progress redraw, which may itself stop the
    wait, or a deadline check).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    last_call = time.monotonic()
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # a failed download that created the folder removed it again: make it anew
            path.parent.mkdir(parents=True, exist_ok=True)
            continue
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    check_cancel(cancel, path.name.removesuffix(".lock"))
                    if on_wait is not None and time.monotonic() - last_call >= _ON_WAIT_S:
                        last_call = time.monotonic()
                        on_wait()
                    time.sleep(_LOCK_POLL_S)
            try:
                mine = os.stat(path)
                held = os.fstat(fd)
                current = (mine.st_dev, mine.st_ino) == (held.st_dev, held.st_ino)
            except FileNotFoundError:
                current = False
        except BaseException:
            os.close(fd)
            raise
        if current:
            break
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        os.close(fd)


def list_entries(root: Path) -> set[Path]:
    if not root.exists():
        return set()
    return {root, *root.rglob("*")}


def missing_dirs(folder: Path) -> list[Path]:
    """``folder`` and its ancestors that do not exist yet, nearest first (what a failed call must not leave)."""
    return [p for p in (folder, *folder.parents) if not p.exists()]


def remove_empty(folders: list[Path]) -> None:
    for folder in folders:  # rmdir refuses non-empty folders: whatever someone else put there stays
        with contextlib.suppress(OSError):
            folder.rmdir()


def remove_new(before: set[Path], roots: list[Path]) -> None:
    """Delete whatever appeared under ``roots`` since ``before`` was taken (files first, then emptied folders)."""
    new = [p for root in roots for p in list_entries(root) if p not in before]
    for path in sorted(new, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            if path.is_dir() and not path.is_symlink():
                path.rmdir()
            else:
                path.unlink()
