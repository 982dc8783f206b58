"""Which class an explanation is for: an index, a label, or the model's own top-k.

:func:`resolve_target` turns what a user typed (``652``, ``"652"``,
``"Military Uniform"``, ``"uniform"``) into a class index, or ``None`` for the
top-1 class; :func:`check_topk` and :func:`rank_classes` pick the top-``k``;
:func:`describe_target` records the class an explanation ended up with, its
probability and its rank, as a :class:`Target`.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

import numpy as np
import torch

from backbones.errors import BackboneError
from backbones.zoo.models import LoadedModel

#: Ranks beyond this are not reported (``Target.rank`` is ``None``).
RANKED = 5


class TargetError(BackboneError, ValueError):
    """A target class that is out of range, unknown or ambiguous."""


@dataclass(frozen=True)
class Target:
    """The class an explanation is for, with the model's probability for it on this image."""

    index: int
    label: str
    prob: float
    rank: int | None = None  # 1 = top-1; None when outside the top 5

    def to_dict(self) -> dict:
        return {"index": self.index, "label": self.label, "prob": self.prob}


def _norm_label(text: str) -> str:
    return " ".join(re.sub(r"[_\s]+", " ", str(text)).lower().split())


def check_index(index: int, num_classes: int) -> int:
    """``index`` when it is a class of a model with ``num_classes`` classes; :class:`TargetError` otherwise."""
    if not 0 <= index < num_classes:
        raise TargetError(f"class index {index} is out of range: this model has classes 0..{num_classes - 1}")
    return index


def resolve_target(loaded: LoadedModel, target: int | str | None) -> int | None:
    """A class index from an index, a numeric string or a label; ``None`` stays ``None`` (top-1).

    Labels match case-insensitively, exactly or as a unique substring
    (``"uniform"`` -> ``military uniform``). Raises :class:`TargetError` for an
    index out of range, an ambiguous label (listing the candidates with their
    indices) or an unknown one (listing the closest labels).
    """
    if target is None:
        return None
    n = loaded.num_classes
    if isinstance(target, (bool, np.bool_)):
        raise TargetError(f"target must be a class index or a label, got {target!r}")
    if isinstance(target, (int, np.integer)) or (isinstance(target, str) and re.fullmatch(r"\s*-?\d+\s*", target)):
        return check_index(int(target), n)
    if not isinstance(target, str) or not target.strip():
        raise TargetError(f"target must be a class index or a label, got {target!r}")
    wanted = _norm_label(target)
    labels = [_norm_label(c) for c in loaded.categories]
    exact = [i for i, c in enumerate(labels) if c == wanted]
    if len(exact) == 1:
        return exact[0]
    if len(exact) > 1:
        listing = ", ".join(f"{i}" for i in exact)
        raise TargetError(f"{target!r} names {len(exact)} classes ({listing}): give the index")
    partial = [i for i, c in enumerate(labels) if wanted in c]
    if len(partial) == 1:
        return partial[0]
    if len(partial) > 1:
        listing = ", ".join(f"{loaded.categories[i]} ({i})" for i in partial[:8])
        more = f" and {len(partial) - 8} more" if len(partial) > 8 else ""
        raise TargetError(f"{target!r} matches {len(partial)} classes: {listing}{more}; be more specific or give the index")
    close = difflib.get_close_matches(wanted, labels, n=5, cutoff=0.6)
    if close:
        listing = ", ".join(f"{loaded.categories[labels.index(c)]} ({labels.index(c)})" for c in close)
        raise TargetError(f"no class {target!r}; closest: {listing}")
    raise TargetError(f"no class {target!r} among this model's {n} classes; give a label or an index 0..{n - 1}")


def check_topk(loaded: LoadedModel, k: int) -> int:
    """``k`` as an int when the model has at least ``k`` classes; :class:`TargetError` otherwise."""
    if not 1 <= int(k) <= loaded.num_classes:
        raise TargetError(f"k must be in 1..{loaded.num_classes}, got {k}")
    return int(k)


def rank_classes(probs: torch.Tensor, k: int) -> list[int]:
    """The indices of the ``k`` most probable classes, best first."""
    return probs.topk(int(k)).indices.tolist()


def describe_target(loaded: LoadedModel, index: int, probs: torch.Tensor) -> Target:
    """The :class:`Target` for class ``index`` given the model's ``probs`` on the image."""
    top = rank_classes(probs, min(RANKED, probs.numel()))
    rank = top.index(index) + 1 if index in top else None
    return Target(index=index, label=loaded.label(index), prob=float(probs[index]), rank=rank)
