"""Linear probe, k-NN and the splits on synthetic features whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from backbones.errors import DatasetError
from backbones.transfer.probes import (
    TEST,
    TRAIN,
    VAL,
    assign_splits,
    fit_knn_probe,
    fit_linear_probe,
    split_sizes,
    wilson_interval,
)


def _blobs(n_per_class: int, n_classes: int, dim: int, spread: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim)) * 5
    labels = np.repeat(np.arange(n_classes), n_per_class)
    x = centres[labels] + rng.normal(size=(len(labels), dim)) * spread
    return x.astype(np.float16), labels


def test_separable_features_score_100_percent():
    x, y = _blobs(20, 8, 16, spread=0.1)
    splits = assign_splits(y)
    linear = fit_linear_probe(x, y, splits)
    knn = fit_knn_probe(x, y, splits)
    assert linear.top1 == 1.0 and linear.top5 == 1.0 and linear.mean_class == 1.0 and knn.top1 == 1.0
    lo, hi = linear.top1_ci
    assert hi == 1.0 and 0.85 < lo < 1.0  # 32 test images all right: Wilson's lower bound is 0.89
    assert linear.C in dict(linear.val_top1) and knn.k in dict(knn.val_top1)


def test_shuffled_labels_score_near_chance():
    x, y = _blobs(40, 10, 32, spread=0.1)
    y = np.random.default_rng(1).permutation(y)
    splits = assign_splits(y)
    linear = fit_linear_probe(x, y, splits, grid=(0.01, 1.0, 100.0))
    knn = fit_knn_probe(x, y, splits)
    n_test = int((splits == TEST).sum())
    # Chance is 10%; the interval of 80 test images around it reaches ~20%.
    assert linear.top1 < 0.25 and knn.top1 < 0.25 and n_test == 80


def test_the_probe_logits_are_the_folded_standardised_model():
    x, y = _blobs(12, 3, 8, spread=2.0)
    result = fit_linear_probe(x, y, assign_splits(y))
    probe = result.probe
    raw = np.asarray(x, dtype=np.float32)
    by_hand = ((raw - probe.mean) / probe.scale) @ probe.coef.T + probe.intercept
    np.testing.assert_allclose(probe.predict_logits(raw), by_hand, rtol=1e-4, atol=1e-3)
    import torch

    with torch.no_grad():
        np.testing.assert_allclose(probe.to_linear()(torch.from_numpy(raw)).numpy(), by_hand, rtol=1e-4, atol=1e-3)


def test_two_classes_give_two_logits():
    x, y = _blobs(10, 2, 4, spread=0.1)
    result = fit_linear_probe(x, y, assign_splits(y), classes=("cat", "dog"))
    assert result.probe.coef.shape == (2, 4) and result.top5 is None and result.probe.classes == ("cat", "dog")
    assert (result.probe.predict_logits(x).argmax(1) == y).all()


def test_wilson_interval_worked_values():
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0


def test_stratified_splits_are_fixed_and_cover_every_class():
    y = np.repeat(np.arange(4), 10)
    a, b = assign_splits(y), assign_splits(y)
    assert (a == b).all() and split_sizes(a) == {"train": 24, "val": 8, "test": 8}
    for c in range(4):
        assert {int(s) for s in a[y == c]} == {TRAIN, VAL, TEST}


def test_the_datasets_own_splits_are_kept_and_missing_ones_drawn_from_train():
    y = np.repeat(np.arange(2), 10)
    given = np.array(([TRAIN] * 8 + [TEST] * 2) * 2, dtype=np.int8)
    s = assign_splits(y, given)
    assert ((s == TEST) == (given == TEST)).all()  # test/ untouched
    assert split_sizes(s) == {"train": 12, "val": 4, "test": 4}  # val drawn from train/


@pytest.mark.parametrize(
    ("labels", "split", "message"),
    [
        (np.zeros(10, int), None, r"^only one class \('roses'\): a probe needs images of at least two classes$"),
        (np.array([0] * 10 + [1] * 2), None,
         r"^class 'tulips' has 2 image\(s\) in all; the probes need at least 3 per class \(1 train, 1 per split "
         r"drawn for validation and test\)$"),
        (np.array([0, 0, 1, 1]), np.array([0, 2, 0, 2]),
         r"^class 'roses' has 1 image\(s\) in train/; the probes need at least 2 per class"),
        (np.array([0, 1, 0, 1]), np.array([1, 1, 2, 2]), "^the dataset has no train/ images"),
    ],
)
def test_bad_splits_say_what_is_needed_in_one_line(labels, split, message):
    with pytest.raises(DatasetError, match=message) as info:
        assign_splits(labels, split, classes=("roses", "tulips"))
    assert "\n" not in str(info.value)


def test_a_thousand_classes():
    x, y = _blobs(4, 1000, 8, spread=0.01)
    splits = assign_splits(y)
    assert split_sizes(splits) == {"train": 2000, "val": 1000, "test": 1000}
    knn = fit_knn_probe(x, y, splits)
    linear = fit_linear_probe(x, y, splits, grid=(1.0,))
    assert knn.top1 > 0.95 and linear.top1 > 0.9 and linear.top5 >= linear.top1
    assert linear.probe.coef.shape == (1000, 8)
