"""Downloads against a loopback server: the torchvision mirror path, the Hugging Face cache path, every failure.

Nothing touches the internet: HF_ENDPOINT and the mirror point at a server on 127.0.0.1 started here, and TORCH_HOME /
HF_HOME are temporary folders. After every failure the caches are listed and must be empty.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from backbones.errors import BackboneError, CancelledError, DownloadError, WeightsUnavailableError
from backbones.zoo import downloads, hub
from backbones.zoo.progress import ProgressBar
from tests.corpus import HOSTILE_HUB_HEADERS, HOSTILE_REDIRECTS
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

    path = hub.fetch_hf(REPO, HF_FILE, model="timm:tiny_test", progress=lambda d, t: seen.append((d, t)))

    assert path.is_relative_to(env / "hf" / "hub")
    assert path.read_bytes() == data
    assert load_file(path)["fc.weight"][1, 2].item() == 202.0
    assert seen[-1] == (len(data), len(data))
    assert server.count("GET") == 1
    # timm's own call finds the same file without the network.
    assert Path(hf_hub_download(REPO, HF_FILE, cache_dir=env / "hf" / "hub", local_files_only=True)) == path
    before = len(server.requests)
    assert hub.fetch_hf(REPO, HF_FILE) == path
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
        hub.fetch_hf(REPO, HF_FILE, model="timm:tiny_test")
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
        hub.fetch_hf(REPO, HF_FILE, model="timm:tiny_test")
    assert server.count("GET") == 1
    assert _leftovers(env) == []


def test_hf_endpoint_refused(env, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", refused_url("").rstrip("/"))
    with pytest.raises(DownloadError, match=r"\(connection refused\) from http://127\.0\.0\.1:\d+/timm/"):
        hub.fetch_hf(REPO, HF_FILE)
    assert _leftovers(env) == []


def test_hf_stalled_endpoint_times_out(env, server):
    server.add_hf_file(REPO, HF_FILE, _safetensors_bytes())
    server.fail("stall", methods=("HEAD",))
    with pytest.raises(DownloadError, match=r"no data for 1 s"):
        hub.fetch_hf(REPO, HF_FILE, timeout=1)
    assert server.count("GET") == 0
    assert _leftovers(env) == []


def test_hf_cancel(env, server):
    server.add_hf_file(REPO, HF_FILE, _safetensors_bytes())
    cancel = threading.Event()
    with pytest.raises(CancelledError):
        hub.fetch_hf(REPO, HF_FILE, cancel=cancel, progress=lambda done, total: done and cancel.set())
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
        hub.fetch_hf(REPO, HF_FILE, model="timm:tiny_test")

    monkeypatch.setenv("BACKBONES_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the Hub's own switch covers timm files only
    with pytest.raises(WeightsUnavailableError, match="offline mode is on"):
        hub.fetch_hf(REPO, HF_FILE)
    assert server.requests == []
    assert _leftovers(env) == []


def test_offline_still_finds_cached_files(env, server, monkeypatch, checkpoints):
    _mirror(server, monkeypatch)
    server.add_hf_file(REPO, HF_FILE, _safetensors_bytes())
    tv, hf = _fetch_tv(checkpoints), hub.fetch_hf(REPO, HF_FILE)
    before = len(server.requests)
    monkeypatch.setenv("BACKBONES_OFFLINE", "1")
    assert _fetch_tv(checkpoints) == tv
    assert hub.fetch_hf(REPO, HF_FILE) == hf
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
            results.append(_fetch_tv(checkpoints) if source == "torchvision" else hub.fetch_hf(REPO, HF_FILE))
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
    from backbones.zoo import downloads, hub
    if sys.argv[2] == "hf":
        print(hub.fetch_hf(sys.argv[3], sys.argv[4]))
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
    path = hub.fetch_hf(REPO, HF_FILE)
    blob = path.resolve()
    hub.discard_hf(REPO, HF_FILE)
    assert not path.exists() and not blob.exists()
    hub.discard_hf(REPO, HF_FILE)  # nothing cached: nothing to do


# ---------------------------------------------------------------- hostile Hubs: only hex names, only inside the cache


def _outside(env: Path) -> list[str]:
    """Everything under the test's folder outside the two caches (what a hostile server must not create)."""
    return sorted(str(p.relative_to(env)) for p in env.rglob("*") if p.parts[len(env.parts)] not in ("torch", "hf"))


@pytest.mark.parametrize(("header", "value", "word"), HOSTILE_HUB_HEADERS.values(), ids=HOSTILE_HUB_HEADERS.keys())
def test_hub_names_that_are_not_hex_hashes_are_refused_before_anything_is_written(env, server, header, value, word):
    victim = env / "victim" / "ETAG_ESCAPE"
    victim.parent.mkdir()
    victim.write_bytes(b"precious")
    hostile = value.format(victim=str(victim).lstrip("/"))
    server.add_hf_file(REPO, HF_FILE, _safetensors_bytes())
    setattr(server, f"hf_{header}", hostile)

    with pytest.raises(DownloadError) as info:
        hub.fetch_hf(REPO, HF_FILE, model="timm:tiny_test")

    message = str(info.value)
    assert "\n" not in message
    assert f"(the server's {word} " in message.lower() and "refused" in message
    assert server.count("GET") == 0  # refused on the HEAD's answer
    assert victim.read_bytes() == b"precious"
    assert _outside(env) == ["victim", "victim/ETAG_ESCAPE"]
    assert _leftovers(env) == []


@pytest.mark.parametrize("kind", ["weak-sha256", "git-sha1"])
def test_hub_etags_in_their_legal_forms_are_accepted(env, server, kind):
    data = _safetensors_bytes()
    server.add_hf_file(REPO, HF_FILE, data)
    sha = hashlib.sha256(data).hexdigest()
    server.hf_etag = f'W/"{sha}"' if kind == "weak-sha256" else '"' + hashlib.sha1(data).hexdigest() + '"'

    path = hub.fetch_hf(REPO, HF_FILE)

    assert path.read_bytes() == data
    blob = path.resolve()
    assert blob.parent == env / "hf" / "hub" / "models--timm--tiny_test.in1k" / "blobs"
    assert blob.name == (sha if kind == "weak-sha256" else hashlib.sha1(data).hexdigest())
    refs = env / "hf" / "hub" / "models--timm--tiny_test.in1k" / "refs" / "main"
    assert refs.read_text() == "0123456789abcdef0123456789abcdef01234567"


def test_cache_entries_pointing_outside_the_cache_are_neither_used_nor_deleted(env, server):
    victim = env / "victim.safetensors"
    victim.write_bytes(b"precious")
    repo_dir = env / "hf" / "hub" / "models--timm--tiny_test.in1k"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    (repo_dir / "snapshots" / commit).mkdir(parents=True)
    (repo_dir / "snapshots" / commit / HF_FILE).symlink_to(victim)

    assert hub.cached_hf(REPO, HF_FILE) is None
    hub.discard_hf(REPO, HF_FILE)
    assert victim.read_bytes() == b"precious"
    with pytest.raises(downloads.Refused, match="outside the cache"):
        downloads.inside(env / "hf" / "hub", repo_dir / "snapshots" / commit / HF_FILE)


# ---------------------------------------------------------------- hostile mirrors: sizes, time, redirects, Cancel


def test_a_lying_content_length_is_refused_before_reading(env, server, monkeypatch, checkpoints):
    _mirror(server, monkeypatch)
    server.fail("huge-length")

    with pytest.raises(DownloadError, match=r"announces 1000000\.0 MB, more than the 0\.2 MB allowed; refused"):
        _fetch_tv(checkpoints, expected_size=len(TV_BYTES))
    assert _leftovers(env) == []


def test_a_body_larger_than_the_catalog_size_is_refused(env, server, monkeypatch, checkpoints):
    _mirror(server, monkeypatch)
    server.fail("no-length")  # nothing announced: counted while reading
    with pytest.raises(DownloadError, match=r"sent more than the 0\.1 MB allowed; refused"):
        _fetch_tv(checkpoints, expected_size=len(TV_BYTES) // 2)
    assert _leftovers(env) == []


def test_the_cap_applies_when_the_size_is_unknown(env, server, monkeypatch, checkpoints):
    _mirror(server, monkeypatch)
    server.fail("no-length")
    monkeypatch.setenv("BACKBONES_DOWNLOAD_MAX_MB", "0.1")
    with pytest.raises(DownloadError, match=r"sent more than the 0\.1 MB allowed"):
        _fetch_tv(checkpoints)
    monkeypatch.setenv("BACKBONES_DOWNLOAD_MAX_MB", "lots")
    with pytest.raises(BackboneError, match="BACKBONES_DOWNLOAD_MAX_MB must be a positive number"):
        _fetch_tv(checkpoints)
    assert _leftovers(env) == []


@pytest.mark.parametrize("source", ["torchvision", "hf"])
def test_no_room_on_disk_is_refused_before_any_request(env, server, monkeypatch, checkpoints, source):
    from backbones.zoo import transfer

    _mirror(server, monkeypatch)
    server.add_hf_file(REPO, HF_FILE, _safetensors_bytes())
    monkeypatch.setattr(transfer.shutil, "disk_usage", lambda path: shutil_usage(free=10 * 2**20))
    with pytest.raises(DownloadError, match=r"not enough free disk space for the cache: 0\.2 MB needed"):
        if source == "torchvision":
            _fetch_tv(checkpoints, expected_size=len(TV_BYTES))
        else:
            hub.fetch_hf(REPO, HF_FILE)
    assert server.count("GET") == 0
    assert _leftovers(env) == []


def shutil_usage(*, free: int):
    return shutil._ntuple_diskusage(100 * 2**30, 100 * 2**30 - free, free)  # noqa: SLF001 - its own result type


def test_the_overall_deadline_stops_a_trickle(env, server, monkeypatch, checkpoints):
    _mirror(server, monkeypatch)
    server.fail("trickle")
    monkeypatch.setenv("BACKBONES_DOWNLOAD_DEADLINE", "0.6")
    with pytest.raises(DownloadError, match=r"not finished within 0\.6 s \(BACKBONES_DOWNLOAD_DEADLINE\)"):
        _fetch_tv(checkpoints)  # each byte comes well within the 30 s read timeout
    assert _leftovers(env) == []


def _thread_count_settles(baseline: int, within_s: float = 3.0) -> int:
    deadline = time.monotonic() + within_s
    while threading.active_count() > baseline and time.monotonic() < deadline:
        time.sleep(0.05)
    return threading.active_count()


@pytest.mark.parametrize("source", ["torchvision", "hf"])
def test_cancel_during_a_trickle_returns_at_once_and_leaves_nothing(env, server, monkeypatch, checkpoints, source):
    _mirror(server, monkeypatch)
    server.add_hf_file(REPO, HF_FILE, _safetensors_bytes())
    server.fail("trickle", methods=("GET",))
    baseline = threading.active_count()
    cancel, seen, outcome = threading.Event(), [], {}

    def download():
        try:
            if source == "torchvision":
                _fetch_tv(checkpoints, cancel=cancel, progress=lambda d, t: seen.append(d))
            else:
                hub.fetch_hf(REPO, HF_FILE, cancel=cancel, progress=lambda d, t: seen.append(d))
        except BaseException as exc:  # collected, asserted below
            outcome["error"] = exc
        outcome["at"] = time.monotonic()

    worker = threading.Thread(target=download)
    worker.start()
    time.sleep(1.0)
    cancel.set()
    cancelled_at = time.monotonic()
    worker.join(timeout=5)

    assert not worker.is_alive()
    assert isinstance(outcome.get("error"), CancelledError)
    assert outcome["at"] - cancelled_at < 1.0  # a poll interval (0.25 s), not the 30 s read timeout
    assert max(seen) >= 2 and len(seen) >= 4  # bytes counted as they trickled in, redraws while waiting
    assert _leftovers(env) == []
    assert _thread_count_settles(baseline) == baseline  # the server's handler ends once we hung up; none of ours


def test_cancel_while_waiting_for_another_downloads_lock(env, server, monkeypatch, checkpoints):
    from backbones.zoo.locking import file_lock

    _mirror(server, monkeypatch)
    cancel, outcome, beats = threading.Event(), {}, []
    checkpoints.mkdir(parents=True)

    def download():
        try:
            _fetch_tv(checkpoints, cancel=cancel, progress=lambda d, t: beats.append(d))
        except BaseException as exc:  # collected, asserted below
            outcome["error"] = exc

    with file_lock(checkpoints / f"{TV_NAME}.lock"):  # another visitor's download holds it
        worker = threading.Thread(target=download)
        worker.start()
        time.sleep(0.8)
        cancel.set()
        worker.join(timeout=2)
        assert not worker.is_alive()
    assert isinstance(outcome.get("error"), CancelledError)
    assert len(beats) >= 2  # the page was redrawn while waiting (Streamlit stops a rerun there)
    assert server.requests == []


def test_a_progress_callback_that_stops_the_page_stops_a_silent_server(env, server, monkeypatch, checkpoints):
    """Streamlit stops a rerun by raising from the next widget call: the heartbeat is that call."""

    class Rerun(BaseException):
        pass

    def progress(done, total):
        calls.append(done)
        if len(calls) >= 3:
            raise Rerun

    _mirror(server, monkeypatch)
    server.fail("stall")  # no headers at all
    calls: list[int] = []
    started = time.monotonic()
    with pytest.raises(Rerun):
        _fetch_tv(checkpoints, progress=progress)
    assert time.monotonic() - started < 2.0
    assert _leftovers(env) == []


@pytest.mark.parametrize(("location", "reason"), HOSTILE_REDIRECTS.values(), ids=HOSTILE_REDIRECTS.keys())
def test_redirects_only_to_http_and_never_inward(env, server, monkeypatch, checkpoints, location, reason):
    from tests.loopback import LoopbackServer

    internal = LoopbackServer().start()  # an internal service on another port
    try:
        internal.add_file(TV_NAME, TV_BYTES)
        _mirror(server, monkeypatch)
        server.fail("redirect", location=location.format(name=TV_NAME, other=internal.port))
        with pytest.raises(DownloadError, match=rf"download failed \({reason}") as info:
            _fetch_tv(checkpoints)
        assert "\n" not in str(info.value)
        assert internal.requests == []
        assert server.count("GET") <= 6
    finally:
        internal.stop()
    assert _leftovers(env) == []


def test_redirect_checks():
    from backbones.zoo.transfer import Refused, check_redirect

    check_redirect("http://127.0.0.1:8000/a", "http://localhost:8000/cdn/x")  # the mirror itself, by another name
    check_redirect("https://huggingface.co/r", "https://8.8.8.8/x")  # public: fine
    for target in ("http://10.0.0.1/x", "http://169.254.169.254/latest/meta-data", "http://[::ffff:127.0.0.1]:9/x",
                   "http://127.0.0.1:8001/x", "gopher://127.0.0.1:8000/x"):
        with pytest.raises(Refused):
            check_redirect("http://127.0.0.1:8000/a", target)


def test_hf_downloads_report_bytes_as_they_come(env, server):
    data = _safetensors_bytes()
    server.add_hf_file(REPO, HF_FILE, data)
    server.fail("trickle", methods=("GET",))
    server.trickle_s = 0.01
    seen: list[int] = []
    cancel = threading.Event()

    with pytest.raises(CancelledError):
        hub.fetch_hf(REPO, HF_FILE, cancel=cancel,
                           progress=lambda done, total: (seen.append(done), done >= 20 and cancel.set()))
    assert sorted(set(seen))[:5] == [0, 1, 2, 3, 4]  # byte by byte, not once at the end
    assert _leftovers(env) == []


@pytest.mark.skipif(not shutil.which("openssl"), reason="needs the openssl command to make a test certificate")
def test_https_through_the_guarded_reader(tmp_path, monkeypatch):
    """TLS on top of the short socket waits: the handshake and reads retry across polls, Cancel still applies."""
    import http.server
    import ssl

    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem", "-out", "cert.pem",
         "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
        cwd=tmp_path, check=True, capture_output=True,
    )
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "cert.pem"))  # the default context trusts it
    monkeypatch.delenv("BACKBONES_OFFLINE", raising=False)

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            return

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(TV_BYTES)))
            self.end_headers()
            for i in range(0, len(TV_BYTES), 50_000):  # slow: 0.3 s between pieces
                self.wfile.write(TV_BYTES[i : i + 50_000])
                time.sleep(0.3 if self.path == "/slow" else 0)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    base = f"https://127.0.0.1:{httpd.server_address[1]}"
    try:
        path = downloads.fetch_url(f"{base}/{TV_NAME}", tmp_path / "out" / TV_NAME, sha256_prefix=TV_NAME[9:17])
        assert path.read_bytes() == TV_BYTES
        cancel = threading.Event()
        threading.Timer(0.5, cancel.set).start()
        started = time.monotonic()
        with pytest.raises(CancelledError):
            downloads.fetch_url(f"{base}/slow", tmp_path / "out" / "slow.pth", sha256_prefix=None, cancel=cancel)
        assert time.monotonic() - started < 1.5
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [TV_NAME]
    finally:
        httpd.shutdown()
        httpd.server_close()
