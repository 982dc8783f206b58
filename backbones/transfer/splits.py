"""Train / validation / test splits of a labelled dataset: its own ``train/ val/ test/`` folders, else stratified.

One function for every consumer (probes, LogME, fine-tuning), so they score the same images::

    codes = assign_splits(labels, given)   # int8 per sample: 0 train, 1 val, 2 test

``given`` holds a split code per sample where the dataset says (``-1`` where it does not). A split the dataset
does not provide is carved out of its training images, per class, with a fixed seed: the same dataset always
gets the same split.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from backbones.errors import DatasetError

TRAIN, VAL, TEST, NONE = 0, 1, 2, -1
SPLIT_CODES = {"train": TRAIN, "val": VAL, "test": TEST}
#: Fractions of each class that go to validation and test when the dataset has no such folders.
VAL_FRACTION = 0.2
TEST_FRACTION = 0.2


def split_code(name: str | None) -> int:
    """The code of a split name (``train``/``val``/``test``); ``-1`` for None."""
    return NONE if name is None else SPLIT_CODES[name]


def assign_splits(
    labels: Sequence | np.ndarray,
    given: Sequence[int] | np.ndarray | None = None,
    *,
    seed: int = 0,
    val_fraction: float = VAL_FRACTION,
    test_fraction: float = TEST_FRACTION,
) -> np.ndarray:
    """A split code per sample (int8: 0 train, 1 val, 2 test).

    Samples the dataset already assigns (``given`` not -1) keep their split. When no sample is in
    validation (or test), that split is drawn from the unassigned and training samples of every class:
    ``round(fraction * n)`` images of a class of ``n``, at least one. Every class needs at least one image in
    each split it contributes to; otherwise :class:`DatasetError` says how many images that class needs.
    """
    labels = np.asarray(labels)
    n = len(labels)
    codes = np.full(n, NONE, dtype=np.int8) if given is None else np.asarray(given, dtype=np.int8).copy()
    if codes.shape != (n,):
        raise DatasetError(f"{len(codes)} split codes for {n} samples")
    if n == 0:
        raise DatasetError("the dataset has no images")
    classes = np.unique(labels)
    if len(classes) < 2:
        raise DatasetError(f"the dataset has a single class ({classes[0]!s}); a classifier needs at least two")
    carve = [(code, frac) for code, frac in ((VAL, val_fraction), (TEST, test_fraction)) if not (codes == code).any()]
    pool = (codes == NONE) | (codes == TRAIN)
    rng = np.random.default_rng(seed)
    need = 1 + len(carve)
    for cls in classes:
        idx = np.flatnonzero(pool & (labels == cls))
        if len(idx) < need:
            raise DatasetError(
                f"class {cls!s} has {len(idx)} training image(s); splitting off "
                f"{' and '.join('validation' if c == VAL else 'test' for c, _ in carve) or 'nothing'} "
                f"needs at least {need} per class"
            )
        idx = idx[rng.permutation(len(idx))]
        start = 0
        for code, frac in carve:
            # At least one image per split, and at least one left for training.
            k = min(max(1, int(round(frac * len(idx)))), len(idx) - start - 1)
            codes[idx[start : start + k]] = code
            start += k
        codes[idx[start:]] = TRAIN
    missing = [c for c in classes if not ((codes == TRAIN) & (labels == c)).any()]
    if missing:
        raise DatasetError(f"class {missing[0]!s} has no training images")
    return codes
