"""The entry points: :func:`read_log` picks the format of a path or uploaded bytes, :func:`read_logs` reads several."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from backbones.data.logs import runs as _runs
from backbones.data.logs.csv_log import looks_like_csv, parse_csv_log
from backbones.data.logs.runs import Run, cap_runs
from backbones.data.logs.tensorboard_log import read_tensorboard
from backbones.data.logs.text_log import parse_text_log
from backbones.errors import LogFormatError

#: Largest log file read (text logs of thousands of epochs are a few MB).
MAX_LOG_BYTES = 256 * 1024 * 1024


def _decode(data: bytes, label: str) -> str:
    """Text of a log that :func:`read_log` found non-empty and free of NUL bytes; binary junk is refused."""
    head = data[:8192]
    controls = sum(1 for b in head if b < 9 or 13 < b < 32)
    if controls > len(head) * 0.05:
        raise LogFormatError(f"{label}: binary data, not a text log, CSV or TensorBoard event file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Logs saved on Chinese Windows systems are often GBK; the epoch lines are ASCII either way.
        return data.decode("gb18030", errors="replace")


def parse_log_text(text: str, *, source: str = "log", name: str | None = None) -> list[Run]:
    """Runs from log text: CSV when the name ends in .csv/.tsv or the first line has an epoch column, else text."""
    if source.lower().endswith((".csv", ".tsv")) or looks_like_csv(text):
        return parse_csv_log(text, source=source, name=name)
    return parse_text_log(text, source=source, name=name)


def _read_events_bytes(data: bytes, label: str, name: str | None) -> list[Run]:
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "run" / "events.out.tfevents.upload"
        target.parent.mkdir()
        target.write_bytes(data)
        runs = read_tensorboard(target, name=name)
    if name is None:
        runs = [r.renamed(Path(label).name.split(".tfevents")[0].split("events.out")[0].strip(".") or "TensorBoard run")
                for r in runs]
    return [replace(r, source=label) for r in runs]


def read_log(
    source: str | os.PathLike | bytes,
    *,
    name: str | None = None,
    filename: str | None = None,
    max_runs: int | None = None,
    notices: list[str] | None = None,
) -> list[Run]:
    """Runs from one log: a path (text, CSV, TensorBoard file or directory) or uploaded bytes.

    ``filename`` names uploaded bytes (its ending picks the format, its stem the
    run name). ``name`` renames the run; a file holding several runs gets
    ``"<name> (<heading>)"``. At most ``max_runs`` (:data:`MAX_RUNS_PER_LOG`) runs are kept; the one-line notice
    saying how many were dropped is appended to ``notices`` (and to the first run's notes).
    Raises :class:`LogFormatError`.
    """
    runs = _read_log(source, name=name, filename=filename)
    label = Path(filename or (str(source) if not isinstance(source, (bytes, bytearray, memoryview)) else "upload")).name
    runs, notice = cap_runs(runs, label or "log", max_runs=_runs.MAX_RUNS_PER_LOG if max_runs is None else max_runs)
    if notice is not None and notices is not None:
        notices.append(notice)
    return runs


def _read_log(source: str | os.PathLike | bytes, *, name: str | None, filename: str | None) -> list[Run]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        label = filename or "upload"
    else:
        path = Path(source).expanduser()
        label = str(source)
        if path.is_dir() or (path.is_file() and "tfevents" in path.name):
            return read_tensorboard(path, name=name)
        if not path.is_file():
            raise LogFormatError(f"{label}: no such file or directory")
        size = path.stat().st_size
        if size > MAX_LOG_BYTES:
            raise LogFormatError(f"{label}: {size / 2**20:.0f} MiB is too large for a training log")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise LogFormatError(f"{label}: cannot read ({exc.strerror or exc})") from exc
    if not data.strip():
        raise LogFormatError(f"{label}: file is empty")
    if "tfevents" in Path(label).name:
        return _read_events_bytes(data, label, name)
    if b"\x00" in data[:8192]:
        # Maybe a renamed event file; otherwise it is binary junk.
        try:
            return _read_events_bytes(data, label, name)
        except LogFormatError:
            raise LogFormatError(f"{Path(label).name}: binary data, not a text log, CSV or TensorBoard event file") from None
    return parse_log_text(_decode(data, Path(label).name), source=label, name=name)


def read_logs(
    sources: Sequence[str | os.PathLike],
    *,
    names: Sequence[str | None] | None = None,
) -> list[Run]:
    """Runs from several logs, in order; ``names[i]`` renames the runs of ``sources[i]``."""
    names = list(names or [])
    if len(names) > len(sources):
        raise LogFormatError(f"{len(names)} names for {len(sources)} logs")
    names += [None] * (len(sources) - len(names))
    runs: list[Run] = []
    for src, n in zip(sources, names):
        runs += read_log(src, name=n)
    return runs
