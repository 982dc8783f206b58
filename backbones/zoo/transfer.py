"""HTTP for downloads: bounded in size and time, cancellable at every wait, careful where redirects lead.

A transfer is watched by one :class:`Guard`. Every socket wait (connect, TLS handshake, headers, each read) lasts
at most :data:`POLL_S`; between waits the guard checks Cancel, the overall deadline and the idle timeout, and calls
a heartbeat (the caller's progress callback). So a mirror that sends one byte every few seconds cannot hold a server
thread, a file lock or a visitor's page for longer than a poll interval after Cancel, and no helper thread is used
(none can be left behind).

Limits (read at call time): ``BACKBONES_DOWNLOAD_MAX_MB`` (default 4096) when the catalog does not know the file's
size, else that size + 1 %; ``BACKBONES_DOWNLOAD_DEADLINE`` (seconds, default 3600) for a whole transfer; free disk
space for the file plus :data:`FREE_MARGIN_BYTES` is checked before anything is written. Redirects: at most
:data:`MAX_REDIRECTS`, http and https only, and never to a loopback, private or link-local address unless it is the
configured mirror or endpoint itself (same address and port).
"""

from __future__ import annotations

import errno
import functools
import http.client
import ipaddress
import os
import selectors
import shutil
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from backbones.settings import env_number
from backbones.zoo.locking import check_cancel

#: The longest a socket waits before the guard looks at Cancel and the clocks again (seconds).
POLL_S = 0.25
MAX_REDIRECTS = 5
DEFAULT_MAX_MB = 4096
DEFAULT_DEADLINE_S = 3600.0
#: A body may exceed the catalog's size by this fraction (torchvision rounds its sizes to a kilobyte).
SIZE_SLACK = 0.01
#: Free space kept beyond the file itself, so a download never fills the disk to the last block.
FREE_MARGIN_BYTES = 64 * 2**20
CHUNK_BYTES = 64 * 1024
_USER_AGENT = "backbone-lens (python urllib)"


class Refused(Exception):
    """A transfer that worked but whose result (or next step) we refuse; ``str`` is the reason, one line."""


def max_download_bytes() -> int:
    """``BACKBONES_DOWNLOAD_MAX_MB`` (default 4096) in bytes: the cap on a file whose size the catalog does not know."""
    return int(env_number("BACKBONES_DOWNLOAD_MAX_MB", DEFAULT_MAX_MB) * 2**20)


def download_deadline() -> float:
    """``BACKBONES_DOWNLOAD_DEADLINE`` in seconds (default 3600): the longest one transfer may take in all."""
    return env_number("BACKBONES_DOWNLOAD_DEADLINE", DEFAULT_DEADLINE_S)


def size_limit(expected: int | None) -> int:
    """The most bytes a body may have: the known size + 1 % (and never above the cap), else the cap."""
    cap = max_download_bytes()
    return min(cap, int(expected * (1 + SIZE_SLACK)) + 4096) if expected else cap


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def check_size(announced: int | None, limit: int) -> None:
    """Refuse a body announced larger than ``limit``, before any of it is read."""
    if announced is not None and announced > limit:
        raise Refused(f"the server announces {_mb(announced)}, more than the {_mb(limit)} allowed; refused")


def check_free_space(folder: Path, need: int) -> None:
    """Refuse when the file system of ``folder`` (or its nearest existing parent) lacks ``need`` + a margin."""
    probe = Path(folder)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < need + FREE_MARGIN_BYTES:
        raise Refused(
            f"not enough free disk space for the cache: {_mb(need)} needed plus {_mb(FREE_MARGIN_BYTES)} to spare, "
            f"{_mb(free)} free"
        )


class Guard:
    """What bounds one transfer: Cancel, an overall deadline, the idle timeout, and a heartbeat per idle wait."""

    def __init__(
        self,
        what: str,
        *,
        timeout: float,
        cancel: threading.Event | None = None,
        deadline_s: float | None = None,
        heartbeat: Callable[[], None] | None = None,
    ) -> None:
        self.what, self.timeout, self.cancel, self.heartbeat = what, timeout, cancel, heartbeat
        self.deadline_s = download_deadline() if deadline_s is None else deadline_s
        now = time.monotonic()
        self._deadline = now + self.deadline_s
        self._last_data = now

    def check(self) -> None:
        """Raise :class:`CancelledError` on Cancel, :class:`Refused` past the deadline."""
        check_cancel(self.cancel, self.what)
        if time.monotonic() > self._deadline:
            raise Refused(f"not finished within {self.deadline_s:g} s (BACKBONES_DOWNLOAD_DEADLINE)")

    def idle(self) -> None:
        """One poll interval passed without data: check everything, then let the caller redraw (or stop us)."""
        self.check()
        if time.monotonic() - self._last_data > self.timeout:
            raise TimeoutError(f"no data for {self.timeout:g} s")
        if self.heartbeat is not None:
            self.heartbeat()

    def waiting(self) -> None:
        """Called while waiting for another download's file lock: Cancel and the deadline apply, and a redraw."""
        self.check()
        if self.heartbeat is not None:
            self.heartbeat()

    def active(self) -> None:
        self._last_data = time.monotonic()


def _patient(guard: Guard, call, *args):
    """``call(*args)`` on a socket with a short timeout, retried until data comes or the guard says stop."""
    while True:
        guard.check()
        try:
            result = call(*args)
        except TimeoutError:  # socket.timeout: the poll interval passed
            guard.idle()
            continue
        guard.active()
        return result


class _PatientSocket(socket.socket):
    guard: Guard

    def recv(self, *args):
        return _patient(self.guard, super().recv, *args)

    def recv_into(self, *args):
        return _patient(self.guard, super().recv_into, *args)


class _PatientSSLSocket(ssl.SSLSocket):
    guard: Guard

    def recv(self, *args):
        return _patient(self.guard, super().recv, *args)

    def recv_into(self, *args):
        return _patient(self.guard, super().recv_into, *args)


def _connect(host: str, port: int, guard: Guard) -> _PatientSocket:
    """A TCP connection whose connect wait is cut into poll intervals (Cancel and the timeout apply)."""
    last: OSError | None = None
    for family, kind, proto, _, address in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM):
        sock = _PatientSocket(family, kind, proto)
        sock.guard = guard
        try:
            sock.setblocking(False)
            code = sock.connect_ex(address)
            with selectors.DefaultSelector() as selector:
                selector.register(sock, selectors.EVENT_WRITE)
                while code in (errno.EINPROGRESS, errno.EALREADY, errno.EWOULDBLOCK):
                    if selector.select(POLL_S):
                        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        break
                    guard.idle()
            if code:
                raise OSError(code, os.strerror(code))
            sock.settimeout(POLL_S)
            guard.active()
            return sock
        except BaseException as exc:
            sock.close()
            if not isinstance(exc, OSError) or isinstance(exc, TimeoutError):
                raise  # Cancel, the deadline, the timeout: no other address is tried
            last = exc
    raise last if last is not None else OSError(errno.EHOSTUNREACH, "no address for the host")


class _Connection(http.client.HTTPConnection):
    def __init__(self, host, *, guard: Guard, **kwargs) -> None:
        super().__init__(host, **kwargs)
        self.guard = guard

    def connect(self) -> None:
        self.sock = _connect(self.host, self.port, self.guard)
        if self._tunnel_host:
            self._tunnel()


class _TLSConnection(http.client.HTTPSConnection):
    def __init__(self, host, *, guard: Guard, **kwargs) -> None:
        super().__init__(host, **kwargs)
        self.guard = guard

    def connect(self) -> None:
        _Connection.connect(self)  # type: ignore[arg-type]  # TCP (and proxy tunnel), then TLS on top
        context = self._context
        context.sslsocket_class = _PatientSSLSocket  # this connection's own context (http.client makes one each)
        sock = context.wrap_socket(
            self.sock, server_hostname=self._tunnel_host or self.host, do_handshake_on_connect=False
        )
        sock.guard = self.guard
        _patient(self.guard, sock.do_handshake)
        self.sock = sock


class _Handler(urllib.request.HTTPHandler):
    def __init__(self, guard: Guard) -> None:
        super().__init__()
        self._guard = guard

    def http_open(self, req):
        return self.do_open(functools.partial(_Connection, guard=self._guard), req)


class _TLSHandler(urllib.request.HTTPSHandler):
    def __init__(self, guard: Guard) -> None:
        super().__init__()
        self._guard = guard

    def https_open(self, req):
        return self.do_open(
            functools.partial(_TLSConnection, guard=self._guard),
            req,
            context=self._context,
            check_hostname=self._check_hostname,
        )


def _addresses(host: str) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        infos = socket.getaddrinfo(host, None, 0, socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return set()
    out = set()
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        out.add(ip)
    return out


def _port(parts) -> int:
    return parts.port or (443 if parts.scheme == "https" else 80)


def check_redirect(origin: str, target: str) -> None:
    """Refuse a redirect from the configured ``origin`` to ``target`` unless it is http(s) and does not lead to a
    loopback, private or link-local address other than the origin's own (same address and port)."""
    new = urlsplit(target)
    if new.scheme.lower() not in ("http", "https"):
        raise Refused(f"redirected to a {new.scheme or '(no scheme)'}: URL; only http and https are followed")
    old = urlsplit(origin)
    host = new.hostname or ""
    if host == old.hostname and _port(new) == _port(old):
        return
    found = _addresses(host)
    if all(ip.is_global for ip in found):
        return  # public addresses (or none: the connection fails with its own message)
    if _port(new) == _port(old) and found & _addresses(old.hostname or ""):
        return  # another name for the mirror itself (localhost for 127.0.0.1)
    raise Refused(f"redirected to an internal address ({host}:{_port(new)}); refused")


class _Redirects(urllib.request.HTTPRedirectHandler):
    max_redirections = MAX_REDIRECTS

    def __init__(self, origin: str, *, follow: bool) -> None:
        super().__init__()
        self._origin, self._follow = origin, follow

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D102 - urllib hook
        if not self._follow:
            return None  # the caller reads the 3xx itself (a Hub HEAD's metadata is on its first answer)
        return super().redirect_request(req, fp, code, msg, headers, newurl)

    def http_error_302(self, req, fp, code, msg, headers):  # noqa: D102 - urllib hook
        # Checked before urllib's own rule, which would follow ftp:// (and anywhere else).
        target = headers.get("location") or headers.get("uri")
        if self._follow and target:
            try:
                check_redirect(self._origin, urljoin(req.full_url, target))
            except Refused:
                fp.close()
                raise
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


def open_url(
    url: str, *, guard: Guard, method: str = "GET", origin: str | None = None, follow_redirects: bool = True
) -> http.client.HTTPResponse:
    """Send one request under ``guard``; redirects are checked against ``origin`` (default: ``url`` itself).

    With ``follow_redirects=False`` a 3xx answer is returned like a response (status, headers) instead of followed.
    """
    request = urllib.request.Request(
        url, method=method, headers={"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    )
    opener = urllib.request.build_opener(
        _Handler(guard), _TLSHandler(guard), _Redirects(origin or url, follow=follow_redirects)
    )
    try:
        return opener.open(request, timeout=guard.timeout)
    except urllib.error.HTTPError as exc:
        if not follow_redirects and 300 <= exc.code < 400:
            return exc  # type: ignore[return-value]  # carries status and headers like a response
        raise
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, BaseException) and not isinstance(exc.reason, OSError):
            raise exc.reason from exc  # Cancel and refusals raised inside the connection keep their own type
        raise


def announced_length(response) -> int | None:
    length = response.headers.get("Content-Length")
    return int(length) if length and length.strip().isdigit() else None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def stream_to(response, fd: int, *, limit: int, guard: Guard, progress=None, digests=()) -> int:
    """Copy the body into ``fd`` as it arrives, feeding ``digests``; returns the byte count.

    Refused before reading when the announced length exceeds ``limit``, and while reading as soon as the bytes do;
    a body shorter than announced raises :class:`http.client.IncompleteRead`. ``progress(done, total)`` is called per
    chunk and, through the guard's heartbeat, every poll interval while the server sends nothing.
    """
    total = announced_length(response)
    check_size(total, limit)
    done = 0
    if progress is not None:
        guard.heartbeat = lambda: progress(done, total)
        progress(0, total)
    while True:
        guard.check()
        chunk = response.read1(CHUNK_BYTES)
        if not chunk:
            break
        done += len(chunk)
        if done > limit:
            raise Refused(f"the server sent more than the {_mb(limit)} allowed; refused")
        _write_all(fd, chunk)
        for digest in digests:
            digest.update(chunk)
        if progress is not None:
            progress(done, total)
    if total is not None and done != total:
        raise http.client.IncompleteRead(b"", total - done)
    os.fsync(fd)
    return done
