"""Training runs of this machine's fine-tunes: every run folder under :func:`backbones.paths.runs_dir`.

Each folder written by :func:`backbones.transfer.finetune.finetune` holds ``train.log`` in the seed notes'
format; its runs are named after the folder (``"<folder> (head)"``, ``"<folder> (last-stage)"``), so the
Training runs page lists them without an upload, including a run still in progress.
"""

from __future__ import annotations

import os
from pathlib import Path

from backbones.data.logs.reader import read_log
from backbones.data.logs.runs import Run
from backbones.errors import BackboneError

#: The log file a run folder holds.
LOG_NAME = "train.log"
#: Most run folders read, newest first.
MAX_LOCAL_RUNS = 50


def local_run_logs(root: str | os.PathLike | None = None, *, limit: int = MAX_LOCAL_RUNS) -> list[Path]:
    """``train.log`` of every run folder under ``root`` (default: the runs folder), newest first."""
    from backbones.paths import runs_dir

    root = Path(root) if root is not None else runs_dir()
    try:
        logs = [p / LOG_NAME for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
        dated = [(log.stat().st_mtime, log) for log in logs if log.is_file()]
    except OSError:
        return []
    return [log for _, log in sorted(dated, key=lambda t: -t[0])[:limit]]


def local_runs(root: str | os.PathLike | None = None, *, limit: int = MAX_LOCAL_RUNS) -> tuple[list[Run], list[str]]:
    """``(runs, problems)`` of this machine's fine-tunes; a log without a finished epoch yet is skipped quietly,
    one that cannot be read gives one message."""
    runs, problems = [], []
    for log in local_run_logs(root, limit=limit):
        try:
            runs.extend(read_log(log, name=log.parent.name))
        except BackboneError as exc:
            if "no epoch lines" not in str(exc):  # a run that has not finished its first epoch
                problems.append(str(exc))
    return runs, problems
