"""Issue 21, finding 10: what one training log may cost, and run names that read as they are.

A 1.8 MB document of 20,000 headings is 50 runs and a notice (it made 20,009 text inputs); event
files past a size or scalar-count cap are refused in one line (a 50 MB one cost 23 s and 800 MB);
the Training page's cached reads are bounded (entries, runs, epochs) and keyed by content digest;
bidi controls are dropped from run names ("\u202egol.exe" showed as "exe.log").
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from backbones.data.logs import MAX_RUNS_PER_LOG, read_log, read_tensorboard, tensorboard_log
from backbones.errors import LogFormatError
from tests.corpus import BIDI_CONTROLS as BIDI
from tests.corpus import many_headings_log


def test_twenty_thousand_headings_are_fifty_runs_and_one_notice():
    data = many_headings_log(20_000)
    assert len(data) > 1_500_000
    notices: list[str] = []
    started = time.process_time()
    runs = read_log(data, filename="notes.md", notices=notices)
    elapsed = time.process_time() - started
    assert len(runs) == MAX_RUNS_PER_LOG == 50
    assert notices == ["notes.md: 20,000 runs in one log; only the first 50 are read (19,950 dropped)"]
    assert runs[0].notes[-1] == notices[0]  # the CLI prints notes; --json carries them
    assert [r.name for r in runs[:2]] == ["Run 0", "Run 1"]
    assert elapsed < 20, f"{elapsed:.1f} s"


def test_the_cli_says_how_many_runs_were_dropped(tmp_path, capsys):
    from backbones.cli import main

    path = tmp_path / "notes.md"
    path.write_bytes(many_headings_log(60))
    assert main(["logs", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.count("\nRun ") + out.startswith("Run ") <= 50
    assert "note: Run 0: notes.md: 60 runs in one log; only the first 50 are read (10 dropped)" in out


def test_bidi_controls_are_dropped_from_run_names_and_sources():
    text = f"# \u202egol.exe{BIDI}\nepoch 1, loss 0.5, train accuracy 0.8\nepoch 2, loss 0.4, train accuracy 0.9\n"
    (run,) = read_log(text.encode(), filename=f"\u202eevil{BIDI}\x1b[2J.txt")
    assert run.name == "gol.exe"
    assert not set(BIDI) & set(run.source) and "\x1b" not in run.source
    (plain,) = read_log(b"epoch 1, loss 0.5\n", filename="\u2067abc\u2069\u200f.log")
    assert plain.name == "abc"
    assert run.renamed(f"mine\u202e{BIDI}\n x").name == "mine x"
    with pytest.raises(LogFormatError, match="cannot be empty"):
        run.renamed(BIDI)


def _write_events(logdir: Path, steps: int) -> Path:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(logdir))
    for i in range(steps):
        writer.add_scalar("loss/train", 1.0 / (i + 1), i)
        writer.add_scalar("accuracy/test", 0.5, i)
    writer.close()
    (event,) = logdir.glob("events.out.tfevents.*")
    return event


def test_event_files_past_the_byte_cap_are_refused_before_reading(tmp_path, monkeypatch):
    event = _write_events(tmp_path / "run", 40)
    size = event.stat().st_size
    assert len(read_tensorboard(tmp_path, max_bytes=size)[0].epochs) == 40
    with pytest.raises(LogFormatError, match=r"of TensorBoard events is more than the .* MiB read here") as info:
        read_tensorboard(tmp_path, max_bytes=size - 1)
    assert "\n" not in str(info.value)
    monkeypatch.setattr(tensorboard_log, "MAX_EVENT_BYTES", size - 1)  # the default, for uploads too
    with pytest.raises(LogFormatError, match="export the scalars to CSV"):
        read_log(event.read_bytes(), filename=event.name)
    assert tensorboard_log.MAX_EVENT_BYTES < 50 * 2**20  # the 50 MB upload of the finding is refused


def test_event_files_past_the_scalar_cap_are_refused(tmp_path, monkeypatch):
    _write_events(tmp_path / "run", 40)  # 80 scalar values
    assert len(read_tensorboard(tmp_path, max_scalars=80)[0].epochs) == 40
    with pytest.raises(LogFormatError, match="more than 79 scalar values"):
        read_tensorboard(tmp_path, max_scalars=79)
    monkeypatch.setattr(tensorboard_log, "MAX_SCALARS", 10)
    with pytest.raises(LogFormatError, match="more than 10 scalar values"):
        read_log(tmp_path)


# ------------------------------------------------------------------ the Training page's cache


def _cached_read():
    from dashboard import caches

    return caches, caches._training_runs


def test_the_page_cache_is_bounded_and_keyed_by_digest(monkeypatch):
    caches, cached = _cached_read()
    assert cached._info.max_entries == 4
    files = tuple((f"notes{i}.md", many_headings_log(60 + i)) for i in range(3))
    calls = []
    real = cached._info.func
    monkeypatch.setattr(cached._info, "func", lambda key, _files: calls.append(key) or real(key, _files))
    cached.clear()
    runs, errors, notices = caches.training_runs(files)
    assert len(runs) == caches.TRAINING_MAX_RUNS == 100 and errors == []
    assert notices[:3] == [f"notes{i}.md: {60 + i} runs in one log; only the first 50 are read ({10 + i} dropped)"
                           for i in range(3)]
    assert notices[3] == "150 runs uploaded; the first 100 are shown (50 dropped)"
    assert calls == [tuple((n, caches.digest(d)) for n, d in files)]  # names and digests, not the bytes
    caches.training_runs(files)
    assert len(calls) == 1  # the same files again: from the cache

    monkeypatch.setattr(caches, "TRAINING_MAX_EPOCHS", 100)
    cached.clear()
    runs, errors, _ = caches.training_runs(files[:1] + (("big.log", b"".join(
        f"epoch {i}, loss 0.5\n".encode() for i in range(1, 102))),))
    assert len(runs) == 50 and errors == ["big.log: 101 epochs; this page keeps at most 100 in all "
                                          "(read it with python -m backbones logs)"]
    cached.clear()
