"""What a fine-tune leaves behind: its epoch records and result, the notes' text log, the CSV, ``run.json``.

The text log is what the seed notes print, one line per epoch, under a Markdown heading per stage (so the
Training runs page names the blocks ``head`` and ``last-stage``)::

    # head
    epoch 1, loss 1.0950, train accuracy 0.417, test accuracy 0.500, use time 0.031
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from backbones.errors import BackboneError

LOG_NAME = "train.log"
CSV_NAME = "train.csv"
RESULT_NAME = "run.json"
CSV_FIELDS = ("stage", "epoch", "loss", "train_acc", "val_loss", "val_acc", "lr", "time_s")


class TrainingDivergedError(BackboneError):
    """The loss became NaN or infinite; ``result`` describes the run up to the last good epoch."""

    def __init__(self, message: str, result: FinetuneResult | None = None):
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class EpochRecord:
    """One epoch: ``stage`` (``head`` or ``last-stage``), its number within the stage (from 1), mean training
    loss and accuracy, validation loss and accuracy, the learning rate it ran at and its seconds."""

    stage: str
    epoch: int
    loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    lr: float
    time_s: float
    improved: bool = False  # the best validation result so far: the checkpoint holds these weights

    def log_line(self) -> str:
        """The notes' line: ``epoch 12, loss 0.0250, train accuracy 0.992, test accuracy 0.766, use time 19.630``."""
        return (f"epoch {self.epoch}, loss {self.loss:.4f}, train accuracy {self.train_acc:.3f}, "
                f"test accuracy {self.val_acc:.3f}, use time {self.time_s:.3f}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class FinetuneResult:
    """What a fine-tune did: the ``--json`` document of ``python -m backbones finetune``."""

    model: str
    weights: str | None
    stage: str
    dataset: str
    classes: tuple[str, ...]
    splits: dict[str, int]
    epochs_run: int
    best_epoch: int | None
    best_stage: str | None
    best_val_acc: float | None
    test_acc: float | None
    checkpoint: str | None
    log: str | None
    csv: str | None
    stopped: str  # "completed" | "early-stopped" | "cancelled" | "diverged"
    message: str
    device: str
    world_size: int
    skipped_images: int
    elapsed_s: float
    history: tuple[EpochRecord, ...] = field(default=())

    def to_dict(self) -> dict:
        d = asdict(self)
        d["classes"] = list(self.classes)
        d["history"] = [r.to_dict() for r in self.history]
        return d


def default_run_dir(model: str, dataset: str, stage: str) -> Path:
    """``runs_dir()/<time>-<model>-<dataset>-<stage>``: where a run writes when no folder is given."""
    from backbones.paths import runs_dir

    def safe(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:40] or "x"

    stamp = time.strftime("%Y%m%d-%H%M%S")
    return runs_dir() / f"{stamp}-{safe(model)}-{safe(dataset)}-{stage}"


class RunFiles:
    """The text log (the notes' format) and the CSV, appended and flushed per epoch; rank 0 only."""

    def __init__(self, out_dir: Path | None):
        self.out_dir = out_dir
        self.log_path = self.csv_path = None
        if out_dir is None:
            return
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            self.log_path, self.csv_path = out_dir / LOG_NAME, out_dir / CSV_NAME
            self.log_path.write_text("", encoding="utf-8")
            self.csv_path.write_text(",".join(CSV_FIELDS) + "\n", encoding="utf-8")
        except OSError as exc:
            raise BackboneError(f"cannot write the run's files in {out_dir}: {exc.strerror or exc}") from exc

    def _append(self, path: Path | None, text: str) -> None:
        if path is None:
            return
        try:
            with open(path, "a", encoding="utf-8") as f:
                f.write(text)
        except OSError as exc:
            raise BackboneError(f"cannot write {path}: {exc.strerror or exc}") from exc

    def heading(self, text: str) -> None:
        # A Markdown heading: the Training runs parser names the block of epoch lines below after it.
        self._append(self.log_path, f"# {text}\n")

    def epoch(self, record: EpochRecord) -> None:
        self._append(self.log_path, record.log_line() + "\n")
        buf = io.StringIO()
        row = record.to_dict()
        csv.writer(buf, lineterminator="\n").writerow(
            [row["stage"], row["epoch"], *(f"{row[k]:.6g}" for k in CSV_FIELDS[2:])]
        )
        self._append(self.csv_path, buf.getvalue())


def write_result(run_dir: Path, result: FinetuneResult) -> None:
    from backbones.jsonsafe import json_safe
    from backbones.paths import write_atomically

    text = json.dumps(json_safe(result.to_dict()), indent=1, ensure_ascii=False)
    try:
        write_atomically(run_dir / RESULT_NAME, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    except OSError as exc:
        raise BackboneError(f"cannot write {run_dir / RESULT_NAME}: {exc.strerror or exc}") from exc
