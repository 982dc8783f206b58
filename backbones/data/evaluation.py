"""Scoring a model on a dataset: top-1/top-5, per-class accuracy, confusion, misclassified images.

    result = evaluate_dataset(load_model("efficientnet_lite0"), read_dataset("animals/"), progress=print)
    result.top1, result.top5, result.per_class, result.confusion
    save_evaluation(result)                               # -> the results store (Compare page)

Accuracy follows the seed notes' definitions: a top-1 error is an image whose most
confident class is not its true class; a top-5 error is one whose true class is not
among the five most confident (with fewer than five classes, top-k uses all of them).
Unreadable images are skipped and counted, never fatal.

Images are decoded in DataLoader workers (:mod:`backbones.data.loading`) and run on
the model's device; under ``torchrun`` each process scores its share and all of them
return the single-process result (:mod:`backbones.data.distributed`). Counts,
confusion and the per-image lists do not depend on how the work was split; the
probabilities in ``misclassified`` are bit-identical when every process computes
with the same number of threads and batches of the same size, and may otherwise
differ in the last float digits, as kernels choose their algorithms by shape.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from backbones.callbacks import ProgressFn, StopFn
from backbones.data.classes import ClassMatch, is_imagenet, match_classes
from backbones.data.datasets import Dataset, Sample, Skipped, read_dataset, select_samples
from backbones.errors import CancelledError, DatasetError
from backbones.inference.logits import logits_of

#: The column of the confusion matrix that counts predictions outside the dataset's classes.
OTHER = "other"

@dataclass(frozen=True)
class Guess:
    """One of an image's top-k classes."""

    index: int
    label: str
    prob: float

    def to_dict(self) -> dict:
        return {"index": self.index, "label": self.label, "prob": self.prob}


@dataclass(frozen=True)
class Misclassified:
    """An image whose top-1 class is wrong: its true label, what was predicted and its top 5."""

    path: str
    label: str
    predicted: str
    top5: tuple[Guess, ...]
    in_top5: bool

    def to_dict(self) -> dict:
        return {"path": self.path, "label": self.label, "predicted": self.predicted,
                "in_top5": self.in_top5, "top5": [g.to_dict() for g in self.top5]}


@dataclass(frozen=True)
class Unmatched:
    """A dataset class with no model class: its images are excluded from the accuracy."""

    label: str
    images: int
    note: str

    def to_dict(self) -> dict:
        return {"label": self.label, "images": self.images, "note": self.note}


@dataclass(frozen=True)
class EvaluationResult:
    """Accuracy of one model on one dataset.

    ``top1``/``top5`` are fractions in [0, 1] over the ``n`` scored images (the
    seed notes' top-k error is ``1 - top-k``). ``labels`` are the dataset's
    matched classes; ``confusion[i][j]`` counts images of ``labels[i]`` whose top-1
    class is ``confusion_columns[j]``: the same labels, plus a last ``"other"``
    column when the model can predict classes outside the dataset's (every
    ImageNet model). ``skipped`` counts unreadable or missing files and malformed
    CSV rows; images of unmatched classes are counted in ``excluded``.
    """

    model: str
    dataset: str
    dataset_path: str
    architecture: str
    weights: str
    checkpoint: str | None
    n: int
    skipped: int
    top1: float
    top5: float
    topk: int
    labels: tuple[str, ...]
    per_class: tuple[tuple[str, float], ...]
    per_class_n: tuple[tuple[str, int], ...]
    confusion: tuple[tuple[int, ...], ...]
    confusion_columns: tuple[str, ...]
    matches: tuple[ClassMatch, ...]
    unmatched: tuple[Unmatched, ...]
    excluded: int
    misclassified: tuple[Misclassified, ...]
    skipped_files: tuple[Skipped, ...]
    elapsed_s: float
    images_per_second: float
    notes: tuple[str, ...] = field(default=())

    @property
    def top1_error(self) -> float:
        return 1.0 - self.top1

    @property
    def top5_error(self) -> float:
        return 1.0 - self.top5

    @property
    def metric_label(self) -> str:
        """How Compare names this figure: ``accuracy on <dataset>``."""
        return f"accuracy on {self.dataset}"

    def relative_path(self, path: str) -> str:
        """``path`` relative to the dataset's folder (what a page shows instead of a server path)."""
        root = os.path.dirname(self.dataset_path) if os.path.isfile(self.dataset_path) else self.dataset_path
        try:
            return os.path.relpath(path, root) if os.path.commonpath([path, root]) == root else os.path.basename(path)
        except ValueError:
            return os.path.basename(path)

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "dataset": self.dataset,
            "n": self.n,
            "skipped": self.skipped,
            "top1": self.top1,
            "top5": self.top5,
            "per_class": dict(self.per_class),
            "confusion": [list(r) for r in self.confusion],
            "labels": list(self.labels),
            # extras
            "top1_error": self.top1_error,
            "top5_error": self.top5_error,
            "topk": self.topk,
            "dataset_path": self.dataset_path,
            "architecture": self.architecture,
            "weights": self.weights,
            "checkpoint": self.checkpoint,
            "per_class_n": dict(self.per_class_n),
            "confusion_columns": list(self.confusion_columns),
            "matches": [m.to_dict() for m in self.matches],
            "unmatched": [u.to_dict() for u in self.unmatched],
            "excluded": self.excluded,
            "misclassified": [m.to_dict() for m in self.misclassified],
            "skipped_files": [s.to_dict() for s in self.skipped_files],
            "elapsed_s": self.elapsed_s,
            "images_per_second": self.images_per_second,
            "notes": list(self.notes),
        }

    def to_store_payload(self) -> dict:
        """What :func:`save_evaluation` stores: everything but the per-image lists (kept as counts)."""
        payload = self.to_dict()
        payload.pop("misclassified")
        payload.pop("skipped_files")
        payload.pop("dataset_path")  # a server path is nobody else's business: the dataset's name is kept
        payload["misclassified_count"] = len(self.misclassified)
        payload["metric"] = self.metric_label
        return payload


class _Tally:
    """Counts for one evaluation, fed image by image in sample order (the same code for one process or many)."""

    def __init__(self, matches: Mapping, categories: tuple[str, ...], matched_keys: list, skipped: Sequence[Skipped]):
        self.matches = matches
        self.categories = categories
        # Dataset labels may share a display name (an index and a name for one class): keep them apart.
        self.labels: list[str] = []
        self.row_of: dict[str | int, int] = {}
        for k in matched_keys:
            name = matches[k].label
            if name in self.labels:
                name = f"{name} ({k})"
            self.row_of[k] = len(self.labels)
            self.labels.append(name)
        self.column_of_output: dict[int, int] = {}
        for k in matched_keys:
            for i in matches[k].indices:
                self.column_of_output.setdefault(i, self.row_of[k])
        has_other = len(self.column_of_output) < len(categories)
        self.columns = self.labels + ([OTHER] if has_other else [])
        self.confusion = [[0] * len(self.columns) for _ in self.labels]
        self.correct1 = [0] * len(self.labels)
        self.correct5 = [0] * len(self.labels)
        self.seen = [0] * len(self.labels)
        self.skipped: list[Skipped] = list(skipped)
        self.misclassified: list[Misclassified] = []

    def add(self, sample: Sample, outcome: tuple[tuple[int, ...], tuple[float, ...]] | str) -> None:
        """One image's top-k ``(indices, probabilities)``, or the reason it could not be read."""
        if isinstance(outcome, str):
            self.skipped.append(Skipped(sample.path, outcome))
            return
        idxs, vals = outcome
        row = self.row_of[sample.label]
        truth = set(self.matches[sample.label].indices)
        self.seen[row] += 1
        top1_ok = idxs[0] in truth
        top5_ok = any(i in truth for i in idxs)
        self.correct1[row] += top1_ok
        self.correct5[row] += top5_ok
        self.confusion[row][self.column_of_output.get(idxs[0], len(self.columns) - 1)] += 1
        if not top1_ok:
            guesses = tuple(Guess(int(i), self.categories[i], float(p)) for p, i in zip(vals, idxs))
            self.misclassified.append(
                Misclassified(sample.path, self.labels[row], self.categories[idxs[0]], guesses, top5_ok)
            )

    @property
    def n(self) -> int:
        return sum(self.seen)


def format_eta(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def _progress_message(done: int, total: int, elapsed: float, tally: _Tally) -> str:
    """``40/100 images, 12.5 images/s, ETA 0:05, top-1 so far 80.0%``."""
    rate = done / elapsed if elapsed > 0 else 0.0
    speed = f", {rate:.1f} images/s, ETA {format_eta((total - done) / rate)}" if rate > 0 else ""
    acc = f", top-1 so far {sum(tally.correct1) / tally.n:.1%}" if tally.n else ""
    return f"{done}/{total} images{speed}{acc}"


def evaluate_dataset(
    loaded,
    dataset: Dataset | str | os.PathLike,
    *,
    batch_size: int = 16,
    limit: int | None = None,
    class_map: Mapping[str, str | int | Sequence[str | int]] | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    workers: int | None = None,
    amp: str | None = None,
    channels_last: bool = False,
) -> EvaluationResult:
    """Top-1/top-5 accuracy, per-class accuracy and confusion of ``loaded`` on ``dataset``.

    ``loaded`` is a :class:`backbones.zoo.models.LoadedModel` (on any device);
    ``dataset`` a :class:`Dataset` or a path for :func:`read_dataset`. Images are
    decoded and preprocessed to ``(B, 3, H, W)`` in ``workers`` DataLoader processes
    (default :func:`~backbones.data.loading.default_workers`; 0: in this process; a
    single batch is always decoded here) and run ``batch_size`` at a time on the
    model's device under its lock and ``torch.inference_mode``: pinned memory and
    non-blocking copies on cuda, autocast to ``amp`` (``"bf16"``/``"fp16"``, cuda only)
    and ``channels_last`` (the model is converted in place and stays so) when asked.
    ``limit`` evaluates at most that many images, spread over the classes.
    ``progress(done, total, message)`` is called after every batch (the message
    gives images/s and the ETA); ``should_stop()`` is checked before each batch and
    raises :class:`CancelledError` when it returns true (nothing is kept).

    While a ``torch.distributed`` process group is up (``torchrun``; see
    :mod:`backbones.data.distributed`) this process scores every ``world``-th image,
    the outcomes are gathered and every process returns what a single process would
    (``progress`` then counts this process's share).

    Raises :class:`DatasetError` when no dataset class matches the model's
    classes or no image could be read.
    """
    import torch

    from backbones.data.distributed import current_shard, gather_to_all
    from backbones.data.loading import autocast_for, check_loader_options, shard_loader, to_model_input

    check_loader_options(batch_size, workers)
    device = loaded.device
    autocast = autocast_for(device, amp)  # refused before any image is read
    ds = dataset if isinstance(dataset, Dataset) else read_dataset(dataset)
    started = time.perf_counter()
    categories = tuple(loaded.categories)
    matches = match_classes(ds.classes, categories, class_map=class_map)
    counts = ds.counts()
    unmatched = tuple(
        Unmatched(m.label, counts[k], m.note) for k, m in matches.items() if not m.matched
    )
    matched_keys = [k for k, m in matches.items() if m.matched]
    if not matched_keys:
        shown = "; ".join(f"{u.label}: {u.note}" for u in unmatched[:3])
        raise DatasetError(f"{ds.name}: none of its {len(unmatched)} classes match the model's classes ({shown})")
    notes: list[str] = []
    if any(isinstance(k, int) for k in matched_keys) and is_imagenet(categories):
        notes.append("integer labels were read as ImageNet class indices (0 = tench)")

    tally = _Tally(matches, categories, matched_keys, ds.skipped)
    selected = select_samples(ds, limit)
    todo = [s for s in selected if matches[s.label].matched]
    excluded = len(selected) - len(todo)
    rank, world = current_shard()
    total = len(range(rank, len(todo), world))
    k = min(5, len(categories))
    loader = shard_loader(todo, loaded, device, batch_size=batch_size, workers=workers,
                          channels_last=channels_last, rank=rank, world=world)
    outcomes: list[tuple[int, tuple[tuple[int, ...], tuple[float, ...]] | str]] = []
    done = 0
    if progress:
        share = f" (this process's share: {world} processes)" if world > 1 else ""
        progress(0, total, f"evaluating {loaded.name} on {ds.name}: {total} images{share}")
    loop_started = time.perf_counter()
    for batch in loader:
        if should_stop is not None and should_stop():
            raise CancelledError(f"evaluation cancelled after {done} of {total} images")
        scored: list[tuple[int, tuple[tuple[int, ...], tuple[float, ...]] | str]] = list(batch.skipped)
        if batch.images is not None:
            x = to_model_input(batch.images, device, channels_last)
            with loaded.lock, torch.inference_mode(), autocast:
                logits = logits_of(loaded.model(x))
            with torch.inference_mode():
                values, indices = torch.softmax(logits.float(), dim=1).topk(k, dim=1)
            scored += [(i, (tuple(idxs), tuple(vals)))
                       for i, vals, idxs in zip(batch.indices, values.cpu().tolist(), indices.cpu().tolist())]
        for i, outcome in sorted(scored, key=lambda pair: pair[0]):
            tally.add(todo[i], outcome)
            outcomes.append((i, outcome))
        done += batch.size
        if progress:
            progress(done, total, _progress_message(done, total, time.perf_counter() - loop_started, tally))
    if world > 1:
        # Every process re-tallies everyone's outcomes in sample order: the single-process result.
        tally = _Tally(matches, categories, matched_keys, ds.skipped)
        for i, outcome in sorted((o for part in gather_to_all(outcomes) for o in part), key=lambda pair: pair[0]):
            tally.add(todo[i], outcome)
    n = tally.n
    if n == 0:
        first = tally.skipped[-1].reason if tally.skipped else "no images"
        raise DatasetError(f"{ds.name}: no image could be read ({first})")
    elapsed = time.perf_counter() - started
    labels, seen = tally.labels, tally.seen
    # Classes whose every image was unreadable have no accuracy: drop their rows, keep the columns.
    per_class = tuple((labels[i], tally.correct1[i] / seen[i]) for i in range(len(labels)) if seen[i])
    per_class_n = tuple((labels[i], seen[i]) for i in range(len(labels)) if seen[i])
    return EvaluationResult(
        model=loaded.name,
        dataset=ds.name,
        dataset_path=ds.path,
        architecture=loaded.entry.name,
        weights=loaded.weights,
        checkpoint=loaded.checkpoint,
        n=n,
        skipped=len(tally.skipped),
        top1=sum(tally.correct1) / n,
        top5=sum(tally.correct5) / n,
        topk=k,
        labels=tuple(labels),
        per_class=per_class,
        per_class_n=per_class_n,
        confusion=tuple(tuple(r) for r in tally.confusion),
        confusion_columns=tuple(tally.columns),
        matches=tuple(matches[key] for key in ds.classes),
        unmatched=unmatched,
        excluded=excluded,
        misclassified=tuple(tally.misclassified),
        skipped_files=tuple(tally.skipped),
        elapsed_s=elapsed,
        images_per_second=n / elapsed if elapsed > 0 else float("nan"),
        notes=tuple(notes),
    )


def save_evaluation(result: EvaluationResult, store=None) -> int:
    """Add ``result`` to the results store (``kind="evaluation"``); returns the new record's id.

    ``store`` is a results store (default: the user's store). The payload
    (:meth:`EvaluationResult.to_store_payload`) carries the dataset name, so Compare can
    show "accuracy on <dataset>", and never the dataset's path on this machine.
    """
    if store is None:
        from backbones.results.store import ResultsStore

        store = ResultsStore()
    return store.add("evaluation", result.model, result.to_store_payload(), env=None, source="here")
