"""Rank backbones on the user's labelled images: features once per backbone, then the probes and LogME.

    report = rank_backbones(read_dataset("flowers/"), ["resnet50", "efficientnet_lite0"], progress=print)
    report.to_dict()                 # what `python -m backbones transfer --json` prints
    report.rows[0].linear.top1, report.rows[0].linear.top1_ci, report.rows[0].logme
    report.pareto_front("latency_ms", "linear")     # the rows no other row beats on both
    save_probe(report.rows[0], "probes/")           # the probe as a checkpoint with the class names

Every backbone sees the same split (:func:`~backbones.transfer.probes.assign_splits`): the dataset's
``train/`` ``val/`` ``test/`` folders, else a stratified draw with a fixed seed. LogME is computed on
train + validation only, so the test split stays unseen by everything that chose anything. Trained
backbones' rows go to the results store (kind ``transfer``), where Compare shows them as
"top-1 on <dataset> (linear probe)"; each row also carries the backbone's latency measured here
(``bench``), its ImageNet top-1 and its MACs, for "accuracy on my data vs cost" with a Pareto front.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from backbones.callbacks import ProgressFn, StopFn
from backbones.data.datasets import Dataset, Skipped
from backbones.errors import BackboneError, CancelledError
from backbones.transfer.probes import (
    SEED,
    TRAIN,
    VAL,
    KnnResult,
    LinearResult,
    assign_splits,
    fit_knn_probe,
    fit_linear_probe,
    split_sizes,
)

PROBES = ("linear", "knn", "logme")
#: How Compare names the figure a ``transfer`` record adds.
METRIC = "top-1 on {dataset} (linear probe)"


@dataclass(frozen=True)
class TransferRow:
    """One backbone's scores on the dataset (a probe not run is None)."""

    model: str
    architecture: str
    weights: str
    checkpoint: str | None
    feature_dim: int
    linear: LinearResult | None
    knn: KnnResult | None
    logme: float | None
    extract_images_per_s: float
    cached: bool
    n_images: int
    n_skipped: int
    features_key: str
    classes: tuple[str, ...] = field(repr=False, default=())
    latency_ms: float | None = None  # median, batch 1, CPU, measured here (`bench`); None when not measured
    imagenet_top1: float | None = None  # published, percent
    macs: int | None = None
    probe_seconds: dict = field(default_factory=dict)

    @property
    def trained(self) -> bool:
        return self.weights != "none"

    @property
    def label(self) -> str:
        """The model's name, with ``@none`` when untrained (so it reads apart from the trained one)."""
        return self.model if self.trained else f"{self.model}@none"

    def per_class(self) -> dict[str, float]:
        """Linear-probe test top-1 per class name (empty without the linear probe)."""
        if self.linear is None:
            return {}
        return {self.classes[i] if i < len(self.classes) else str(i): acc for i, acc in self.linear.per_class.items()}

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "weights": self.weights,
            "feature_dim": self.feature_dim,
            "linear": None if self.linear is None else self.linear.to_dict(),
            "knn": None if self.knn is None else self.knn.to_dict(),
            "logme": self.logme,
            "extract_images_per_s": self.extract_images_per_s,
            "cached": self.cached,
        }

    def to_store_payload(self, dataset: str, splits: dict[str, int]) -> dict:
        """What :func:`save_transfer` stores: the JSON row plus the dataset, its splits and per-class top-1."""
        payload = self.to_dict()
        linear = payload.pop("linear") or {}
        knn = payload.pop("knn") or {}
        payload.update(
            dataset=dataset, architecture=self.architecture, splits=dict(splits), n=self.n_images,
            skipped=self.n_skipped, classes=len(self.classes), top1=linear.get("top1"),
            top1_ci=linear.get("top1_ci"), top5=linear.get("top5"), mean_class=linear.get("mean_class"),
            C=linear.get("C"), knn_top1=knn.get("top1"), knn_k=knn.get("k"), per_class=self.per_class(),
            metric=METRIC.format(dataset=dataset),
        )
        return payload


@dataclass(frozen=True)
class TransferReport:
    """The scores of several backbones on one dataset, with the split every one of them used."""

    dataset: str
    classes: tuple[str, ...]
    splits: dict
    rows: tuple[TransferRow, ...]
    skipped: tuple[Skipped, ...] = ()
    probes: tuple[str, ...] = PROBES
    elapsed_s: float = 0.0

    def to_dict(self) -> dict:
        """Exactly what ``python -m backbones transfer --json`` prints."""
        return {
            "dataset": self.dataset,
            "classes": list(self.classes),
            "splits": dict(self.splits),
            "results": [r.to_dict() for r in self.rows],
        }

    def score(self, row: TransferRow, name: str) -> float | None:
        """``linear`` / ``knn`` top-1 or ``logme`` of ``row``."""
        if name == "linear":
            return None if row.linear is None else row.linear.top1
        if name == "knn":
            return None if row.knn is None else row.knn.top1
        if name == "logme":
            return row.logme
        raise BackboneError(f"unknown score {name!r} (choose from {', '.join(PROBES)})")

    def pareto_front(self, x: str = "latency_ms", y: str = "linear") -> list[int]:
        """Indices into :attr:`rows` on the front of ``x`` (lower is better: ``latency_ms``, ``macs``,
        ``feature_dim``) against score ``y`` (higher is better); rows missing either are left out."""
        from backbones.results.pareto import pareto_front

        points, index = [], []
        for i, row in enumerate(self.rows):
            xv, yv = getattr(row, x, None), self.score(row, y)
            if xv is not None and yv is not None:
                points.append((float(xv), float(yv)))
                index.append(i)
        return [index[j] for j in pareto_front(points)]

    def rank_correlation(self, y: str = "linear") -> float | None:
        """Spearman's rho between ImageNet top-1 and score ``y`` over the rows that have both (None below 3)."""
        pairs = [(r.imagenet_top1, self.score(r, y)) for r in self.rows]
        pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
        if len(pairs) < 3:
            return None
        from scipy.stats import spearmanr

        rho = spearmanr([a for a, _ in pairs], [b for _, b in pairs]).statistic
        return None if not np.isfinite(rho) else float(rho)

    def best(self, y: str = "linear") -> TransferRow | None:
        scored = [r for r in self.rows if self.score(r, y) is not None]
        return max(scored, key=lambda r: self.score(r, y)) if scored else None


def _check_probes(probes) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(str(p).strip().lower() for p in probes if str(p).strip()))
    unknown = [p for p in names if p not in PROBES]
    if unknown or not names:
        what = f"unknown probe {unknown[0]!r}" if unknown else "no probe chosen"
        raise BackboneError(f"{what} (choose from {', '.join(PROBES)})")
    return names


def _dataset_labels(dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    from backbones.transfer.features import SPLIT_CODES, UNASSIGNED

    index = {c: i for i, c in enumerate(dataset.classes)}
    labels = np.array([index[s.label] for s in dataset.samples], dtype=np.int64)
    split = np.array([SPLIT_CODES.get(s.split, UNASSIGNED) for s in dataset.samples], dtype=np.int8)
    return labels, split


def _parse_model(model, weights: str | None) -> tuple[object, str | None, str]:
    """``(model, weights, label)``: ``"name@weights"`` names its own weights (``efficientnet_lite0@none``
    ranks the untrained architecture beside the trained one); names are checked against the catalog now,
    before any model runs."""
    if not isinstance(model, str):
        return model, weights, f"{getattr(model, 'name', type(model).__name__)}@{getattr(model, 'weights', '')}"
    from backbones.zoo.catalog import get_entry
    from backbones.zoo.weights import resolve_weights

    name, _, own = model.partition("@")
    chosen = own.strip() or weights
    entry = get_entry(name.strip())
    info = resolve_weights(entry, chosen)
    return entry.name, chosen, f"{entry.name}@{info.name if info else 'none'}"


def _store_facts(names: list[str], store) -> dict[str, dict]:
    """Latency measured here (CPU, batch 1), published ImageNet top-1 and MACs per name, from Compare's rows."""
    from backbones.results.comparison import comparison_rows

    facts: dict[str, dict] = {}
    try:
        rows = comparison_rows(names, store=store)
    except BackboneError:
        return facts
    for r in rows:
        got = facts.setdefault(r.model, {"latency_ms": None, "imagenet_top1": r.published_top1, "macs": r.macs})
        if got["latency_ms"] is None and r.latency_ms is not None and r.series == "measured here":
            got["latency_ms"] = r.latency_ms
    return facts


def rank_backbones(
    dataset: Dataset,
    models: Sequence,
    *,
    probes: Sequence[str] = PROBES,
    weights: str | None = "default",
    device="auto",
    batch_size: int = 32,
    workers: int | None = 0,
    amp: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    seed: int = SEED,
    store=None,
    save: bool = True,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> TransferReport:
    """Scores of each of ``models`` (catalog names with ``weights``, or loaded models) on ``dataset``.

    Features come from :func:`~backbones.transfer.features.extract_features` (cached: a second ranking
    runs no model). ``probes`` is any of ``linear``, ``knn``, ``logme``. ``progress(done, total, message)``
    counts images over all backbones (plus one step per backbone for its probes); ``should_stop()`` is
    polled between batches and probes and raises :class:`CancelledError`. With ``save`` the rows of
    trained backbones are added to ``store`` (default: the user's results store) as kind ``transfer``.

    The split is checked before any model runs: one class, or a class with too few images, raises
    :class:`DatasetError` in one line.
    """
    from backbones.transfer.features import extract_features
    from backbones.transfer.logme import logme

    started = time.perf_counter()
    chosen = _check_probes(probes)
    if not list(models):
        raise BackboneError("no backbone to rank: give at least one model")
    parsed = [_parse_model(m, weights) for m in models]
    labels_ = [label for _, _, label in parsed]
    if len(set(labels_)) != len(labels_):
        dup = next(n for n in labels_ if labels_.count(n) > 1)
        raise BackboneError(f"{dup.removesuffix('@')} is listed twice")
    if not isinstance(dataset, Dataset):
        raise BackboneError(f"dataset must be a Dataset (see read_dataset), got {type(dataset).__name__}")
    labels, split = _dataset_labels(dataset)
    classes = tuple(str(c) for c in dataset.classes)
    assign_splits(labels, split, classes=classes, seed=seed)  # bad splits fail before any model runs
    n = len(dataset.samples)
    total = len(parsed) * (n + 1)
    rows: list[TransferRow] = []
    skipped: tuple[Skipped, ...] = ()
    splits_used: dict[str, int] = {}

    def stop_check(what: str) -> None:
        if should_stop is not None and should_stop():
            raise CancelledError(f"ranking cancelled {what}")

    for m_index, (model, model_weights, _) in enumerate(parsed):
        base = m_index * (n + 1)

        def report(done: int, _total: int, message: str, base=base) -> None:
            if progress:
                progress(base + done, total, message)

        fs = extract_features(dataset, model, weights=model_weights, device=device, batch_size=batch_size,
                              workers=workers, amp=amp, cache_dir=cache_dir, progress=report,
                              should_stop=should_stop)
        splits = assign_splits(fs.labels, fs.split, classes=fs.classes, seed=seed)
        splits_used = splits_used or split_sizes(splits)
        skipped = skipped or fs.skipped
        seconds: dict[str, float] = {}
        linear = knn = score = None
        for probe in chosen:
            stop_check(f"before the {probe} probe of {fs.model}")
            report(n, total, f"{fs.model}: {probe} probe")
            t0 = time.perf_counter()
            if probe == "linear":
                linear = fit_linear_probe(fs.features, fs.labels, splits, classes=fs.classes)
            elif probe == "knn":
                knn = fit_knn_probe(fs.features, fs.labels, splits)
            else:
                rows_fit = np.flatnonzero((splits == TRAIN) | (splits == VAL))
                score = logme(fs.features[rows_fit], fs.labels[rows_fit])
            seconds[probe] = time.perf_counter() - t0
        rows.append(TransferRow(
            model=fs.model, architecture=fs.architecture, weights=fs.weights, checkpoint=fs.checkpoint,
            feature_dim=fs.feature_dim, linear=linear, knn=knn, logme=score, extract_images_per_s=fs.images_per_s,
            cached=fs.cached, n_images=fs.n, n_skipped=fs.n_skipped, features_key=fs.key, classes=fs.classes,
            probe_seconds=seconds,
        ))
        report(n + 1, total, f"{fs.model}: done")
    facts = _store_facts([r.model for r in rows], store)
    rows = [_with_facts(r, facts.get(r.model, {})) for r in rows]
    report_ = TransferReport(dataset=dataset.name, classes=classes, splits=splits_used, rows=tuple(rows),
                             skipped=skipped, probes=chosen, elapsed_s=time.perf_counter() - started)
    if save:
        save_transfer(report_, store=store)
    return report_


def _with_facts(row: TransferRow, facts: dict) -> TransferRow:
    from dataclasses import replace

    return replace(row, latency_ms=facts.get("latency_ms"), imagenet_top1=facts.get("imagenet_top1"),
                   macs=facts.get("macs"))


def save_transfer(report: TransferReport, store=None) -> list[int]:
    """Add each trained backbone's row of ``report`` with a linear probe to the results store (kind
    ``transfer``); returns the new ids. Untrained rows are chance-level: they are not stored."""
    if store is None:
        from backbones.results.store import ResultsStore

        store = ResultsStore(keep_locally=True)
    ids = []
    for row in report.rows:
        if row.trained and row.linear is not None:
            ids.append(store.add("transfer", row.model, row.to_store_payload(report.dataset, report.splits),
                                 env=None, source="here"))
    return ids


def probe_model(row: TransferRow, *, device="cpu"):
    """The backbone of ``row`` with its classifier replaced by the linear probe (standardisation folded in):
    an ``nn.Module`` whose logits are the probe's over ``row.classes``. Loads the backbone."""
    from torch import nn

    from backbones.transfer.features import classifier_name
    from backbones.zoo.models import load_model

    if row.linear is None or row.linear.probe is None:
        raise BackboneError(f"{row.model}: no linear probe to save (run the linear probe)")
    if row.checkpoint is not None:
        loaded = load_model(row.architecture, checkpoint=row.checkpoint, device=device)
    else:
        loaded = load_model(row.architecture, weights=row.weights, device=device)
    model = loaded.model
    head = classifier_name(model)
    if not isinstance(model.get_submodule(head), nn.Linear):
        raise BackboneError(f"{row.model}: its classifier {head} is not a Linear layer, so the probe cannot replace it")
    parent, _, child = head.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, row.linear.probe.to_linear().to(device))
    if hasattr(model, "num_classes"):
        model.num_classes = len(row.classes)
    return model.eval()


def save_probe(row: TransferRow, out_dir: str | os.PathLike, *, dataset: str | None = None) -> Path:
    """Save ``row``'s linear probe as a checkpoint with its class names in ``out_dir`` (see
    :func:`backbones.transfer.export.save_checkpoint`); returns the checkpoint's path."""
    from backbones.transfer.export import save_checkpoint

    model = probe_model(row)
    probe = row.linear.probe
    meta = {
        "label": f"{row.model} linear probe" + (f" on {dataset}" if dataset else ""),
        "probe": {"kind": "linear", "C": probe.C, "test_top1": row.linear.top1, "dataset": dataset,
                  "features_key": row.features_key},
    }
    return save_checkpoint(model, list(row.classes), out_dir, arch=row.architecture,
                           weights=None if row.checkpoint else row.weights, meta=meta)
