"""Downloading trained weights: torchvision files by URL, timm files through the Hugging Face cache.

Both paths behave like the libraries they stand in for, plus what a shared lab machine needs:

* :func:`fetch_url` (torchvision): streams into a temporary file beside the target, computes SHA-256 on the way,
  checks the hash prefix from the file name, fsyncs and renames atomically (as ``torch.hub.download_url_to_file``);
* :func:`fetch_hf` (timm): ``huggingface_hub.hf_hub_download`` into the normal Hugging Face cache, so timm finds the
  same files; a single HEAD first (no retries, our timeout) so a dead or wrong endpoint fails in seconds;
* a file lock per target, so two processes asking for one file download it once and both succeed;
* every failure is one :class:`~backbones.errors.DownloadError` line naming the URL and the manual alternative, and
  leaves no partial, temporary or lock file and no half-written cache entry behind.

Environment (read at call time): ``BACKBONES_OFFLINE=1`` (no network at all; ``HF_HUB_OFFLINE=1`` too for Hugging
Face files), ``BACKBONES_TORCHVISION_MIRROR`` (see :func:`mirror_url`), ``BACKBONES_DOWNLOAD_TIMEOUT`` (seconds,
default 30, for connecting and for each read), ``HF_ENDPOINT`` and ``HF_HUB_CACHE`` / ``HF_HOME``.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import http.client
import logging
import os
import re
import socket
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from backbones.callbacks import ByteProgressFn
from backbones.errors import BackboneError, DownloadError, WeightsUnavailableError
from backbones.settings import env_number
from backbones.zoo.locking import check_cancel, file_lock, list_entries, missing_dirs, remove_empty, remove_new

CHUNK_BYTES = 64 * 1024
DEFAULT_TIMEOUT_S = 30.0
HF_DEFAULT_ENDPOINT = "https://huggingface.co"
_TRUE = {"1", "ON", "YES", "TRUE"}
_USER_AGENT = "backbone-lens (python urllib)"
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


# ---------------------------------------------------------------- HTTP


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D102 - urllib hook
        return None  # a HEAD's metadata is on the first (Hub) response; urllib then raises HTTPError with it


def _open(url: str, *, method: str, timeout: float, follow_redirects: bool = True) -> http.client.HTTPResponse:
    request = urllib.request.Request(
        url, method=method, headers={"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    )
    opener = urllib.request.build_opener() if follow_redirects else urllib.request.build_opener(_NoRedirect)
    try:
        return opener.open(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if not follow_redirects and 300 <= exc.code < 400:
            return exc  # type: ignore[return-value]  # carries status and headers like a response
        raise


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _stream_to(
    response, fd: int, total: int | None, progress: ByteProgressFn | None, cancel: threading.Event | None, what: str
) -> str:
    """Copy the body into ``fd`` in 64 KiB chunks; returns the SHA-256 hex digest."""
    digest = hashlib.sha256()
    done = 0
    if progress is not None:
        progress(0, total)
    while chunk := response.read(CHUNK_BYTES):
        check_cancel(cancel, what)
        _write_all(fd, chunk)
        digest.update(chunk)
        done += len(chunk)
        if progress is not None:
            progress(done, total)
    if total is not None and done != total:
        raise http.client.IncompleteRead(b"", total - done)
    os.fsync(fd)
    return digest.hexdigest()


def _download(url: str, dest: Path, sha256_prefix: str | None, timeout: float, progress, cancel) -> str:
    """One GET into a temporary file beside ``dest``, renamed into place only when complete and verified."""
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".partial")
    try:
        with _open(url, method="GET", timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            sha256 = _stream_to(response, fd, total, progress, cancel, url)
        if sha256_prefix and not sha256.startswith(sha256_prefix.lower()):
            raise _Refused(f"SHA-256 mismatch: expected {sha256_prefix}…, got {sha256[: len(sha256_prefix)]}…")
        os.close(fd)
        fd = -1
        os.replace(tmp, dest)
        return sha256
    finally:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


class _Refused(Exception):
    """A transfer that worked but whose result we refuse (wrong hash, not a Hub answer); ``str`` is the reason."""


def _translate(exc: BaseException, timeout: float, message: Callable[[str], str]) -> BackboneError:
    if isinstance(exc, BackboneError):
        return exc
    reason = str(exc) if isinstance(exc, _Refused) else describe_failure(exc, timeout)
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
) -> Path:
    """Download ``url`` to ``dest`` unless it is there already; returns ``dest``.

    ``sha256_prefix``: the start of the file's SHA-256 (torchvision's file-name suffix), checked before the rename.
    ``progress(done, total)`` is called per chunk (``total`` None when the server sends no length). ``timeout``
    defaults to :func:`download_timeout`. ``cancel`` set from another thread stops the transfer with
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
        with file_lock(dest.with_suffix(dest.suffix + ".lock"), cancel=cancel):
            if not dest.is_file():  # someone else may have finished it while we waited for the lock
                _download(url, dest, sha256_prefix, timeout, progress, cancel)
    except Exception as exc:
        remove_empty(created)
        raise _translate(exc, timeout, lambda why: failure_message(model, why, url, dest.name, dest, official)) from exc
    return dest


def fetch_torchvision(
    official_url: str,
    dest_dir: Path,
    *,
    model: str | None = None,
    progress: ByteProgressFn | None = None,
    timeout: float | None = None,
    cancel: threading.Event | None = None,
) -> Path:
    """A torchvision weights file into ``dest_dir`` (``$TORCH_HOME/hub/checkpoints``), from the mirror if one is set,
    checked against the hash prefix in its official file name."""
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
    )


# ---------------------------------------------------------------- Hugging Face path


class _HfProgress:
    """Stands in for huggingface_hub's tqdm bar: forwards bytes to our callback, and stops on cancel."""

    def __init__(self, *, callback: ByteProgressFn | None, cancel, what: str, expected: int | None, **kwargs) -> None:
        self._callback, self._cancel, self._what = callback, cancel, what
        self.total = kwargs.get("total") or expected
        self.n = kwargs.get("initial") or 0

    def __enter__(self) -> _HfProgress:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._callback is not None:
            self._callback(self.n, self.total)
        check_cancel(self._cancel, self._what)  # raised inside hf's read loop: it deletes its temporary file

    def close(self) -> None:
        return None


_INSIDE_FETCH = threading.local()


def _outside_fetch(record: logging.LogRecord) -> bool:
    return not getattr(_INSIDE_FETCH, "active", False)


@contextlib.contextmanager
def _quiet_hub_retries() -> Iterator[None]:
    """Drop huggingface_hub's "Trying to resume download..." warnings in this thread: its retries stay, and a
    failure still ends as one error line."""
    logger = logging.getLogger("huggingface_hub.file_download")
    if _outside_fetch not in logger.filters:
        logger.addFilter(_outside_fetch)
    _INSIDE_FETCH.active = True
    try:
        yield
    finally:
        _INSIDE_FETCH.active = False


def _head_hub(url: str, timeout: float) -> tuple[str | None, int | None]:
    """One HEAD without retries: fails fast on a dead endpoint; returns the file's SHA-256 (LFS files) and size."""
    response = _open(url, method="HEAD", timeout=timeout, follow_redirects=False)
    with contextlib.closing(response):
        headers = response.headers
        if not headers.get("X-Repo-Commit"):
            raise _Refused("the server does not answer like a Hugging Face endpoint: no X-Repo-Commit header")
        etag = (headers.get("X-Linked-Etag") or headers.get("ETag") or "").removeprefix("W/").strip('"')
        size = headers.get("X-Linked-Size") or (None if 300 <= response.status < 400 else headers.get("Content-Length"))
    sha256 = etag if re.fullmatch(r"[0-9a-f]{64}", etag) else None
    return sha256, int(size) if size and size.isdigit() else None


def sha256_of(path: Path) -> str:
    """The SHA-256 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


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

    Already cached: no request at all. Otherwise one HEAD of our own (timeout, no retries), then
    ``hf_hub_download``, then the SHA-256 is checked against the Hub's ``X-Linked-Etag`` when it is one.
    ``model`` and ``manual_dest`` (where an imported copy would go) only shape error messages.
    Raises :class:`WeightsUnavailableError` in offline mode, :class:`DownloadError` on any failure.
    """
    from huggingface_hub import file_download, hf_hub_download

    revision = revision or "main"
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
    # Everything hf_hub_download may create for this repo; what is new after a failure gets removed.
    roots = [cache_dir / folder, cache_dir / ".locks" / folder, cache_dir / "CACHEDIR.TAG"]
    created = missing_dirs(cache_dir / ".locks")
    message = functools.partial(failure_message, model, tried=url, file_name=filename, dest=manual_dest, official=url)
    try:
        with file_lock(cache_dir / ".locks" / f"{folder}.backbones.lock", cancel=cancel):
            cached = cached_hf(repo_id, filename, revision=revision)
            if cached is not None:
                return cached
            before = set().union(*(list_entries(root) for root in roots))
            try:
                sha256, size = _head_hub(url, timeout)
                bar = functools.partial(_HfProgress, callback=progress, cancel=cancel, what=url, expected=size)
                with _quiet_hub_retries():
                    path = Path(
                        hf_hub_download(
                            repo_id,
                            filename,
                            revision=revision,
                            cache_dir=cache_dir,
                            endpoint=endpoint,
                            etag_timeout=timeout,
                            tqdm_class=bar,  # type: ignore[arg-type]
                        )
                    )
                if sha256 is not None and (got := sha256_of(path)) != sha256:
                    raise _Refused(f"SHA-256 mismatch: expected {sha256[:12]}…, got {got[:12]}…")
            except BaseException:
                remove_new(before, roots)
                raise
    except Exception as exc:
        raise _translate(exc, timeout, message) from exc
    finally:
        remove_empty(created)
    return path


def cached_hf(repo_id: str, filename: str, *, revision: str | None = None) -> Path | None:
    """The snapshot path of a file the Hugging Face cache holds (as timm would find it offline), or None."""
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(repo_id, filename, cache_dir=hf_cache_dir(), revision=revision or "main")
    return Path(cached) if isinstance(cached, str) else None


def hf_url(repo_id: str, filename: str, *, revision: str | None = None) -> str:
    """The file's resolve URL on the endpoint in use (``HF_ENDPOINT``): what a download would fetch."""
    from huggingface_hub import file_download

    return file_download.hf_hub_url(repo_id, filename, revision=revision or "main", endpoint=hf_endpoint())


def discard_hf(repo_id: str, filename: str, *, revision: str | None = None) -> None:
    """Remove a cached Hugging Face file (snapshot link and blob), e.g. one that does not fit the architecture."""
    pointer = cached_hf(repo_id, filename, revision=revision)
    if pointer is None:
        return
    blob = pointer.resolve()
    for path in (pointer, blob):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
