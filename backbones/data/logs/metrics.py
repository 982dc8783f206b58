"""Metric names read by their words: which :class:`~backbones.data.logs.runs.Epoch` field a name means.

``loss`` is a loss, ``acc``/``accuracy``/``top1`` an accuracy, ``time``/``duration``/``elapsed``
the epoch time in seconds; ``test``/``val``/``valid``/``eval`` make it a test metric,
otherwise it is a training one. Every parser classifies its names here.
"""

from __future__ import annotations

import math
import re

_TEST_WORDS = {"test", "val", "valid", "validation", "eval", "evaluation", "dev", "testing"}
_TRAIN_WORDS = {"train", "training", "trn", "tr"}
_ACC_WORDS = {"acc", "accuracy", "top1", "acc1", "acc@1"}
_TIME_WORDS = {"time", "duration", "elapsed", "seconds", "secs", "sec", "time_s"}
_IGNORE_WORDS = {"lr", "learning", "rate", "top5", "acc5", "step", "steps", "batch", "iter", "iteration",
                 "err", "error", "grad", "norm", "momentum", "weight", "decay", "eta"}
EPOCH_NAMES = {"epoch", "epochs", "ep", "epoch_num", "epoch_number", "epoch_idx", "epoch_index"}


def metric_words(key: str) -> list[str]:
    """The lower-case words of a metric name (``"Accuracy/test"`` -> ``["accuracy", "test"]``)."""
    return [w for w in re.split(r"[\s_\-./:|]+", key.strip().lower()) if w]


def classify_metric(key: str, split_hint: str | None = None) -> str | None:
    """The :class:`Epoch` field a metric name means (``"val_accuracy"`` -> ``"test_acc"``), or None."""
    words = metric_words(key)
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


def names_split(key: str) -> bool:
    """Whether the name says train or test (``"val_acc"``), so that it wins over a bare ``"acc"``."""
    ws = set(metric_words(key))
    return bool(ws & (_TEST_WORDS | _TRAIN_WORDS))


def parse_number(text: str) -> float | None:
    """A finite float, or None for text that is no number (or is nan/inf)."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None
