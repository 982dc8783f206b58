"""The run types every parser returns, and how parsers turn collected figures into them.

:class:`Run` is one training run (its :class:`Epoch` rows, where it came from, notes);
:class:`PendingEpoch` collects one epoch's figures while a parser reads, and
:func:`finish_epochs` turns them into :class:`Epoch` rows with accuracies as fractions.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from backbones.errors import LogFormatError

FIELDS = ("loss", "train_acc", "test_acc", "time_s", "test_loss")
#: Most runs read from one log: a document of 20,000 headings is 50 runs and a notice, not 20,000.
MAX_RUNS_PER_LOG = 50
# Bidi embeddings, overrides and isolates, the LRM/RLM/ALM marks: "\u202egol.exe" would show as "exe.log".
_BIDI = dict.fromkeys([*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C])


def clean_label(text: str) -> str:
    """``text`` as a run name or source label: bidi controls dropped, other control characters and
    runs of white space one space."""
    text = str(text).translate(_BIDI)
    return " ".join("".join(" " if unicodedata.category(c) == "Cc" else c for c in text).split())


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

    def __post_init__(self) -> None:
        # Names come from headings, file and folder names a visitor chose: shown as they will read.
        object.__setattr__(self, "name", clean_label(self.name) or "run")
        object.__setattr__(self, "source", clean_label(self.source))

    def renamed(self, name: str) -> Run:
        """The same run called ``name`` ("VGG19 baseline"); bidi controls are dropped."""
        name = clean_label(name)
        if not name:
            raise LogFormatError("a run name cannot be empty")
        return replace(self, name=name)

    def has(self, field_name: str) -> bool:
        return any(getattr(e, field_name) is not None for e in self.epochs)

    def series(
        self, field_name: str, *, break_gaps: bool = False
    ) -> tuple[tuple[int | None, ...], tuple[float | None, ...]]:
        """``(epochs, values)`` of one field, leaving out epochs without it (for plotting).

        With ``break_gaps``, a ``None`` is put into both tuples wherever two consecutive epochs lie further
        apart than the series' usual step (:func:`usual_step`), so a chart breaks the line there instead of
        drawing one straight segment across epochs the log does not have (the seed notes jump 49 -> 92).
        """
        if field_name not in FIELDS and field_name != "gap":
            raise LogFormatError(f"unknown field {field_name!r}; one of {', '.join(FIELDS + ('gap',))}")
        pairs = [(e.epoch, getattr(e, field_name)) for e in self.epochs if getattr(e, field_name) is not None]
        if break_gaps:
            step = usual_step([p[0] for p in pairs])
            broken: list[tuple[int | None, float | None]] = []
            for i, pair in enumerate(pairs):
                if i and pair[0] - pairs[i - 1][0] > step:
                    broken.append((None, None))
                broken.append(pair)
            pairs = broken
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


def usual_step(epochs: Sequence[int]) -> int:
    """The most common difference between consecutive epochs (the smaller on a tie; 1 for under two epochs).

    A log written every 5 epochs has step 5 and no gaps; one that goes 40, 41, ..., 49, 92 has step 1.
    """
    diffs = Counter(b - a for a, b in zip(epochs, epochs[1:]) if b > a)
    if not diffs:
        return 1
    return min(diffs, key=lambda d: (-diffs[d], d))


def summarize_runs(runs: Iterable[Run]) -> list[dict]:
    """One :meth:`Run.summary` row per run, for a comparison table."""
    return [r.summary() for r in runs]




class PendingEpoch:
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


def finish_epochs(accs: Sequence[PendingEpoch]) -> tuple[tuple[Epoch, ...], list[str]]:
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


def cap_runs(runs: list[Run], label: str, *, max_runs: int) -> tuple[list[Run], str | None]:
    """The first ``max_runs`` runs of one log, and a one-line notice when more were dropped.

    The notice is also the first kept run's last note, so the command line and ``--json`` show it.
    """
    if len(runs) <= max_runs:
        return runs, None
    notice = (f"{label}: {len(runs):,} runs in one log; only the first {max_runs} are read "
              f"({len(runs) - max_runs:,} dropped)")
    kept = [replace(runs[0], notes=(*runs[0].notes, notice)), *runs[1:max_runs]]
    return kept, notice


def deduplicate_names(names: Sequence[str]) -> list[str]:
    """Names made unique by numbering repeats: ``["NIN", "NIN"]`` -> ``["NIN", "NIN (2)"]``."""
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n} ({seen[n]})")
    return out


def apply_name(runs: list[Run], name: str | None) -> list[Run]:
    """The runs of one log renamed by the user: ``name``, or ``"<name> (<run name>)"`` for several runs."""
    if name is None:
        return runs
    if len(runs) == 1:
        return [runs[0].renamed(name)]
    return [r.renamed(f"{name} ({r.name})") for r in runs]
