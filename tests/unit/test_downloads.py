"""Downloads against a loopback server: the torchvision mirror path, the Hugging Face cache path, every failure.

Nothing touches the internet: HF_ENDPOINT and the mirror point at a server on 127.0.0.1 started here, and TORCH_HOME /
HF_HOME are temporary folders. After every failure the caches are listed and must be empty.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from backbones.errors import BackboneError, CancelledError, DownloadError, WeightsUnavailableError
from backbones.zoo import downloads
from backbones.zoo.progress import ProgressBar
from tests.loopback import go_online, refused_url

ROOT = Path(__file__).resolve().parents[2]
REPO = "timm/tiny_test.in1k"
HF_FILE = "model.safetensors"
TV_BYTES = bytes(range(256)) * 800  # 200 KiB: several 64 KiB chunks
TV_NAME = f"resnet18-{hashlib.sha256(TV_BYTES).hexdigest()[:8]}.pth"
OFFICIAL = f"https://download.pytorch.org/models/{TV_NAME}"


def _safetensors_bytes() -> bytes:
    import torch
    from safetensors.torch import save

    return save({"fc.weight": torch.arange(40_000, dtype=torch.float32).reshape(200, 200)})


@pytest.fixture
def env(monkeypatch, tmp_path, server):
    """Temporary caches, the loopback server as mirror and Hub, online, and no stray request to the real Hub."""
    go_online(monkeypatch, tmp_path, server)
    return tmp_path


@pytest.fixture
def checkpoints(env) -> Path:
    return env / "torch" / "hub" / "checkpoints"


def _leftovers(root: Path) -> list[str]:
    """Everything under the two caches (files and folders): empty after a failed download."""
    return sorted(str(p.relative_to(root)) for cache in ("torch", "hf") for p in (root / cache).rglob("*"))


def _mirror(server, monkeypatch) -> None:
    server.add_file(TV_NAME, TV_BYTES)
    monkeypatch.setenv("BACKBONES_TORCHVISION_MIRROR", server.base_url + "/")


# ---------------------------------------------------------------- good downloads


@pytest.mark.parametrize("redirect", [False, True], ids=["direct", "cdn-redirect"])
def test_hf_download_lands_in_the_hf_cache(env, server, redirect):
    from huggingface_hub import hf_hub_download
    from safetensors.torch import load_file

    server.hf_redirect = redirect
    data = _safetensors_bytes()
    server.add_hf_file(REPO, HF_FILE, data)
    seen = []

    path = downloads.fetch_hf(REPO, HF_FILE, model="timm:tiny_test", progress=lambda d, t: seen.append((d, t)))

    assert path.is_relative_to(env / "hf" / "hub")
    assert path.read_bytes() == data
    assert load_file(path)["fc.weight"][1, 2].item() == 202.0
    assert seen[-1] == (len(data), len(data))
    assert server.count("GET") == 1
    # timm's own call finds the same file without the network.
    assert Path(hf_hub_download(REPO, HF_FILE, cache_dir=env / "hf" / "hub", local_files_only=True)) == path
    before = len(server.requests)
    assert downloads.fetch_hf(REPO, HF_FILE) == path
    assert len(server.requests) == before  # cached: no request at all


def test_torchvision_path_asks_the_mirror_for_the_official_file_name(env, server, monkeypatch, checkpoints):
    _mirror(server, monkeypatch)
    seen = []

    path = downloads.fetch_torchvision(OFFICIAL, checkpoints, model="resnet18", progress=lambda d, t: seen.append(d))

    assert path == checkpoints / TV_NAME
    assert path.read_bytes() == TV_BYTES
    assert [(r.method, r.path) for r in server.requests] == [("GET", f"/{TV_NAME}")]
    assert sorted(p.name for p in checkpoints.iterdir()) == [TV_NAME]  # no .lock, no .partial
    assert seen[0] == 0 and seen[-1] == len(TV_BYTES) and len(seen) > 3


def test_mirror_url_and_hash_prefix(monkeypatch):
    monkeypatch.delenv("BACKBONES_TORCHVISION_MIRROR", raising=False)
    assert downloads.mirror_url(OFFICIAL) == OFFICIAL
    monkeypatch.setenv("BACKBONES_TORCHVISION_MIRROR", "http://lab.example/weights//")
    assert downloads.mirror_url(OFFICIAL) == f"http://lab.example/weights/{TV_NAME}"
    assert downloads.hash_prefix_of("resnet50-11ad3fa6.pth") == "11ad3fa6"
    assert downloads.hash_prefix_of("model.safetensors") is None


# ---------------------------------------------------------------- failures: one line, nothing left behind


def _fetch_tv(checkpoints, **kwargs) -> Path:
    return downloads.fetch_torchvision(OFFICIAL, checkpoints, model="resnet18", **kwargs)


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("wrong-bytes", "SHA-256 mismatch"),
        ("truncate", "transfer cut short"),
        ("404", "HTTP 404"),
        ("403", "HTTP 403"),
        ("500", "HTTP 500"),
    ],
)
def test_torchvision_failures(env, server, monkeypatch, checkpoints, mode, reason):
    _mirror(server, monkeypatch)
    server.fail(mode)

    with pytest.raises(DownloadError) as info:
        _fetch_tv(checkpoints)

    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"resnet18: download failed ({reason}")
    assert f"from {server.base_url}/{TV_NAME};" in message  # the URL tried
    assert f"copy {TV_NAME} to {checkpoints / TV_NAME} (from {OFFICIAL})" in message
    assert message.endswith("import it with: python -m backbones import-weights resnet18 FILE")
    assert _leftovers(env) == []


def test_stalled_server_times_out(env, server, monkeypatch, checkpoints):
    _mirror(server, monkeypatch)
    server.fail("stall-body")
    monkeypatch.setenv("BACKBONES_DOWNLOAD_TIMEOUT", "1")

    with pytest.raises(DownloadError, match=r"download failed \(no data for 1 s \(timeout"):
        _fetch_tv(checkpoints)
    assert _leftovers(env) == []


def test_silent_server_times_out_before_headers(env, server, monkeypatch, checkpoints):
    _mirror(server, monkeypatch)
    server.fail("stall")

    with pytest.raises(DownloadError, match=r"no data for 1 s"):
        _fetch_tv(checkpoints, timeout=1)
    assert _leftovers(env) == []


def test_connection_refused(env, checkpoints):
    url = refused_url(f"/{TV_NAME}")
    with pytest.raises(DownloadError, match=r"download failed \(connection refused\) from http://127\.0\.0\.1:"):
        downloads.fetch_url(url, checkpoints / TV_NAME, sha256_prefix=None, model="resnet18")
    assert _leftovers(env) == []


def test_dns_failure(env, checkpoints, monkeypatch):
    def no_such_host(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
    with pytest.raises(DownloadError, match=r"host name not found \(DNS\)\) from http://weights\.invalid/"):
        downloads.fetch_url("http://weights.invalid/a.pth", checkpoints / "a.pth", sha256_prefix=None)
    assert _leftovers(env) == []


def test_disk_full(env, server, monkeypatch, checkpoints):
    _mirror(server, monkeypatch)
    real_write = os.write

    def full(fd, data):
        if len(data) >= 1024:  # our chunks; leaves pytest's own small writes alone
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(DownloadError, match=r"download failed \(disk full\)"):
        _fetch_tv(checkpoints)
    monkeypatch.undo()
    assert _leftovers(env) == []


def test_cancel_stops_the_transfer(env, server, monkeypatch, checkpoints):
    _mirror(server, monkeypatch)
    cancel = threading.Event()

    with pytest.raises(CancelledError, match="cancelled"):
        _fetch_tv(checkpoints, cancel=cancel, progress=lambda done, total: done and cancel.set())
    assert _leftovers(env) == []


def test_bad_timeout_setting_is_one_line(monkeypatch):
    monkeypatch.setenv("BACKBONES_DOWNLOAD_TIMEOUT", "soon")
    with pytest.raises(BackboneError, match="BACKBONES_DOWNLOAD_TIMEOUT must be a positive number"):
        downloads.download_timeout()


def test_hf_failures_before_the_download(env, server):
    server.add_hf_file(REPO, HF_FILE, _safetensors_bytes())
    server.fail("404", methods=("HEAD",))
    with pytest.raises(DownloadError) as info:
        downloads.fetch_hf(REPO, HF_FILE, model="timm:tiny_test")
    url = f"{server.base_url}/{REPO}/resolve/main/{HF_FILE}"
    assert str(info.value) == (
        f"timm:tiny_test: download failed (HTTP 404 Not Found) from {url}; "
        f"download {HF_FILE} from {url} and import it with: python -m backbones import-weights timm:tiny_test FILE"
    )
    assert server.count("GET") == 0
    assert _leftovers(env) == []


@pytest.mark.parametrize(
    ("mode", "reason"), [("500", "HTTP 500"), ("wrong-bytes", "SHA-256 mismatch")], ids=["http-500", "wrong-bytes"]
)
def test_hf_failures_during_the_download_leave_no_cache_entry(env, server, mode, reason):
    server.add_hf_file(REPO, HF_FILE, _safetensors_bytes())
    server.fail(mode, methods=("GET",))  # HEAD fine: hf_hub_download has written refs/ and folders by then

    with pytest.raises(DownloadError, match=rf"download failed \({reason}"):
        downloads.fetch_hf(REPO, HF_FILE, model="timm:tiny_test")
    assert server.count("GET") == 1
    assert _leftovers(env) == []


def test_hf_endpoint_refused(env, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", refused_url("").rstrip("/"))
    with pytest.raises(DownloadError, match=r"\(connection refused\) from http://127\.0\.0\.1:\d+/timm/"):
        downloads.fetch_hf(REPO, HF_FILE)
    assert _leftovers(env) == []


def test_hf_stalled_endpoint_times_out(env, server):
    server.add_hf_file(REPO, HF_FILE, _safetensors_bytes())
    server.fail("stall", methods=("HEAD",))
    with pytest.raises(DownloadError, match=r"no data for 1 s"):
        downloads.fetch_hf(REPO, HF_FILE, timeout=1)
    assert server.count("GET") == 0
    assert _leftovers(env) == []


def test_hf_cancel(env, server):
    server.add_hf_file(REPO, HF_FILE, _safetensors_bytes())
    cancel = threading.Event()
    with pytest.raises(CancelledError):
        downloads.fetch_hf(REPO, HF_FILE, cancel=cancel, progress=lambda done, total: done and cancel.set())
    assert _leftovers(env) == []


# ---------------------------------------------------------------- offline mode


def test_offline_makes_no_request(env, server, monkeypatch, checkpoints):
    _mirror(server, monkeypatch)
    server.add_hf_file(REPO, HF_FILE, _safetensors_bytes())
    monkeypatch.setenv("BACKBONES_OFFLINE", "1")

    with pytest.raises(WeightsUnavailableError) as info:
        _fetch_tv(checkpoints)
    assert str(info.value) == (
        f"resnet18: weights not on this machine and offline mode is on; copy {TV_NAME} to {checkpoints / TV_NAME} "
        f"(from {OFFICIAL}) or import it with: python -m backbones import-weights resnet18 FILE"
    )
    assert not isinstance(info.value, DownloadError)
    with pytest.raises(WeightsUnavailableError, match="offline mode is on"):
        downloads.fetch_hf(REPO, HF_FILE, model="timm:tiny_test")

    monkeypatch.setenv("BACKBONES_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the Hub's own switch covers timm files only
    with pytest.raises(WeightsUnavailableError, match="offline mode is on"):
        downloads.fetch_hf(REPO, HF_FILE)
    assert server.requests == []
    assert _leftovers(env) == []


def test_offline_still_finds_cached_files(env, server, monkeypatch, checkpoints):
    _mirror(server, monkeypatch)
    server.add_hf_file(REPO, HF_FILE, _safetensors_bytes())
    tv, hf = _fetch_tv(checkpoints), downloads.fetch_hf(REPO, HF_FILE)
    before = len(server.requests)
    monkeypatch.setenv("BACKBONES_OFFLINE", "1")
    assert _fetch_tv(checkpoints) == tv
    assert downloads.fetch_hf(REPO, HF_FILE) == hf
    assert len(server.requests) == before


# ---------------------------------------------------------------- concurrency: one GET, everyone succeeds


@pytest.mark.parametrize("source", ["torchvision", "hf"])
def test_concurrent_threads_download_once(env, server, monkeypatch, checkpoints, source):
    _mirror(server, monkeypatch)
    server.add_hf_file(REPO, HF_FILE, _safetensors_bytes())
    server.delay_s = 0.3
    start = threading.Barrier(3)
    results, errors = [], []

    def worker():
        start.wait()
        try:
            results.append(_fetch_tv(checkpoints) if source == "torchvision" else downloads.fetch_hf(REPO, HF_FILE))
        except Exception as exc:  # collected, asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert len(results) == 3 and len(set(results)) == 1
    assert server.count("GET") == 1


_CHILD = textwrap.dedent(
    """
    import sys, types
    from pathlib import Path
    # Load backbones.zoo.downloads without backbones/__init__.py, which imports torch (seconds per process).
    package = types.ModuleType("backbones")
    package.__path__ = [sys.argv[1] + "/backbones"]
    sys.modules["backbones"] = package
    sys.path.insert(0, sys.argv[1])
    from backbones.zoo import downloads
    if sys.argv[2] == "hf":
        print(downloads.fetch_hf(sys.argv[3], sys.argv[4]))
    else:
        print(downloads.fetch_torchvision(sys.argv[3], Path(sys.argv[4])))
    """
)


@pytest.mark.parametrize("source", ["torchvision", "hf"])
def test_two_processes_download_once(env, server, monkeypatch, checkpoints, source):
    _mirror(server, monkeypatch)
    server.add_hf_file(REPO, HF_FILE, _safetensors_bytes())
    server.delay_s = 0.5
    args = [REPO, HF_FILE] if source == "hf" else [OFFICIAL, str(checkpoints)]
    child_env = {**os.environ, "HF_HUB_DISABLE_TELEMETRY": "1"}  # the children import huggingface_hub afresh
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(ROOT), source, *args],
            env=child_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [child.communicate(timeout=120) for child in children]
    assert [child.returncode for child in children] == [0, 0], outputs
    assert outputs[0][0] == outputs[1][0]
    assert server.count("GET") == 1


# ---------------------------------------------------------------- progress bar


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_progress_bar_plain_lines_every_tenth():
    stream, clock = io.StringIO(), _Clock()
    bar = ProgressBar("resnet18", stream=stream, clock=clock)
    for done in range(0, 100_000_001, 1_000_000):
        bar(done, 100_000_000)
        clock.now += 0.05  # 20 MB/s
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 11  # 0 %, 10 %, ..., 100 %
    assert lines[5].startswith("resnet18: 50.0 MB / 100.0 MB  20.0 MB/s  ETA 0:02")


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_redraws_at_most_ten_times_a_second():
    stream, clock = _Tty(), _Clock()
    bar = ProgressBar("x", stream=stream, clock=clock)
    for done in range(1, 101):
        clock.now += 0.01  # 100 updates in one second
        bar(done * 1000, 100_000)
    bar.close()
    text = stream.getvalue()
    assert 9 <= text.count("\r") <= 12
    assert text.endswith("\n")
    assert "0.1 MB / 0.1 MB" in text


def test_discard_hf_removes_link_and_blob(env, server):
    server.add_hf_file(REPO, HF_FILE, _safetensors_bytes())
    path = downloads.fetch_hf(REPO, HF_FILE)
    blob = path.resolve()
    downloads.discard_hf(REPO, HF_FILE)
    assert not path.exists() and not blob.exists()
    downloads.discard_hf(REPO, HF_FILE)  # nothing cached: nothing to do
