"""A loopback HTTP server for download tests: a torchvision-style mirror and a Hugging Face-style endpoint.

Nothing here touches the internet. The server listens on 127.0.0.1 on a free port, in a thread, and records every
request. It serves

* ``/<file name>`` like a mirror of download.pytorch.org (``add_file``);
* ``/<repo>/resolve/<revision>/<file>`` like the Hub (``add_hf_file``), answering HEAD and GET with the headers
  huggingface_hub 2.4 reads in ``get_hf_file_metadata``: ``X-Repo-Commit``, ``ETag`` and ``X-Linked-Etag`` (the
  file's SHA-256, as for LFS files), ``X-Linked-Size`` and ``Content-Length``. With ``hf_redirect=True`` the resolve
  URL answers ``302`` with ``Location`` on another origin (``localhost`` instead of ``127.0.0.1``), as the Hub
  redirects LFS files to its CDN; the CDN path serves the bytes.

``fail(mode, path=..., methods=...)`` switches a failure on: ``404``, ``403``, ``500``, ``truncate`` (announces the
full length, sends half and closes), ``wrong-bytes`` (same length, other bytes), ``stall`` (answers nothing for
``stall_s`` seconds, bounded so a test never hangs), ``stall-body`` (headers and half the body, then silence), and the
hostile mirror's: ``huge-length`` (announces 10**12 bytes, then sends the file and closes), ``no-length`` (no
Content-Length: the body ends when the connection closes), ``trickle`` (one byte every ``trickle_s`` seconds) and
``redirect`` (``302`` to ``fail(..., location=...)``: ``ftp://``, another loopback port). ``hf_etag`` and
``hf_commit`` replace the Hub's ``ETag`` / ``X-Linked-Etag`` and ``X-Repo-Commit`` with what a hostile endpoint sends.
:func:`refused_url` gives a URL on a port where nothing listens; :func:`go_online` points a test's caches and
endpoints at temporary folders and the server.
"""

from __future__ import annotations

import hashlib
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"
MODES = (
    "404", "403", "500", "truncate", "wrong-bytes", "stall", "stall-body", "huge-length", "no-length", "trickle",
    "redirect",
)
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<file>.+)$")
_CDN = re.compile(r"^/cdn/(?P<sha>[0-9a-f]{64})$")


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict


@dataclass
class _Failure:
    mode: str
    path: str | None
    methods: tuple[str, ...]
    location: str | None = None


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # noqa: D102 - a client that hung up is what tests do
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


@dataclass
class LoopbackServer:
    stall_s: float = 5.0
    delay_s: float = 0.0  # before each GET answer: lets concurrent clients overlap
    hf_redirect: bool = False
    trickle_s: float = 0.2
    hf_etag: str | None = None  # sent instead of the real ETag (a hostile Hub)
    hf_commit: str | None = None  # sent instead of the real X-Repo-Commit
    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    failures: list[_Failure] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd = _QuietServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    # ---- lifecycle
    def start(self) -> LoopbackServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # wakes stalled handlers
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ---- content
    def add_file(self, name: str, data: bytes) -> str:
        """A mirror file at ``/<name>``; returns its URL."""
        self.files[f"/{name}"] = data
        return f"{self.base_url}/{name}"

    def add_hf_file(self, repo: str, filename: str, data: bytes, *, revision: str = "main") -> str:
        """A Hub file at ``/<repo>/resolve/<revision>/<filename>`` (and under the commit hash); returns its URL."""
        for rev in (revision, COMMIT):
            self.files[f"/{repo}/resolve/{rev}/{filename}"] = data
        self.files[f"/cdn/{hashlib.sha256(data).hexdigest()}"] = data
        return f"{self.base_url}/{repo}/resolve/{revision}/{filename}"

    def fail(
        self,
        mode: str,
        *,
        path: str | None = None,
        methods: tuple[str, ...] = ("GET", "HEAD"),
        location: str | None = None,
    ) -> None:
        """Make requests (to ``path``, or to any path) with these methods fail in ``mode`` (``redirect``: to
        ``location``)."""
        if mode not in MODES:
            raise ValueError(f"unknown failure mode {mode!r}; one of {MODES}")
        self.failures.append(_Failure(mode, path, tuple(methods), location))

    # ---- inspection
    def record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def count(self, method: str | None = None, contains: str = "") -> int:
        with self._lock:
            return sum(1 for r in self.requests if (method in (None, r.method)) and contains in r.path)

    def failure_for(self, method: str, path: str) -> _Failure | None:
        for failure in self.failures:
            if method in failure.methods and failure.path in (None, path):
                return failure
        return None


def go_online(monkeypatch, tmp_path, server: LoopbackServer) -> None:
    """Temporary caches under ``tmp_path``, the loopback server as mirror-to-be and Hub, online, and no stray
    request to the real Hub (tests/conftest.py turns offline mode on for every other test)."""
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", server.base_url)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    for name in ("BACKBONES_OFFLINE", "BACKBONES_TORCHVISION_MIRROR", "BACKBONES_DOWNLOAD_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    # huggingface_hub read these when first imported (tests/conftest.py sets HF_HUB_OFFLINE=1 then); its user agent
    # would also fetch {import-time ENDPOINT}/api/agent-harnesses once per process unless telemetry is off.
    # ENDPOINT stays: hf_hub_url swaps it for the endpoint fetch_hf passes (HF_ENDPOINT, read at call time).
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_TELEMETRY", True)


def refused_url(path: str = "/file.pth") -> str:
    """A URL on a loopback port where nothing listens: connecting is refused at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


def _handler_for(server: LoopbackServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format, *args):  # noqa: A002 - keep test output quiet
            return

        def do_HEAD(self):
            self._answer(body=False)

        def do_GET(self):
            self._answer(body=True)

        def _answer(self, *, body: bool) -> None:
            path = self.path.split("?", 1)[0]
            server.record(Request(self.command, path, dict(self.headers)))
            failure = server.failure_for(self.command, path)
            mode = failure.mode if failure else None
            if self.command == "GET" and server.delay_s:
                server._stop.wait(server.delay_s)
            if mode == "stall":
                server._stop.wait(server.stall_s)
                return
            if mode in ("404", "403", "500"):
                self._status_only(int(mode))
                return
            if mode == "redirect":
                self.send_response(302)
                self.send_header("Location", failure.location or "/")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = server.files.get(path)
            if data is None:
                self._status_only(404)
                return
            resolve = _RESOLVE.match(path)
            if resolve and server.hf_redirect:
                self._redirect(data)
                return
            self._send(data, hub=resolve is not None, body=body, mode=mode)

        def _status_only(self, code: int) -> None:
            self.send_response(code)
            if _RESOLVE.match(self.path) and code == 404:
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _hub_headers(self, data: bytes) -> None:
            sha = hashlib.sha256(data).hexdigest()
            etag = server.hf_etag if server.hf_etag is not None else f'"{sha}"'
            self.send_header("X-Repo-Commit", server.hf_commit if server.hf_commit is not None else COMMIT)
            self.send_header("ETag", etag)
            self.send_header("X-Linked-Etag", etag)
            self.send_header("X-Linked-Size", str(len(data)))

        def _redirect(self, data: bytes) -> None:
            self.send_response(302)
            self._hub_headers(data)
            self.send_header("Location", f"http://localhost:{server.port}/cdn/{hashlib.sha256(data).hexdigest()}")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _send(self, data: bytes, *, hub: bool, body: bool, mode: str | None) -> None:
            self.send_response(200)
            if hub:
                self._hub_headers(data)
            self.send_header("Content-Type", "application/octet-stream")
            if mode != "no-length":
                self.send_header("Content-Length", str(10**12 if mode == "huge-length" else len(data)))
            self.end_headers()
            if not body:
                return
            if mode in ("huge-length", "no-length"):
                self.wfile.write(data)
                self.close_connection = True
                return
            if mode == "trickle":
                for i in range(len(data)):  # until the client hangs up (the write fails) or the server stops
                    self.wfile.write(data[i : i + 1])
                    self.wfile.flush()
                    if server._stop.wait(server.trickle_s):
                        break
                self.close_connection = True
                return
            if mode == "wrong-bytes":
                data = bytes(b ^ 0xFF for b in data)
            if mode in ("truncate", "stall-body"):
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                if mode == "stall-body":
                    server._stop.wait(server.stall_s)
                self.close_connection = True
                return
            self.wfile.write(data)

    return Handler
