"""Read training logs into runs to compare: the seed notes' text format, CSV and TensorBoard.

The seed notes print one line per epoch (d2l style)::

    epoch 83, loss 0.1116, train accuracy 0.970, test accuracy 0.822, use time 62.638

and paste several runs into one Markdown document under headings ("Vgg19",
"NIN", "googLeNet"). :func:`read_log` accepts

- **text** logs: any line with ``epoch N`` and ``name value`` pairs (commas,
  tabs, ``|``, `` - `` or spaces between them; ``name: value`` and
  ``name=value`` too; Keras' ``Epoch 3/10`` header followed by a metrics line).
  Other lines are ignored. A file splits into several runs where the epoch
  number restarts or goes back, and, in a Markdown document (one with code
  fences or ``#`` headings), where prose separates two blocks of epoch lines.
  Runs are named after the headings above them ("Vgg19 / 初始结构"), else after
  the file (a plain log holding one run is always named after its file).
- **CSV** with an ``epoch`` column and columns such as ``loss``/``train_loss``,
  ``acc``/``train_acc``/``accuracy``, ``val_acc``/``test_acc``/``val_accuracy``,
  ``time`` (Keras' CSVLogger, Lightning's metrics.csv, timm's summary.csv).
- **TensorBoard** event files or log directories: scalar tags such as
  ``loss/train``, ``accuracy/test``, ``train_loss``, ``val_acc``, ``epoch_loss``
  (Keras' ``train/`` and ``validation/`` sub-folders are one run). The step is
  the epoch unless an ``epoch`` scalar says otherwise.

Metric names are read by their words: ``loss`` is a loss, ``acc``/``accuracy``/
``top1`` an accuracy, ``time``/``duration``/``elapsed`` the epoch time in seconds;
``test``/``val``/``valid``/``eval`` make it a test metric, otherwise it is a
training one. Accuracies are fractions: values written with ``%``, or a run whose
accuracies exceed 1, are divided by 100 (the run's ``notes`` say so).

Malformed input raises :class:`LogFormatError` (one line); partly valid logs
keep what parses and count the rest in ``Run.skipped_lines``.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from backbones.errors import LogFormatError

#: Largest log file read (text logs of thousands of epochs are a few MB).
MAX_LOG_BYTES = 256 * 1024 * 1024

FIELDS = ("loss", "train_acc", "test_acc", "time_s", "test_loss")
_TEST_WORDS = {"test", "val", "valid", "validation", "eval", "evaluation", "dev", "testing"}
_TRAIN_WORDS = {"train", "training", "trn", "tr"}
_ACC_WORDS = {"acc", "accuracy", "top1", "acc1", "acc@1"}
_TIME_WORDS = {"time", "duration", "elapsed", "seconds", "secs", "sec", "time_s"}
_IGNORE_WORDS = {"lr", "learning", "rate", "top5", "acc5", "step", "steps", "batch", "iter", "iteration",
                 "err", "error", "grad", "norm", "momentum", "weight", "decay", "eta"}
_EPOCH_NAMES = {"epoch", "epochs", "ep", "epoch_num", "epoch_number", "epoch_idx", "epoch_index"}
_SPLIT_DIRS = {"train", "training", "validation", "val", "valid", "test", "eval"}


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Epoch:
    """One epoch's figures; a figure the log does not give is None. Accuracies are fractions."""

    epoch: int
    loss: float | None = None
    train_acc: float | None = None
    test_acc: float | None = None
    time_s: float | None = None
    test_loss: float | None = None

    @property
    def gap(self) -> float | None:
        """Overfitting gap: train accuracy minus test accuracy."""
        if self.train_acc is None or self.test_acc is None:
            return None
        return self.train_acc - self.test_acc

    def to_dict(self) -> dict:
        return {"epoch": self.epoch, "loss": self.loss, "train_acc": self.train_acc,
                "test_acc": self.test_acc, "time_s": self.time_s, "test_loss": self.test_loss}


@dataclass(frozen=True)
class Best:
    """The best epoch: highest test accuracy (else highest train accuracy, else lowest loss)."""

    epoch: int
    metric: str  # "test_acc" | "train_acc" | "loss"
    value: float
    loss: float | None
    train_acc: float | None
    test_acc: float | None
    gap: float | None

    def to_dict(self) -> dict:
        return {"epoch": self.epoch, "metric": self.metric, "value": self.value, "loss": self.loss,
                "train_acc": self.train_acc, "test_acc": self.test_acc, "gap": self.gap}


@dataclass(frozen=True)
class Run:
    """One training run: its epochs in order and where it came from.

    ``source`` is the file (and, for a run split out of a document, its first
    line: ``notes.md:58``); ``format`` is ``text``, ``csv`` or ``tensorboard``.
    """

    name: str
    source: str
    epochs: tuple[Epoch, ...]
    format: str = "text"
    skipped_lines: int = 0
    notes: tuple[str, ...] = field(default=())

    def renamed(self, name: str) -> Run:
        """The same run called ``name`` ("VGG19 baseline")."""
        name = " ".join(str(name).split())
        if not name:
            raise LogFormatError("a run name cannot be empty")
        return replace(self, name=name)

    def has(self, field_name: str) -> bool:
        return any(getattr(e, field_name) is not None for e in self.epochs)

    def series(self, field_name: str) -> tuple[tuple[int, ...], tuple[float, ...]]:
        """``(epochs, values)`` of one field, leaving out epochs without it (for plotting)."""
        if field_name not in FIELDS and field_name != "gap":
            raise LogFormatError(f"unknown field {field_name!r}; one of {', '.join(FIELDS + ('gap',))}")
        pairs = [(e.epoch, getattr(e, field_name)) for e in self.epochs if getattr(e, field_name) is not None]
        return tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)

    @property
    def first_epoch(self) -> int:
        return self.epochs[0].epoch

    @property
    def last(self) -> Epoch:
        return self.epochs[-1]

    @property
    def best(self) -> Best | None:
        for metric, sign in (("test_acc", 1.0), ("train_acc", 1.0), ("loss", -1.0)):
            candidates = [e for e in self.epochs if getattr(e, metric) is not None]
            if candidates:
                # Earliest epoch on ties: the first time the run got there.
                e = max(candidates, key=lambda e: (sign * getattr(e, metric), -e.epoch))
                return Best(e.epoch, metric, getattr(e, metric), e.loss, e.train_acc, e.test_acc, e.gap)
        return None

    @property
    def mean_epoch_time(self) -> float | None:
        times = [e.time_s for e in self.epochs if e.time_s is not None]
        return sum(times) / len(times) if times else None

    @property
    def total_time(self) -> float | None:
        times = [e.time_s for e in self.epochs if e.time_s is not None]
        return sum(times) if times else None

    @property
    def gap_at_best(self) -> float | None:
        best = self.best
        return best.gap if best else None

    @property
    def gap_at_last(self) -> float | None:
        return self.last.gap

    def summary(self) -> dict:
        """One row of a runs table."""
        best = self.best
        return {
            "name": self.name,
            "source": self.source,
            "format": self.format,
            "epochs": len(self.epochs),
            "first_epoch": self.first_epoch,
            "last_epoch": self.last.epoch,
            "best_epoch": best.epoch if best else None,
            "best_metric": best.metric if best else None,
            "best_test_acc": best.test_acc if best else None,
            "final_test_acc": self.last.test_acc,
            "final_loss": self.last.loss,
            "mean_epoch_time_s": self.mean_epoch_time,
            "total_time_s": self.total_time,
            "gap_at_best": self.gap_at_best,
            "gap_at_last": self.gap_at_last,
        }

    def to_dict(self) -> dict:
        best = self.best
        return {
            "name": self.name,
            "source": self.source,
            "epochs": [e.to_dict() for e in self.epochs],
            "best": best.to_dict() if best else None,
            # extras
            "format": self.format,
            "mean_epoch_time_s": self.mean_epoch_time,
            "total_time_s": self.total_time,
            "gap_at_best": self.gap_at_best,
            "gap_at_last": self.gap_at_last,
            "skipped_lines": self.skipped_lines,
            "notes": list(self.notes),
        }


def summarize_runs(runs: Iterable[Run]) -> list[dict]:
    """One :meth:`Run.summary` row per run, for a comparison table."""
    return [r.summary() for r in runs]


# --------------------------------------------------------------------------- metric names


def _words(key: str) -> list[str]:
    return [w for w in re.split(r"[\s_\-./:|]+", key.strip().lower()) if w]


def classify_metric(key: str, split_hint: str | None = None) -> str | None:
    """The :class:`Epoch` field a metric name means (``"val_accuracy"`` -> ``"test_acc"``), or None."""
    words = _words(key)
    if split_hint:
        words.append(split_hint.lower())
    ws = set(words)
    if not ws or ws & _IGNORE_WORDS:
        return None
    test = bool(ws & _TEST_WORDS)
    if "loss" in ws:
        return "test_loss" if test else "loss"
    if ws & _ACC_WORDS or any(w.startswith("accurac") for w in ws):
        return "test_acc" if test else "train_acc"
    if ws & _TIME_WORDS or "time_s" in key.lower():
        return "time_s"
    return None


def _specific(key: str) -> bool:
    ws = set(_words(key))
    return bool(ws & (_TEST_WORDS | _TRAIN_WORDS))


def _float(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


class _Acc:
    """Fields of one epoch as they are collected, before percentages are resolved."""

    __slots__ = ("epoch", "values", "percent", "line")

    def __init__(self, epoch: int, line: int = 0):
        self.epoch = epoch
        self.values: dict[str, float] = {}
        self.percent: set[str] = set()
        self.line = line

    def put(self, name: str, value: float, *, percent: bool = False, overwrite: bool = True) -> None:
        if overwrite or name not in self.values:
            self.values[name] = value
            if percent:
                self.percent.add(name)
            else:
                self.percent.discard(name)


def _finish(accs: Sequence[_Acc]) -> tuple[tuple[Epoch, ...], list[str]]:
    """Epochs with accuracies as fractions: ``%`` values always, and every value of a run that exceeds 1."""
    notes: list[str] = []
    scaled = False
    bad = 0
    acc_fields = ("train_acc", "test_acc")
    in_percent = any(
        a.values.get(f, 0.0) > 1.0 for a in accs for f in acc_fields if f not in a.percent
    )
    epochs = []
    for a in accs:
        values = dict(a.values)
        for f in acc_fields:
            if f not in values:
                continue
            v = values[f]
            if f in a.percent or in_percent:
                v /= 100.0
                scaled = True
            if not 0.0 <= v <= 1.0:
                bad += 1
                values.pop(f)
            else:
                values[f] = v
        if "time_s" in values and values["time_s"] < 0:
            bad += 1
            values.pop("time_s")
        epochs.append(Epoch(a.epoch, **{f: values.get(f) for f in FIELDS}))
    if scaled:
        notes.append("accuracies were given in percent; converted to fractions")
    if bad:
        notes.append(f"{bad} value(s) out of range were dropped")
    return tuple(epochs), notes


# --------------------------------------------------------------------------- text logs

_EPOCH_RE = re.compile(r"(?<![A-Za-z0-9_])epoch(?:s)?(?![A-Za-z])\s*[:=#]?\s*[\[(]?\s*(\d+)(?:\s*/\s*(\d+))?\s*[\])]?", re.I)
_KEY_WORD = r"[A-Za-z][A-Za-z0-9_@]*(?:[./-][A-Za-z0-9_@]+)*"
_PAIR_RE = re.compile(
    rf"(?P<key>{_KEY_WORD}(?:[ ]{_KEY_WORD}){{0,3}}?)(?:\s*[:=]\s*|\s+)"
    r"(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf)\s*(?P<unit>%|ms|secs?|s)?(?![\w.])",
    re.I,
)
_EPOCH_ONLY_RE = re.compile(r"[\W_]*epoch\s*[:#]?\s*[\[(]?\s*\d+\s*[\])]?[\W_]*", re.I)
_LONG_TOKEN_RE = re.compile(r"\S{41,}")
#: Characters of a line searched for metrics (progress bars make long lines; junk makes longer ones).
MAX_LINE_CHARS = 4000
_FENCE_RE = re.compile(r"^\s*(```|~~~)")
_SEGMENT_RE = re.compile(r"[,;|\t]|\s-\s|\s{3,}")


def _metrics_in(text: str) -> tuple[dict[str, tuple[float, bool]], int]:
    """``{field: (value, percent)}`` from ``name value`` pairs, and how many known names had no usable value."""
    found: dict[str, tuple[float, bool]] = {}
    bad = 0
    # No metric name is 40 characters long; dropping longer tokens keeps the pair search linear.
    text = _LONG_TOKEN_RE.sub(" ~ ", text[:MAX_LINE_CHARS])
    for segment in _SEGMENT_RE.split(text):
        if not segment.strip():
            continue
        matched = False
        for m in _PAIR_RE.finditer(segment):
            name = classify_metric(m.group("key"))
            if name is None:
                continue
            matched = True
            value = _float(m.group("num"))
            if value is None:
                bad += 1
                continue
            unit = (m.group("unit") or "").lower()
            if name == "time_s" and unit == "ms":
                value /= 1000.0
            found.setdefault(name, (value, unit == "%"))
        if not matched and classify_metric(segment.strip()) is not None:
            bad += 1  # "loss n/a", "test accuracy 0.9x1": a known name without a readable value
    return found, bad


def _is_heading_candidate(line: str) -> bool:
    if not line or len(line) > 60:
        return False
    if line[0] in "-*+>`|![$\\<{" or re.match(r"^\d+[.)]\s", line):
        return False
    if line.endswith(("?", "？", ":", "：", "`")):
        return False
    return bool(re.search(r"[^\W\d_]", line))  # some letter, in any script


def _is_title(line: str) -> bool:
    """A short Latin heading such as "Vgg19", "NIN", "ResNet", "GoogLeNet + BN"."""
    return bool(re.fullmatch(r"[A-Za-z][\w+.\-]*(?: [\w+.\-]+){0,2}", line)) and len(line) <= 30


@dataclass
class _Block:
    accs: list[_Acc]
    title: str | None
    context: list[str]
    first_line: int
    skipped: int = 0


def parse_text_log(text: str, *, source: str = "log", name: str | None = None) -> list[Run]:
    """Runs from a plain-text or Markdown training log (see the module docstring).

    Raises :class:`LogFormatError` when no line gives an epoch with metrics.
    """
    lines = text.splitlines()
    document = any(_FENCE_RE.match(ln) or re.match(r"^#{1,6}\s", ln) for ln in lines)
    blocks: list[_Block] = []
    current: _Block | None = None
    in_fence = False
    title: str | None = None
    context: list[str] = []  # heading candidates since the last epoch line
    prose_since_epoch = False
    pending: tuple[int, int] | None = None  # (epoch, line) of a Keras "Epoch 3/10" header
    skipped = 0

    def start_block(line_no: int) -> _Block:
        block = _Block([], title, list(context), line_no)
        blocks.append(block)
        return block

    def add_epoch(epoch: int, metrics: dict[str, tuple[float, bool]], line_no: int) -> None:
        nonlocal current, prose_since_epoch
        last = current.accs[-1] if current and current.accs else None
        new_run = current is None or (document and prose_since_epoch) or (last is not None and epoch < last.epoch)
        if last is not None and not new_run and epoch == last.epoch:
            # The same epoch again: its evaluation line, or per-iteration lines (the last one wins).
            for k, (v, pct) in metrics.items():
                last.put(k, v, percent=pct)
            prose_since_epoch = False
            return
        if new_run:
            current = start_block(line_no)
        acc = _Acc(epoch, line_no)
        for k, (v, pct) in metrics.items():
            acc.put(k, v, percent=pct)
        current.accs.append(acc)
        prose_since_epoch = False

    for line_no, raw in enumerate(lines, start=1):
        if _FENCE_RE.match(raw):
            in_fence = not in_fence
            continue
        line = raw.strip()
        if not line:
            continue
        m = _EPOCH_RE.search(line)
        if m:
            epoch = int(m.group(1))
            rest = line[: m.start()] + " , " + line[m.end():]
            metrics, bad = _metrics_in(rest)
            if metrics:
                pending = None
                add_epoch(epoch, metrics, line_no)
                context.clear()
                if bad and current is not None:
                    current.skipped += 1
            elif m.group(2) or _EPOCH_ONLY_RE.fullmatch(line):
                if pending is not None:
                    skipped += 1
                pending = (epoch, line_no)  # "Epoch 3/10": the figures follow on the next line
            else:
                skipped += 1
            continue
        if pending is not None:
            metrics, _ = _metrics_in(line)
            if metrics:
                add_epoch(pending[0], metrics, pending[1])
                context.clear()
                pending = None
                continue
        if in_fence:
            continue
        heading = line.lstrip("#").strip() if line.startswith("#") else line
        if line.startswith("#") or _is_heading_candidate(heading):
            if _is_title(heading) or line.startswith("#"):
                title = heading
            context.append(heading)
        if current is not None and current.accs:
            prose_since_epoch = True
    if pending is not None:
        skipped += 1
    blocks = [b for b in blocks if b.accs]
    if not blocks:
        raise LogFormatError(
            f"{source}: no epoch lines found (expected lines like 'epoch 3, loss 0.41, train accuracy 0.87, "
            "test accuracy 0.82, use time 62.6', a CSV with an epoch column, or a TensorBoard event file)"
        )
    blocks[0].skipped += skipped
    stem = Path(source).stem or "log"
    # A plain log's stray lines ("training on cpu") are no names; a document's headings are.
    names = _name_blocks(blocks, stem) if document or len(blocks) > 1 else [stem]
    runs = []
    for block, run_name in zip(blocks, names):
        epochs, notes = _finish(block.accs)
        if block.skipped:
            notes.append(f"{block.skipped} line(s) could not be read")
        src = f"{source}:{block.first_line}" if len(blocks) > 1 else source
        runs.append(Run(run_name, src, epochs, "text", block.skipped, tuple(notes)))
    return _apply_name(runs, name)


def _name_blocks(blocks: Sequence[_Block], stem: str) -> list[str]:
    names: list[str] = []
    for i, block in enumerate(blocks):
        last = block.context[-1] if block.context else None
        if block.title and last and last != block.title:
            base = f"{block.title} / {last}"
        elif block.title or last:
            base = block.title or last
        elif i > 0:
            base = names[-1]
        else:
            base = stem
        names.append(base)
    return _deduplicate(names)


def _deduplicate(names: Sequence[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n} ({seen[n]})")
    return out


def _apply_name(runs: list[Run], name: str | None) -> list[Run]:
    if name is None:
        return runs
    if len(runs) == 1:
        return [runs[0].renamed(name)]
    return [r.renamed(f"{name} ({r.name})") for r in runs]


# --------------------------------------------------------------------------- CSV logs


def _sniff_delimiter(first_line: str) -> str:
    counts = {d: first_line.count(d) for d in (",", "\t", ";")}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def _looks_like_csv(text: str) -> bool:
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    delimiter = _sniff_delimiter(first)
    cells = [c.strip().strip('"').lower() for c in first.split(delimiter)]
    return len(cells) >= 2 and any(re.sub(r"[\s\-.]+", "_", c) in _EPOCH_NAMES for c in cells)


def parse_csv_log(text: str, *, source: str = "log.csv", name: str | None = None) -> list[Run]:
    """Runs from a CSV log with a header row including an ``epoch`` column.

    Consecutive rows of one epoch merge (Lightning writes train and validation
    rows separately); an epoch number that goes back starts a new run.
    """
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise LogFormatError(f"{source}: empty CSV")
    delimiter = _sniff_delimiter(lines[0])
    try:
        rows = list(csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter, skipinitialspace=True))
    except csv.Error as exc:
        raise LogFormatError(f"{source}: not a readable CSV ({exc})") from exc
    header = [c.strip() for c in rows[0]]
    normalized = [re.sub(r"[\s\-.]+", "_", c.lower()) for c in header]
    epoch_col = next((i for i, c in enumerate(normalized) if c in _EPOCH_NAMES), None)
    if epoch_col is None:
        raise LogFormatError(f"{source}: CSV has no epoch column (columns: {', '.join(header[:12]) or 'none'})")
    columns: dict[str, int] = {}
    for i, h in enumerate(header):
        if i == epoch_col:
            continue
        f = classify_metric(h)
        if f is None:
            continue
        # An explicit "train_acc"/"val_acc" column wins over a bare "acc".
        if f not in columns or (_specific(h) and not _specific(header[columns[f]])):
            columns[f] = i
    if not columns:
        raise LogFormatError(
            f"{source}: CSV has no loss, accuracy or time columns (columns: {', '.join(header[:12])})"
        )
    runs_accs: list[list[_Acc]] = [[]]
    skipped = 0
    for line_no, row in enumerate(rows[1:], start=2):
        cell = row[epoch_col].strip() if len(row) > epoch_col else ""
        epoch_value = _float(cell)
        if epoch_value is None or epoch_value != int(epoch_value) or epoch_value < 0:
            skipped += 1
            continue
        epoch = int(epoch_value)
        values: dict[str, tuple[float, bool]] = {}
        for f, i in columns.items():
            text_value = row[i].strip() if len(row) > i else ""
            pct = text_value.endswith("%")
            v = _float(text_value.rstrip("%").strip()) if text_value else None
            if v is not None:
                values[f] = (v, pct)
        if not values:  # a row of other figures (Lightning's per-step rows)
            continue
        accs = runs_accs[-1]
        if accs and epoch < accs[-1].epoch:
            runs_accs.append([])
            accs = runs_accs[-1]
        if not accs or epoch != accs[-1].epoch:
            accs.append(_Acc(epoch, line_no))
        for f, (v, pct) in values.items():
            accs[-1].put(f, v, percent=pct)
    runs_accs = [a for a in runs_accs if a]
    if not runs_accs:
        raise LogFormatError(f"{source}: no rows with an epoch number and figures")
    stem = Path(source).stem or "log"
    names = [stem] if len(runs_accs) == 1 else [f"{stem} ({i})" for i in range(1, len(runs_accs) + 1)]
    runs = []
    for i, (accs, run_name) in enumerate(zip(runs_accs, names)):
        epochs, notes = _finish(accs)
        n_skipped = skipped if i == 0 else 0
        if n_skipped:
            notes.append(f"{n_skipped} row(s) could not be read")
        src = f"{source}:{accs[0].line}" if len(runs_accs) > 1 else source
        runs.append(Run(run_name, src, epochs, "csv", n_skipped, tuple(notes)))
    return _apply_name(runs, name)


# --------------------------------------------------------------------------- TensorBoard


def _event_dirs(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    dirs = sorted({f.parent for f in path.rglob("*tfevents*") if f.is_file()})
    return dirs


def read_tensorboard(path: str | os.PathLike, *, name: str | None = None) -> list[Run]:
    """Runs from a TensorBoard event file or log directory (each folder of event files is one run).

    Folders called ``train``/``validation`` (Keras) are the two halves of their
    parent's run. Epoch times come from a ``time`` scalar, else from the event
    wall times (noted).
    """
    try:
        from tensorboard.backend.event_processing import event_accumulator as ea
    except ImportError as exc:  # tensorboard is in requirements.txt; say so if it went missing
        raise LogFormatError("reading TensorBoard files needs the tensorboard package") from exc
    path = Path(path)
    label = path.name or str(path)
    targets = _event_dirs(path)
    if not targets:
        raise LogFormatError(f"{label}: no TensorBoard event files (events.out.tfevents.*) found")
    groups: dict[Path, list[tuple[Path, str | None]]] = {}
    for t in targets:
        if t.is_dir() and t.name.lower() in _SPLIT_DIRS and t != path:
            groups.setdefault(t.parent, []).append((t, t.name.lower()))
        else:
            groups.setdefault(t, []).append((t, None))
    runs: list[Run] = []
    for run_path, members in groups.items():
        scalars: dict[str, list[tuple[int, float, float]]] = {}  # field -> (step, wall_time, value)
        epoch_steps: list[tuple[int, int]] = []
        specific: dict[str, bool] = {}
        for member, hint in members:
            try:
                acc = ea.EventAccumulator(str(member), size_guidance={ea.SCALARS: 0})
                acc.Reload()
                tags = acc.Tags().get("scalars", [])
            except Exception as exc:  # corrupt records surface as assorted tensorboard/protobuf errors
                raise LogFormatError(f"{label}: cannot read TensorBoard events ({type(exc).__name__}: {exc})") from exc
            for tag in sorted(tags):
                words = _words(tag)
                if words and set(words) <= _EPOCH_NAMES:
                    epoch_steps += [(ev.step, int(round(ev.value))) for ev in acc.Scalars(tag)]
                    continue
                f = classify_metric(tag, hint)
                if f is None:
                    continue
                explicit = _specific(tag) or hint is not None
                if f in scalars and (specific[f] or not explicit):
                    continue
                scalars[f] = [(ev.step, ev.wall_time, ev.value) for ev in acc.Scalars(tag)]
                specific[f] = explicit
        if not scalars:
            continue
        epoch_of = _step_to_epoch(sorted(epoch_steps))
        accs: dict[int, _Acc] = {}
        wall: dict[int, float] = {}
        for f, events in scalars.items():
            for step, wall_time, value in events:
                e = epoch_of(step)
                accs.setdefault(e, _Acc(e)).put(f, float(value))
                wall[e] = max(wall.get(e, 0.0), wall_time)
        ordered = [accs[e] for e in sorted(accs)]
        notes_extra: list[str] = []
        if "time_s" not in scalars and len(ordered) > 1:
            # Event wall times give the epoch time as the gap since the previous epoch's last event.
            for prev, cur in zip(ordered, ordered[1:]):
                cur.put("time_s", wall[cur.epoch] - wall[prev.epoch])
            notes_extra.append("epoch times estimated from event wall times")
        epochs, notes = _finish(ordered)
        run_name = run_path.name if run_path.is_dir() else path.stem
        if run_path.is_file() or run_path == path:
            run_name = (path.name if path.is_dir() else path.parent.name) or run_name
        runs.append(Run(run_name, str(run_path), epochs, "tensorboard", 0, tuple(notes + notes_extra)))
    if not runs:
        raise LogFormatError(f"{label}: no loss or accuracy scalars in the TensorBoard events")
    names = _deduplicate([r.name for r in runs])
    runs = [r if r.name == n else r.renamed(n) for r, n in zip(runs, names)]
    return _apply_name(runs, name)


def _step_to_epoch(epoch_steps: list[tuple[int, int]]):
    if not epoch_steps:
        return lambda step: int(step)
    steps = [s for s, _ in epoch_steps]

    def epoch_of(step: int) -> int:
        import bisect

        i = bisect.bisect_right(steps, step) - 1
        return epoch_steps[max(i, 0)][1]

    return epoch_of


# --------------------------------------------------------------------------- entry points


def _decode(data: bytes, label: str) -> str:
    if not data.strip():
        raise LogFormatError(f"{label}: file is empty")
    head = data[:8192]
    controls = sum(1 for b in head if b < 9 or 13 < b < 32)
    if b"\x00" in head or controls > len(head) * 0.05:
        raise LogFormatError(f"{label}: binary data, not a text log, CSV or TensorBoard event file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Logs saved on Chinese Windows systems are often GBK; the epoch lines are ASCII either way.
        return data.decode("gb18030", errors="replace")


def parse_log_text(text: str, *, source: str = "log", name: str | None = None) -> list[Run]:
    """Runs from log text: CSV when the name ends in .csv/.tsv or the first line has an epoch column, else text."""
    if source.lower().endswith((".csv", ".tsv")) or _looks_like_csv(text):
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
) -> list[Run]:
    """Runs from one log: a path (text, CSV, TensorBoard file or directory) or uploaded bytes.

    ``filename`` names uploaded bytes (its ending picks the format, its stem the
    run name). ``name`` renames the run; a file holding several runs gets
    ``"<name> (<heading>)"``. Raises :class:`LogFormatError`.
    """
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
