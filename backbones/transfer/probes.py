"""Probes on frozen features: the linear probe and k-NN, on train / validation / test splits.

    splits = assign_splits(fs.labels, fs.split, classes=fs.classes)      # the dataset's, else stratified
    linear = fit_linear_probe(fs.features, fs.labels, splits, classes=fs.classes)
    linear.top1, linear.top1_ci, linear.C, linear.probe.predict_logits(x)
    knn = fit_knn_probe(fs.features, fs.labels, splits)

The linear probe follows Kornblith et al. (CVPR 2019): L2-regularised multinomial logistic
regression (scikit-learn, L-BFGS) on standardised features, the inverse regularisation ``C``
chosen on the validation split from a log-spaced grid, then refit on train + validation and
reported once on the test split. k-NN votes among the ``k`` most cosine-similar training images
(features L2-normalised), ``k`` chosen on validation, reported on the same test split. Splits
come from the dataset's ``train/`` ``val/`` ``test/`` folders where it has them; missing ones are
drawn per class with a fixed seed, so every backbone sees the same images in the same split.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from backbones.errors import DatasetError

TRAIN, VAL, TEST = 0, 1, 2
#: Inverse L2 strengths tried for the linear probe (on standardised features), smallest first.
C_GRID = tuple(float(c) for c in np.logspace(-4, 2, 7))
#: Neighbour counts tried for k-NN.
K_GRID = (1, 3, 5, 10, 20)
#: Fractions of each class drawn for validation and test when the dataset does not provide them.
VAL_FRACTION = TEST_FRACTION = 0.2
SEED = 0
#: Rows per block when computing similarities (bounds memory to block x train floats).
_BLOCK = 2048


# ----------------------------------------------------------------------------- splits
def _label_name(classes: Sequence[str] | None, label: int) -> str:
    return str(classes[label]) if classes is not None and 0 <= label < len(classes) else f"class {label}"


def _draw(indices: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(kept, drawn)``: at least one drawn and one kept."""
    shuffled = rng.permutation(indices)
    n_drawn = min(max(1, int(round(len(indices) * fraction))), len(indices) - 1)
    return shuffled[n_drawn:], shuffled[:n_drawn]


def assign_splits(
    labels: np.ndarray,
    split: np.ndarray | None = None,
    *,
    classes: Sequence[str] | None = None,
    seed: int = SEED,
    val_fraction: float = VAL_FRACTION,
    test_fraction: float = TEST_FRACTION,
) -> np.ndarray:
    """``(N,)`` int8 of 0 train / 1 val / 2 test for every row.

    ``split`` holds the dataset's own (-1 where it has none). A split the dataset lacks is drawn,
    per class, from its training images (or from all images when none has a split): about
    ``test_fraction`` for test, then ``val_fraction`` for validation, at least one of each per class.
    Raises :class:`DatasetError` (one line) for a single class, or a class with too few images
    (saying how many it needs).
    """
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    present = np.unique(labels)
    if len(present) < 2:
        only = _label_name(classes, int(present[0])) if len(present) else "none"
        raise DatasetError(f"only one class ({only!r}): a probe needs images of at least two classes")
    out = np.full(n, TRAIN, dtype=np.int8)
    given = np.full(n, -1, dtype=np.int8) if split is None else np.asarray(split, dtype=np.int8)
    assigned = given >= 0
    if assigned.any() and not assigned.all():
        raise DatasetError("some images have a split (train/val/test) and others do not")
    has = {s: bool((given == s).any()) for s in (TRAIN, VAL, TEST)}
    if assigned.all():
        out[:] = given
        if not has[TRAIN]:
            raise DatasetError("the dataset has no train/ images: the probes need a training split")
    needed = 1 + (not has[VAL]) + (not has[TEST])  # images per class in the pool the missing splits come from
    rng = np.random.default_rng(seed)
    for c in present:
        pool = np.flatnonzero((labels == c) & (out == TRAIN))
        if len(pool) < needed:
            name = _label_name(classes, int(c))
            where = "in train/" if assigned.all() else "in all"
            missing = " and ".join(s for s, ok in (("validation", has[VAL]), ("test", has[TEST])) if not ok)
            raise DatasetError(
                f"class {name!r} has {len(pool)} image(s) {where}; the probes need at least {needed} per class "
                f"(1 train{', 1 per split drawn for ' + missing if missing else ''})"
            )
        if not has[TEST]:
            pool, drawn = _draw(pool, test_fraction, rng)
            out[drawn] = TEST
        if not has[VAL]:
            # The fraction of what was left, so that val is ~val_fraction of the whole class.
            left = 1.0 - (0.0 if has[TEST] else test_fraction)
            pool, drawn = _draw(pool, val_fraction / left, rng)
            out[drawn] = VAL
    for c in present:
        if not ((labels == c) & (out == TRAIN)).any():
            raise DatasetError(f"class {_label_name(classes, int(c))!r} has no training images")
    return out


def split_sizes(splits: np.ndarray) -> dict[str, int]:
    return {"train": int((splits == TRAIN).sum()), "val": int((splits == VAL).sum()), "test": int((splits == TEST).sum())}


# ----------------------------------------------------------------------------- scores
def wilson_interval(correct: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion ``correct / n`` (exact at 0 and n, unlike the normal one)."""
    if n <= 0:
        return (0.0, 1.0)
    p = correct / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At 0 and n the bound is exactly 0 or 1; rounding would otherwise leave 0.9999999999999999.
    return (0.0 if correct <= 0 else max(0.0, centre - half), 1.0 if correct >= n else min(1.0, centre + half))


def _per_class(labels: np.ndarray, correct: np.ndarray) -> dict[int, float]:
    return {int(c): float(correct[labels == c].mean()) for c in np.unique(labels)}


@dataclass(frozen=True, eq=False)
class LinearProbe:
    """A fitted linear probe: ``logits = ((x - mean) / scale) @ coef.T + intercept``, ``(N, D)`` -> ``(N, K)``."""

    mean: np.ndarray  # (D,)
    scale: np.ndarray  # (D,)
    coef: np.ndarray  # (K, D); K = 2 rows for two classes (symmetric, same probabilities as sklearn's one row)
    intercept: np.ndarray  # (K,)
    C: float
    classes: tuple[str, ...]

    def folded(self) -> tuple[np.ndarray, np.ndarray]:
        """``(weight (K, D), bias (K,))`` acting on raw features: the standardisation folded in."""
        weight = self.coef / self.scale
        return weight.astype(np.float32), (self.intercept - weight @ self.mean).astype(np.float32)

    def predict_logits(self, x: np.ndarray) -> np.ndarray:
        weight, bias = self.folded()
        return np.asarray(x, dtype=np.float32) @ weight.T + bias

    def to_linear(self):
        """An ``nn.Linear(D, K)`` computing the probe's logits from raw features (for a checkpoint's head)."""
        import torch
        from torch import nn

        weight, bias = self.folded()
        layer = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(weight))
            layer.bias.copy_(torch.from_numpy(bias))
        return layer


@dataclass(frozen=True)
class LinearResult:
    """Linear-probe scores on the test split (fractions in [0, 1]); ``top5`` None with 5 classes or fewer."""

    top1: float
    top1_ci: tuple[float, float]
    top5: float | None
    mean_class: float
    C: float
    n_test: int
    val_top1: tuple[tuple[float, float], ...]  # (C, validation top-1) over the grid
    per_class: dict[int, float] = field(default_factory=dict)  # class index -> test top-1
    probe: LinearProbe | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        return {"top1": self.top1, "top1_ci": list(self.top1_ci), "top5": self.top5,
                "mean_class": self.mean_class, "C": self.C}


@dataclass(frozen=True)
class KnnResult:
    """k-NN top-1 on the test split, with the ``k`` chosen on validation."""

    top1: float
    k: int
    n_test: int
    val_top1: tuple[tuple[int, float], ...]

    def to_dict(self) -> dict:
        return {"top1": self.top1, "k": self.k}


def _standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-6] = 1.0  # a constant feature stays 0 rather than dividing by ~0
    return mean, scale


def _as_float(features: np.ndarray, rows: np.ndarray) -> np.ndarray:
    # Fancy indexing a memmap reads just those rows; float32 halves sklearn's memory vs float64.
    return np.asarray(features[rows], dtype=np.float32)


def _fit(x: np.ndarray, y: np.ndarray, C: float, model=None):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    if model is None:
        model = LogisticRegression(C=C, solver="lbfgs", max_iter=300, tol=1e-4, warm_start=True)
    model.set_params(C=C)
    with warnings.catch_warnings():
        # The grid's largest C rarely converges fully: its validation score says whether that matters.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x, y)
    return model


def _log_loss(model, x: np.ndarray, y: np.ndarray) -> float:
    """Mean cross-entropy of ``model`` on ``(x, y)``; a class it never saw costs as much as probability 1e-12."""
    proba = model.predict_proba(x)
    column = {int(c): i for i, c in enumerate(model.classes_)}
    p = np.array([proba[i, column[int(t)]] if int(t) in column else 0.0 for i, t in enumerate(y)])
    return float(-np.log(np.clip(p, 1e-12, 1.0)).mean())


def _logits(model, x: np.ndarray, n_classes: int) -> np.ndarray:
    scores = model.decision_function(x)
    if scores.ndim == 1:  # two classes: one score for the second
        scores = np.stack([-scores / 2, scores / 2], axis=1)
    full = np.full((len(x), n_classes), -np.inf, dtype=np.float64)
    full[:, model.classes_] = scores
    return full


def fit_linear_probe(
    features: np.ndarray,
    labels: np.ndarray,
    splits: np.ndarray,
    *,
    classes: Sequence[str] | None = None,
    grid: Sequence[float] = C_GRID,
) -> LinearResult:
    """Choose ``C`` on validation, refit on train + validation, score on test (see the module doc).

    ``features`` ``(N, D)`` (any float dtype, a memmap is fine), ``labels`` ``(N,)`` class indices,
    ``splits`` from :func:`assign_splits`. The returned :attr:`LinearResult.probe` keeps the refit.
    """
    labels = np.asarray(labels, dtype=np.int64)
    n_classes = int(labels.max()) + 1 if classes is None else len(classes)
    train, val, test = (np.flatnonzero(splits == s) for s in (TRAIN, VAL, TEST))
    if not len(val) or not len(test):
        raise DatasetError("the linear probe needs validation and test images (see assign_splits)")
    x_train = _as_float(features, train)
    mean, scale = _standardise(x_train)
    x_train = (x_train - mean) / scale
    x_val = (_as_float(features, val) - mean) / scale
    scores: list[tuple[float, float]] = []
    solutions: dict[float, tuple[np.ndarray, np.ndarray]] = {}
    losses: dict[float, float] = {}
    model = None
    for C in sorted(grid):  # small to large C, each fit warm-started from the last
        model = _fit(x_train, labels[train], C, model)
        scores.append((C, float((model.predict(x_val) == labels[val]).mean())))
        losses[C] = _log_loss(model, x_val, labels[val])
        solutions[C] = (model.coef_.copy(), model.intercept_.copy())
    # The best validation accuracy; ties (common on small validation splits) go to the lower validation
    # cross-entropy, so that the saved probe's probabilities are as calibrated as the data allow.
    best_C = max(scores, key=lambda cs: (cs[1], -losses[cs[0]], -cs[0]))[0]
    del x_train, x_val
    fit_rows = np.concatenate([train, val])
    x_fit = _as_float(features, fit_rows)
    mean, scale = _standardise(x_fit)
    x_fit = (x_fit - mean) / scale
    # The refit starts from the chosen C's solution on train: a few iterations instead of a cold start.
    model.coef_, model.intercept_ = solutions[best_C]
    final = _fit(x_fit, labels[fit_rows], best_C, model if set(np.unique(labels[val])) <= set(model.classes_) else None)
    del x_fit
    x_test = (_as_float(features, test) - mean) / scale
    logits = _logits(final, x_test, n_classes)
    y_test = labels[test]
    correct = logits.argmax(axis=1) == y_test
    top5 = None
    if n_classes > 5:
        top = np.argpartition(-logits, 4, axis=1)[:, :5]
        top5 = float((top == y_test[:, None]).any(axis=1).mean())
    per_class = _per_class(y_test, correct)
    coef = final.coef_.astype(np.float64)
    intercept = final.intercept_.astype(np.float64)
    if coef.shape[0] == 1:
        coef, intercept = np.stack([-coef[0] / 2, coef[0] / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
    full_coef = np.zeros((n_classes, coef.shape[1]))
    full_intercept = np.full(n_classes, -1e4)  # a class absent from training is never predicted
    full_coef[final.classes_] = coef
    full_intercept[final.classes_] = intercept
    names = tuple(str(c) for c in classes) if classes is not None else tuple(str(i) for i in range(n_classes))
    probe = LinearProbe(mean=mean.astype(np.float64), scale=scale.astype(np.float64), coef=full_coef,
                        intercept=full_intercept, C=best_C, classes=names)
    n_correct = int(correct.sum())
    return LinearResult(
        top1=n_correct / len(test), top1_ci=wilson_interval(n_correct, len(test)), top5=top5,
        mean_class=float(np.mean(list(per_class.values()))), C=best_C, n_test=len(test), val_top1=tuple(scores),
        per_class=per_class, probe=probe,
    )


def _normalised(features: np.ndarray, rows: np.ndarray) -> np.ndarray:
    x = _as_float(features, rows)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _knn_predict(reference: np.ndarray, ref_labels: np.ndarray, queries: np.ndarray, ks: Sequence[int],
                 n_classes: int) -> dict[int, np.ndarray]:
    """Predicted labels of ``queries`` for each ``k``: majority vote, ties to the larger summed similarity."""
    k_max = min(max(ks), len(reference))
    out = {k: np.empty(len(queries), dtype=np.int64) for k in ks}
    for start in range(0, len(queries), _BLOCK):
        sims = queries[start:start + _BLOCK] @ reference.T
        near = np.argpartition(-sims, k_max - 1, axis=1)[:, :k_max] if k_max < len(reference) else \
            np.broadcast_to(np.arange(len(reference)), (len(sims), len(reference)))
        near_sims = np.take_along_axis(sims, near, axis=1)
        order = np.argsort(-near_sims, axis=1, kind="stable")
        near, near_sims = np.take_along_axis(near, order, axis=1), np.take_along_axis(near_sims, order, axis=1)
        near_labels = ref_labels[near]
        rows = np.arange(len(sims))[:, None]
        for k in ks:
            kk = min(k, k_max)
            votes = np.zeros((len(sims), n_classes))
            np.add.at(votes, (rows, near_labels[:, :kk]), 1.0 + near_sims[:, :kk] / (2 * kk + 1))
            out[k][start:start + len(sims)] = votes.argmax(axis=1)
    return out


def fit_knn_probe(features: np.ndarray, labels: np.ndarray, splits: np.ndarray, *,
                  grid: Sequence[int] = K_GRID) -> KnnResult:
    """k-NN on L2-normalised features: ``k`` chosen on validation (neighbours from train), then test top-1 with
    train + validation as neighbours."""
    labels = np.asarray(labels, dtype=np.int64)
    n_classes = int(labels.max()) + 1
    train, val, test = (np.flatnonzero(splits == s) for s in (TRAIN, VAL, TEST))
    if not len(val) or not len(test):
        raise DatasetError("k-NN needs validation and test images (see assign_splits)")
    ks = sorted({min(k, len(train)) for k in grid})
    predicted = _knn_predict(_normalised(features, train), labels[train], _normalised(features, val), ks, n_classes)
    scores = tuple((k, float((predicted[k] == labels[val]).mean())) for k in ks)
    best_k = max(scores, key=lambda ks_: (ks_[1], -ks_[0]))[0]  # ties to the smaller k
    reference = np.concatenate([train, val])
    final = _knn_predict(_normalised(features, reference), labels[reference], _normalised(features, test), [best_k],
                         n_classes)[best_k]
    return KnnResult(top1=float((final == labels[test]).mean()), k=int(best_k), n_test=len(test), val_top1=scores)
