"""Downloading trained weights: torchvision files by URL, timm files into the Hugging Face cache.

Both paths behave like the libraries they stand in for, plus what a shared lab machine needs:

* :func:`fetch_url` (torchvision): streams into a temporary file beside the target, computes SHA-256 on the way,
  checks the hash prefix from the file name, fsyncs and renames atomically (as ``torch.hub.download_url_to_file``);
* :func:`~backbones.zoo.hub.fetch_hf` (timm, in :mod:`backbones.zoo.hub`): one HEAD of our own (no retries, our timeout) whose commit and ETag must be hex hashes,
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
import hashlib
import http.client
import os
import re
import socket
import sys
import tempfile
import threading
import urllib.error
from collections.abc import Callable, Iterator
from pathlib import Path

from backbones.callbacks import ByteProgressFn
from backbones.errors import BackboneError, DownloadError, WeightsUnavailableError
from backbones.settings import env_number
from backbones.zoo.locking import check_cancel, file_lock, missing_dirs, remove_empty
from backbones.zoo.transfer import (
    Guard,
    Refused,
    announced_length,
    check_free_space,
    check_size,
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
        raise Refused(f"refused to touch {shown_value(Path(path).name)}: it resolves outside the cache")
    return resolved


def shown_value(value: str) -> str:
    """A server-sent value inside a one-line message: escaped, and short."""
    text = ascii(value)
    return text if len(text) <= 60 else text[:57] + "…'"
