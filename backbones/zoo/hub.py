"""Downloading timm weights into the Hugging Face cache, through the same bounded reader as torchvision files.

One HEAD of our own (no retries, our timeout) whose commit and ETag must be hex hashes, then the bounded,
cancellable reader of :mod:`backbones.zoo.transfer`, into the cache layout huggingface_hub writes
(``blobs/<etag>``, ``snapshots/<commit>/<file>``, ``refs/<revision>``), so timm finds the files offline.
Every path written or deleted is resolved inside the cache first. Configuration and messages are shared
with :mod:`backbones.zoo.downloads`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.client
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

from backbones.callbacks import ByteProgressFn
from backbones.errors import BackboneError, WeightsUnavailableError
from backbones.zoo.downloads import (
    _guard,
    _translate,
    download_timeout,
    failure_message,
    file_name_of,
    hf_cache_dir,
    hf_endpoint,
    inside,
    is_offline,
    offline_message,
)
from backbones.zoo.downloads import shown_value as _shown
from backbones.zoo.locking import check_cancel, file_lock, missing_dirs, remove_empty
from backbones.zoo.transfer import (
    Guard,
    Refused,
    announced_length,
    check_free_space,
    check_redirect,
    check_size,
    max_download_bytes,
    open_url,
    size_limit,
    stream_to,
)

_HEX40 = re.compile(r"[0-9a-f]{40}")
_HEX64 = re.compile(r"[0-9a-f]{64}")




@dataclass(frozen=True)
class HubFile:
    """What a Hub's HEAD says about a file: the commit it resolved to, the ETag, the size, and a redirect."""

    commit: str
    etag: str  # 64 hex: the SHA-256 of an LFS file; 40 hex: the git blob id of a small file
    size: int | None
    location: str | None

    @property
    def sha256(self) -> str | None:
        return self.etag if _HEX64.fullmatch(self.etag) else None


def check_hub_answer(commit: str | None, etag: str | None) -> tuple[str, str]:
    """The commit and ETag a Hub sent, checked: 40 hex digits for a commit, 64 or 40 for an ETag (``W/`` and quotes
    stripped). Anything else is refused: huggingface_hub would name cache files after these values."""
    if not commit:
        raise Refused("the server does not answer like a Hugging Face endpoint: no X-Repo-Commit header")
    if not _HEX40.fullmatch(commit.strip().lower()):
        raise Refused(f"the server's commit {_shown(commit)} is not a 40-digit hex hash; refused")
    tag = (etag or "").strip()
    tag = tag[2:] if tag[:2].upper() == "W/" else tag
    tag = tag.strip('"').lower()
    if not (_HEX64.fullmatch(tag) or _HEX40.fullmatch(tag)):
        raise Refused(f"the server's ETag {_shown(etag or '')} is not a hex hash; refused")
    return commit.strip().lower(), tag


def _head_hub(url: str, guard: Guard) -> HubFile:
    """One HEAD without retries or redirects: fails fast on a dead endpoint; returns the checked metadata."""
    response = open_url(url, method="HEAD", guard=guard, follow_redirects=False)
    with contextlib.closing(response):
        headers = response.headers
        redirect = 300 <= response.status < 400
        commit, etag = check_hub_answer(
            headers.get("X-Repo-Commit"), headers.get("X-Linked-Etag") or headers.get("ETag")
        )
        size = headers.get("X-Linked-Size") or (None if redirect else headers.get("Content-Length"))
        location = headers.get("Location") if redirect else None
    return HubFile(commit, etag, int(size) if size and size.strip().isdigit() else None, location)






def _check_repo_path(filename: str, revision: str) -> None:
    for value, what in ((filename, "file name"), (revision, "revision")):
        parts = value.split("/")
        if not value or value.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in value:
            raise BackboneError(f"{what} {_shown(value)} is not a plain path inside a Hub repository")


class _Placed:
    """Files and folders one Hub download created in the cache, each checked to lie inside it; undone on failure."""

    def __init__(self, cache: Path) -> None:
        self.cache = cache
        self.files: list[Path] = []
        self.folders: list[Path] = []

    def folder(self, path: Path) -> Path:
        self.folders.extend(p for p in missing_dirs(path) if p not in self.folders)
        inside(self.cache, path.parent)
        path.mkdir(parents=True, exist_ok=True)
        return inside(self.cache, path)

    def undo(self) -> None:
        for path in reversed(self.files):
            with contextlib.suppress(OSError, Refused):
                if path.is_symlink() or path.exists():
                    inside(self.cache, path.parent)
                    path.unlink()
        remove_empty(sorted(self.folders, key=lambda p: len(p.parts), reverse=True))


def _place_hub_file(
    placed: _Placed, repo_dir: Path, hub: HubFile, filename: str, revision: str, tmp: Path
) -> Path:
    """Move the verified ``tmp`` to ``blobs/<etag>``, link ``snapshots/<commit>/<filename>`` to it and write
    ``refs/<revision>``: the layout huggingface_hub writes, so timm finds the file offline."""
    blob = inside(placed.cache, repo_dir / "blobs" / hub.etag)
    if not blob.exists():
        os.replace(tmp, blob)
        placed.files.append(blob)
    snapshot = repo_dir / "snapshots" / hub.commit / filename  # returned as the cache names it (timm's path)
    placed.folder(snapshot.parent)
    inside(placed.cache, snapshot.parent)
    if snapshot.is_symlink() or snapshot.exists():
        snapshot.unlink()
    try:
        os.symlink(os.path.relpath(blob, snapshot.parent), snapshot)
    except OSError:  # no symlinks here (some Windows setups): huggingface_hub then keeps a copy in the snapshot
        shutil.copyfile(blob, snapshot)
    placed.files.append(snapshot)
    if revision != hub.commit:
        ref = repo_dir / "refs" / revision
        placed.folder(ref.parent)
        inside(placed.cache, ref.parent)
        fd, tmp_ref = tempfile.mkstemp(dir=ref.parent, prefix=f".{ref.name}.", suffix=".partial")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(hub.commit)
            os.replace(tmp_ref, ref)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_ref)
    return snapshot


def _download_hub(
    url: str, hub: HubFile, blobs: Path, guard: Guard, progress: ByteProgressFn | None, origin: str
) -> Path:
    """The file's bytes into a temporary file in ``blobs`` (ours, inside the cache), size and SHA-256 checked."""
    limit = size_limit(hub.size) if hub.size else max_download_bytes()
    check_size(hub.size, limit)
    check_free_space(blobs, hub.size or 0)
    target = urljoin(url, hub.location) if hub.location else url
    if hub.location:
        check_redirect(origin, target)
    fd, name = tempfile.mkstemp(dir=blobs, prefix=".", suffix=".incomplete")
    tmp = Path(name)
    try:
        digest = hashlib.sha256()
        with open_url(target, guard=guard, method="GET", origin=origin) as response:
            announced = announced_length(response)
            check_size(announced, limit)
            if announced and announced > (hub.size or 0):
                check_free_space(blobs, announced)
            done = stream_to(response, fd, limit=limit, guard=guard, progress=progress, digests=(digest,))
        if hub.size is not None and done != hub.size:
            raise http.client.IncompleteRead(b"", hub.size - done)
        if hub.sha256 is not None and (got := digest.hexdigest()) != hub.sha256:
            raise Refused(f"SHA-256 mismatch: expected {hub.sha256[:12]}…, got {got[:12]}…")
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    return tmp


def fetch_hf(
    repo_id: str,
    filename: str,
    *,
    revision: str | None = None,
    progress: ByteProgressFn | None = None,
    timeout: float | None = None,
    cancel: threading.Event | None = None,
    model: str | None = None,
    manual_dest: Path | None = None,
) -> Path:
    """A file of a Hugging Face repo, in the Hugging Face cache where timm looks; returns the snapshot path.

    Already cached: no request at all. Otherwise one HEAD of our own (timeout, no retries, no redirects) whose
    commit and ETag must be hex hashes, then one GET through the same bounded, cancellable reader as torchvision
    files (real byte progress), the SHA-256 checked against the ETag when it is one, and the file placed the way
    huggingface_hub places it (``blobs/<etag>``, ``snapshots/<commit>/<file>``, ``refs/<revision>``), every path
    resolved to inside the cache first. ``model`` and ``manual_dest`` (where an imported copy would go) only shape
    error messages. Raises :class:`WeightsUnavailableError` in offline mode, :class:`DownloadError` on any failure.
    """
    from huggingface_hub import file_download

    revision = revision or "main"
    _check_repo_path(filename, revision)
    endpoint, cache_dir = hf_endpoint(), hf_cache_dir()
    url = hf_url(repo_id, filename, revision=revision)
    cached = cached_hf(repo_id, filename, revision=revision)
    if cached is not None:
        return cached
    if is_offline(hf=True):
        raise WeightsUnavailableError(offline_message(model, file_name_of(filename), manual_dest, url))
    timeout = download_timeout() if timeout is None else timeout
    check_cancel(cancel, url)

    folder = file_download.repo_folder_name(repo_id=repo_id, repo_type="model")
    message = functools.partial(failure_message, model, tried=url, file_name=filename, dest=manual_dest, official=url)
    placed = _Placed(cache_dir)
    locks = cache_dir / ".locks"
    outside_lock = missing_dirs(locks)  # what a failure outside the lock (Cancel while waiting) may remove
    try:
        placed.folder(locks)
        guard = _guard(url, timeout, cancel, progress, None)
        with file_lock(locks / f"{folder}.backbones.lock", cancel=cancel, on_wait=guard.waiting):
            cached = cached_hf(repo_id, filename, revision=revision)
            if cached is not None:
                return cached
            try:
                hub = _head_hub(url, guard)
                repo_dir = cache_dir / folder
                blobs = placed.folder(repo_dir / "blobs")
                tmp = _download_hub(url, hub, blobs, guard, progress, endpoint)
                try:
                    path = _place_hub_file(placed, repo_dir, hub, filename, revision, tmp)
                finally:
                    tmp.unlink(missing_ok=True)
            except BaseException:
                placed.undo()  # inside the lock: no other download of this repo is writing meanwhile
                raise
    except Exception as exc:
        remove_empty(outside_lock)
        raise _translate(exc, timeout, message) from exc
    except BaseException:
        remove_empty(outside_lock)
        raise
    return path


def cached_hf(repo_id: str, filename: str, *, revision: str | None = None) -> Path | None:
    """The snapshot path of a file the Hugging Face cache holds (as timm would find it offline), or None.

    An entry whose link or blob resolves outside the cache does not count (nothing there is trusted or touched).
    """
    from huggingface_hub import try_to_load_from_cache

    cache = hf_cache_dir()
    try:
        cached = try_to_load_from_cache(repo_id, filename, cache_dir=cache, revision=revision or "main")
    except ValueError:  # a malformed ref or revision in the cache
        return None
    if not isinstance(cached, str):
        return None
    try:
        inside(cache, Path(cached))
    except Refused:
        return None
    return Path(cached)


def hf_url(repo_id: str, filename: str, *, revision: str | None = None) -> str:
    """The file's resolve URL on the endpoint in use (``HF_ENDPOINT``): what a download would fetch."""
    from huggingface_hub import file_download

    return file_download.hf_hub_url(repo_id, filename, revision=revision or "main", endpoint=hf_endpoint())


def discard_hf(repo_id: str, filename: str, *, revision: str | None = None) -> None:
    """Remove a cached Hugging Face file (snapshot link and blob), e.g. one that does not fit the architecture.

    Only what resolves to inside the cache is deleted: a link pointing elsewhere is removed, its target is not.
    """
    pointer = cached_hf(repo_id, filename, revision=revision)
    if pointer is None:
        return
    cache = hf_cache_dir()
    blob = pointer.resolve()
    for path in (pointer, blob):
        with contextlib.suppress(FileNotFoundError, Refused):
            inside(cache, path.parent)
            if path == blob:
                inside(cache, path)
            path.unlink()
