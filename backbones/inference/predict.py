"""Top-k prediction for one or more images with one or more models."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image

from backbones.errors import BackboneError
from backbones.inference.logits import logits_of
from backbones.zoo.models import LoadedModel

#: Images per forward pass: bounds activation memory for large uploads.
MAX_BATCH = 16


@dataclass(frozen=True)
class TopK:
    rank: int
    index: int
    label: str
    prob: float

    def to_dict(self) -> dict:
        return {"rank": self.rank, "index": self.index, "label": self.label, "prob": self.prob}


@dataclass(frozen=True)
class Prediction:
    image: str
    model: str
    topk: tuple[TopK, ...]

    def to_dict(self) -> dict:
        return {"image": self.image, "model": self.model, "topk": [t.to_dict() for t in self.topk]}


def class_probabilities(loaded: LoadedModel, images: Sequence[Image.Image]) -> torch.Tensor:
    """Softmax probabilities, shape ``(N, num_classes)``, on the CPU, for RGB images.

    Each batch is preprocessed on the CPU and runs on the model's device.
    """
    if not images:
        raise BackboneError("no images given")
    out = []
    device = loaded.device
    with torch.inference_mode():
        for start in range(0, len(images), MAX_BATCH):
            batch = loaded.preprocessing.batch(list(images[start : start + MAX_BATCH])).to(device)
            logits = logits_of(loaded.model(batch))
            out.append(torch.softmax(logits.float(), dim=1).cpu())
    return torch.cat(out)


def predict(
    loaded: LoadedModel,
    images: Sequence[Image.Image],
    *,
    names: Sequence[str] | None = None,
    topk: int = 5,
) -> list[Prediction]:
    """Top-``topk`` classes with probabilities, descending, one :class:`Prediction` per image."""
    if topk < 1:
        raise BackboneError(f"--topk must be at least 1, got {topk}")
    names = list(names) if names is not None else [f"image {i}" for i in range(len(images))]
    probs = class_probabilities(loaded, images)
    k = min(topk, probs.shape[1])
    values, indices = probs.topk(k, dim=1)
    results = []
    for name, vals, idxs in zip(names, values.tolist(), indices.tolist()):
        results.append(
            Prediction(
                image=name,
                model=loaded.name,
                topk=tuple(
                    TopK(rank=r + 1, index=int(i), label=loaded.label(int(i)), prob=float(p))
                    for r, (p, i) in enumerate(zip(vals, idxs))
                ),
            )
        )
    return results
