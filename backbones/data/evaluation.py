"""Scoring a model on a dataset: top-1/top-5, per-class accuracy, confusion, misclassified images.

    result = evaluate_dataset(load_model("efficientnet_lite0"), read_dataset("animals/"), progress=print)
    result.top1, result.top5, result.per_class, result.confusion
    save_evaluation(result)                               # -> the results store (Compare page)

Accuracy follows the seed notes' definitions: a top-1 error is an image whose most
confident class is not its true class; a top-5 error is one whose true class is not
among the five most confident (with fewer than five classes, top-k uses all of them).
Unreadable images are skipped and counted, never fatal.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from backbones.callbacks import ProgressFn, StopFn
from backbones.data.classes import ClassMatch, is_imagenet, match_classes
from backbones.data.datasets import Dataset, Skipped, read_dataset, select_samples
from backbones.errors import CancelledError, DatasetError, ImageError
from backbones.inference.images import load_image
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


def evaluate_dataset(
    loaded,
    dataset: Dataset | str | os.PathLike,
    *,
    batch_size: int = 16,
    limit: int | None = None,
    class_map: Mapping[str, str | int | Sequence[str | int]] | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> EvaluationResult:
    """Top-1/top-5 accuracy, per-class accuracy and confusion of ``loaded`` on ``dataset``.

    ``loaded`` is a :class:`backbones.zoo.models.LoadedModel`; ``dataset`` a
    :class:`Dataset` or a path for :func:`read_dataset`. Images are decoded,
    preprocessed to ``(B, 3, H, W)`` and run ``batch_size`` at a time under the
    model's lock. ``limit`` evaluates at most that many images, spread over the
    classes. ``progress(done, total, message)`` is called after every batch;
    ``should_stop()`` is checked before each batch and raises
    :class:`CancelledError` when it returns true.

    Raises :class:`DatasetError` when no dataset class matches the model's
    classes or no image could be read.
    """
    import torch

    if batch_size < 1:
        raise DatasetError(f"batch size must be at least 1, got {batch_size}")
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

    # Dataset labels may share a display name (an index and a name for one class): keep them apart.
    labels: list[str] = []
    row_of: dict[str | int, int] = {}
    for k in matched_keys:
        name = matches[k].label
        if name in labels:
            name = f"{name} ({k})"
        row_of[k] = len(labels)
        labels.append(name)
    column_of_output: dict[int, int] = {}
    for k in matched_keys:
        for i in matches[k].indices:
            column_of_output.setdefault(i, row_of[k])
    has_other = len(column_of_output) < len(categories)
    columns = labels + ([OTHER] if has_other else [])
    confusion = [[0] * len(columns) for _ in labels]
    correct1 = [0] * len(labels)
    correct5 = [0] * len(labels)
    seen = [0] * len(labels)

    selected = select_samples(ds, limit)
    todo = [s for s in selected if matches[s.label].matched]
    excluded = len(selected) - len(todo)
    total = len(todo)
    k = min(5, len(categories))
    skipped: list[Skipped] = list(ds.skipped)
    misclassified: list[Misclassified] = []
    done = 0
    if progress:
        progress(0, total, f"evaluating {loaded.name} on {ds.name}: {total} images")
    for start in range(0, total, batch_size):
        if should_stop is not None and should_stop():
            raise CancelledError(f"evaluation cancelled after {done} of {total} images")
        batch = todo[start : start + batch_size]
        images, kept = [], []
        for s in batch:
            try:
                images.append(load_image(s.path))
                kept.append(s)
            except ImageError as exc:
                skipped.append(Skipped(s.path, str(exc)))
        if images:
            with loaded.lock, torch.inference_mode():
                x = loaded.preprocessing.batch(images)
                logits = logits_of(loaded.model(x))
                probs = torch.softmax(logits.float(), dim=1)
                values, indices = probs.topk(k, dim=1)
            for s, vals, idxs in zip(kept, values.tolist(), indices.tolist()):
                m = matches[s.label]
                row = row_of[s.label]
                truth = set(m.indices)
                seen[row] += 1
                top1_ok = idxs[0] in truth
                top5_ok = any(i in truth for i in idxs)
                correct1[row] += top1_ok
                correct5[row] += top5_ok
                col = column_of_output.get(idxs[0], len(columns) - 1)
                confusion[row][col] += 1
                if not top1_ok:
                    guesses = tuple(Guess(int(i), categories[i], float(p)) for p, i in zip(vals, idxs))
                    misclassified.append(Misclassified(s.path, labels[row], categories[idxs[0]], guesses, top5_ok))
        done += len(batch)
        if progress:
            n_so_far = sum(seen)
            acc = f", top-1 so far {sum(correct1) / n_so_far:.1%}" if n_so_far else ""
            progress(done, total, f"{done}/{total} images{acc}")
    n = sum(seen)
    if n == 0:
        first = skipped[-1].reason if skipped else "no images"
        raise DatasetError(f"{ds.name}: no image could be read ({first})")
    elapsed = time.perf_counter() - started
    # Classes whose every image was unreadable have no accuracy: drop their rows, keep the columns.
    per_class = tuple((labels[i], correct1[i] / seen[i]) for i in range(len(labels)) if seen[i])
    per_class_n = tuple((labels[i], seen[i]) for i in range(len(labels)) if seen[i])
    return EvaluationResult(
        model=loaded.name,
        dataset=ds.name,
        dataset_path=ds.path,
        architecture=loaded.entry.name,
        weights=loaded.weights,
        checkpoint=loaded.checkpoint,
        n=n,
        skipped=len(skipped),
        top1=sum(correct1) / n,
        top5=sum(correct5) / n,
        topk=k,
        labels=tuple(labels),
        per_class=per_class,
        per_class_n=per_class_n,
        confusion=tuple(tuple(r) for r in confusion),
        confusion_columns=tuple(columns),
        matches=tuple(matches[key] for key in ds.classes),
        unmatched=unmatched,
        excluded=excluded,
        misclassified=tuple(misclassified),
        skipped_files=tuple(skipped),
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
