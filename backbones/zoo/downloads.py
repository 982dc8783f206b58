"""Downloading trained weights: torchvision files by URL, timm files into the Hugging Face cache.

Both paths behave like the libraries they stand in for, plus what a shared lab machine needs:

* :func:`fetch_url` (torchvision): streams into a temporary file beside the target, computes SHA-256 on the way,
  checks the hash prefix from the file name, fsyncs and renames atomically (as ``torch.hub.download_url_to_file``);
* :func:`fetch_hf` (timm): one HEAD of our own (no retries, our timeout) whose commit and ETag must be hex hashes,
  then the same bounded reader, into the Hugging Face cache layout huggingface_hub writes, so timm finds the files;
* both through :mod:`backbones.zoo.transfer`: sizes bounded (catalog size + 1 %, else ``BACKBONES_DOWNLOAD_MAX_MB``),
  free space checked first, an overall deadline, Cancel honoured within a poll interval, redirects checked;
* a file lock per target, so two processes asking for one file download it once and both succeed;
* every failure is one :class:`~backbones.errors.DownloadError` line naming the URL and the manual alternative, and
  leaves no partial, temporary or lock file and no half-written cache entry behind; nothing is written or deleted
  outside the caches (every path is resolved first).

Environment (read at call time): ``BACKBONES_OFFLINE=1`` (no network at all; ``HF_HUB_OFFLINE=1`` too for Hugging
Face files), ``BACKBONES_TORCHVISION_MIRROR`` (see :func:`mirror_url`), ``BACKBONES_DOWNLOAD_TIMEOUT`` (seconds,
default 30, for connecting and for each read), ``BACKBONES_DOWNLOAD_MAX_MB``, ``BACKBONES_DOWNLOAD_DEADLINE``,
``HF_ENDPOINT`` and ``HF_HUB_CACHE`` / ``HF_HOME``.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import http.client
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
import urllib.error
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

from backbones.callbacks import ByteProgressFn
from backbones.errors import BackboneError, DownloadError, WeightsUnavailableError
from backbones.settings import env_number
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

DEFAULT_TIMEOUT_S = 30.0
HF_DEFAULT_ENDPOINT = "https://huggingface.co"
_TRUE = {"1", "ON", "YES", "TRUE"}
# torch.hub's rule: the hash prefix is the hex run after the last "-" of the file name (resnet50-11ad3fa6.pth).
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,})\.")


# ---------------------------------------------------------------- configuration


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in _TRUE


def is_offline(*, hf: bool = False) -> bool:
    """True when no network request may be made: ``BACKBONES_OFFLINE=1``, or for Hugging Face files also
    ``HF_HUB_OFFLINE=1`` (as set now, or as huggingface_hub read it when it was imported)."""
    if _flag("BACKBONES_OFFLINE"):
        return True
    if not hf:
        return False
    constants = sys.modules.get("huggingface_hub.constants")
    return _flag("HF_HUB_OFFLINE") or bool(getattr(constants, "HF_HUB_OFFLINE", False))


def download_timeout() -> float:
    """``BACKBONES_DOWNLOAD_TIMEOUT`` in seconds (default 30): the longest wait to connect or for the next bytes."""
    return env_number("BACKBONES_DOWNLOAD_TIMEOUT", DEFAULT_TIMEOUT_S)


def mirror_url(official_url: str) -> str:
    """``$BACKBONES_TORCHVISION_MIRROR/<official file name>`` when that variable is set, else the official URL."""
    base = os.environ.get("BACKBONES_TORCHVISION_MIRROR", "").strip().rstrip("/")
    return f"{base}/{file_name_of(official_url)}" if base else official_url


def hf_endpoint() -> str:
    """The Hugging Face endpoint, ``HF_ENDPOINT`` as set now (huggingface_hub itself reads it once at import)."""
    return (os.environ.get("HF_ENDPOINT") or HF_DEFAULT_ENDPOINT).rstrip("/")


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache timm uses, resolved from the environment now (same rules as huggingface_hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface"
    )
    return Path(home).expanduser() / "hub"


def file_name_of(url: str) -> str:
    return url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]


def hash_prefix_of(file_name: str) -> str | None:
    """The SHA-256 prefix torchvision puts in its file names (``resnet50-11ad3fa6.pth`` -> ``11ad3fa6``)."""
    match = _HASH_IN_NAME.search(file_name)
    return match.group(1) if match else None


# ---------------------------------------------------------------- messages


def manual_alternative(model: str | None, file_name: str, dest: Path | None, url: str) -> str:
    """How to get the file without this tool: copy it into place, or import it."""
    where = f"copy {file_name} to {dest} (from {url})" if dest is not None else f"download {file_name} from {url}"
    if model is None:
        return where
    joiner = " or" if dest is not None else " and"
    return f"{where}{joiner} import it with: python -m backbones import-weights {model} FILE"


def offline_message(model: str | None, file_name: str, dest: Path | None, url: str) -> str:
    """The one line shown when weights are missing and offline mode forbids fetching them."""
    subject = model or file_name
    return (
        f"{subject}: weights not on this machine and offline mode is on; "
        f"{manual_alternative(model, file_name, dest, url)}"
    )


def failure_message(
    model: str | None, reason: str, tried: str, file_name: str, dest: Path | None, official: str
) -> str:
    """The one line for a failed download: what went wrong, the URL tried, and how to get the file by hand."""
    return (
        f"{model or file_name}: download failed ({reason}) from {tried}; "
        f"{manual_alternative(model, file_name, dest, official)}"
    )


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        if isinstance(current, urllib.error.URLError) and isinstance(current.reason, BaseException):
            yield current.reason
        current = current.__cause__ or current.__context__


def describe_failure(exc: BaseException, timeout: float) -> str:
    """A few words for what went wrong, whichever HTTP stack (urllib, httpx2 via huggingface_hub) raised it."""
    chain = list(_causes(exc))
    for cause in chain:
        if isinstance(cause, urllib.error.HTTPError):
            return f"HTTP {cause.code} {cause.reason}".strip()
        status = getattr(getattr(cause, "response", None), "status_code", None)
        if isinstance(status, int):
            return f"HTTP {status}"
    for cause in chain:
        if isinstance(cause, OSError) and cause.errno == errno.ENOSPC:
            return "disk full"
        if isinstance(cause, socket.gaierror):
            return "host name not found (DNS)"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, TimeoutError) or "Timeout" in type(cause).__name__:
            return f"no data for {timeout:g} s (timeout; BACKBONES_DOWNLOAD_TIMEOUT)"
        if isinstance(cause, http.client.IncompleteRead) or "RemoteProtocolError" in type(cause).__name__:
            return "transfer cut short by the server"
        if isinstance(cause, OSError) and str(cause).startswith("Consistency check failed"):
            return "transfer cut short (size differs from the announced size)"
    return " ".join(str(exc).split())[:200] or type(exc).__name__


# ---------------------------------------------------------------- transfers


def _guard(what: str, timeout: float, cancel, progress: ByteProgressFn | None, total: int | None) -> Guard:
    """The guard of one download; before the body starts its heartbeat redraws "0 of total" (a page's Cancel
    then stops the wait for a lock or for a silent server at its next redraw)."""
    heartbeat = (lambda: progress(0, total)) if progress is not None else None
    return Guard(what, timeout=timeout, cancel=cancel, heartbeat=heartbeat)


def _download(url: str, dest: Path, sha256_prefix: str | None, guard: Guard, progress, expected: int | None) -> str:
    """One GET into a temporary file beside ``dest``, renamed into place only when complete and verified."""
    limit = size_limit(expected)
    check_free_space(dest.parent, expected or 0)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".partial")
    try:
        digest = hashlib.sha256()
        with open_url(url, guard=guard, method="GET") as response:
            announced = announced_length(response)
            check_size(announced, limit)
            if announced and announced > (expected or 0):
                check_free_space(dest.parent, announced)
            stream_to(response, fd, limit=limit, guard=guard, progress=progress, digests=(digest,))
        sha256 = digest.hexdigest()
        if sha256_prefix and not sha256.startswith(sha256_prefix.lower()):
            raise Refused(f"SHA-256 mismatch: expected {sha256_prefix}…, got {sha256[: len(sha256_prefix)]}…")
        os.close(fd)
        fd = -1
        os.replace(tmp, dest)
        return sha256
    finally:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _translate(exc: BaseException, timeout: float, message: Callable[[str], str]) -> BackboneError:
    if isinstance(exc, BackboneError):
        return exc
    reason = str(exc) if isinstance(exc, Refused) else describe_failure(exc, timeout)
    return DownloadError(message(reason))


# ---------------------------------------------------------------- torchvision path


def fetch_url(
    url: str,
    dest: Path,
    *,
    sha256_prefix: str | None,
    progress: ByteProgressFn | None = None,
    timeout: float | None = None,
    cancel: threading.Event | None = None,
    model: str | None = None,
    official_url: str | None = None,
    expected_size: int | None = None,
) -> Path:
    """Download ``url`` to ``dest`` unless it is there already; returns ``dest``.

    ``sha256_prefix``: the start of the file's SHA-256 (torchvision's file-name suffix), checked before the rename.
    ``expected_size``: the catalog's size in bytes; a body over it by more than 1 % is refused (unknown: the
    ``BACKBONES_DOWNLOAD_MAX_MB`` cap), and so is a download the disk has no room for.
    ``progress(done, total)`` is called per chunk and a few times a second while waiting (``total`` None when the
    server sends no length). ``timeout`` defaults to :func:`download_timeout`. ``cancel`` set from another thread
    stops the transfer within a poll interval, also while waiting for another download's lock, with
    :class:`CancelledError`. ``model`` and ``official_url`` (when ``url`` is a mirror) only shape error messages.
    Raises :class:`WeightsUnavailableError` in offline mode, :class:`DownloadError` on any failure.
    """
    dest = Path(dest)
    official = official_url or url
    if dest.is_file():
        return dest
    if is_offline():
        raise WeightsUnavailableError(offline_message(model, dest.name, dest, official))
    timeout = download_timeout() if timeout is None else timeout
    check_cancel(cancel, url)
    created = missing_dirs(dest.parent)
    try:
        guard = _guard(url, timeout, cancel, progress, expected_size)
        with file_lock(dest.with_suffix(dest.suffix + ".lock"), cancel=cancel, on_wait=guard.waiting):
            if not dest.is_file():  # someone else may have finished it while we waited for the lock
                _download(url, dest, sha256_prefix, guard, progress, expected_size)
    except Exception as exc:
        remove_empty(created)
        raise _translate(exc, timeout, lambda why: failure_message(model, why, url, dest.name, dest, official)) from exc
    except BaseException:  # a page's rerun or stop (Streamlit raises from the progress callback): tidy up too
        remove_empty(created)
        raise
    return dest


def fetch_torchvision(
    official_url: str,
    dest_dir: Path,
    *,
    model: str | None = None,
    progress: ByteProgressFn | None = None,
    timeout: float | None = None,
    cancel: threading.Event | None = None,
    expected_size: int | None = None,
) -> Path:
    """A torchvision weights file into ``dest_dir`` (``$TORCH_HOME/hub/checkpoints``), from the mirror if one is set,
    checked against the hash prefix in its official file name and bounded by ``expected_size`` (the catalog's)."""
    name = file_name_of(official_url)
    return fetch_url(
        mirror_url(official_url),
        Path(dest_dir) / name,
        sha256_prefix=hash_prefix_of(name),
        progress=progress,
        timeout=timeout,
        cancel=cancel,
        model=model,
        official_url=official_url,
        expected_size=expected_size,
    )


# ---------------------------------------------------------------- Hugging Face path

_HEX40 = re.compile(r"[0-9a-f]{40}")
_HEX64 = re.compile(r"[0-9a-f]{64}")


def _shown(value: str) -> str:
    """A server-sent value inside a one-line message: escaped, and short."""
    text = ascii(value)
    return text if len(text) <= 60 else text[:57] + "…'"


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


def sha256_of(path: Path) -> str:
    """The SHA-256 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def inside(root: Path, path: Path) -> Path:
    """``path`` with symlinks resolved, when it lies inside ``root``; else :class:`Refused` (nothing is touched)."""
    resolved = Path(path).resolve()
    if not resolved.is_relative_to(Path(root).resolve()):
        raise Refused(f"refused to touch {_shown(Path(path).name)}: it resolves outside the cache")
    return resolved


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
