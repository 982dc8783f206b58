"""Build catalog architectures and load trained weights or users' checkpoints.

``load_model`` is the one entry point the CLI and the dashboard use::

    loaded = load_model("resnet50", weights="none")              # untrained, offline
    loaded = load_model("efficientnet_lite0")                    # bundled ImageNet weights
    loaded = load_model("resnet50", progress=bar)                # downloaded on first use, unless offline
    loaded = load_model("resnet50", checkpoint="flowers.pth", classes="flowers.txt")
    loaded = load_model("efficientnet_lite0", device="cuda")      # on the GPU (``auto``: the GPU if any)

The result carries the model (in eval mode), the preprocessing its weights
expect, the class names and a lock for work that must not interleave (CAMs
attach hooks; see :mod:`viz`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from backbones.errors import CheckpointError
from backbones.inference.device import model_device, resolve_device
from backbones.inference.preprocessing import Preprocessing
from backbones.zoo.architectures import build_architecture, build_empty, count_parameters, fit_state_dict
from backbones.zoo.catalog import ModelEntry, get_entry, imagenet_categories
from backbones.zoo.checkpoints import (
    META_ARCH,
    META_PREPROCESSING,
    metadata_classes,
    read_checkpoint_metadata,
    read_class_names,
    read_state_dict,
)
from backbones.zoo.weights import load_trained, resolve_weights

# Building is part of this module's public face; it lives in ``architectures`` so that the
# weights sources can build without importing the loading layer above them.
__all__ = [
    "LoadedModel",
    "build_architecture",
    "build_empty",
    "count_parameters",
    "fit_state_dict",
    "load_checkpoint",
    "load_model",
]


@dataclass(eq=False)
class LoadedModel:
    """A ready-to-run model with what it needs to be used correctly."""

    name: str
    entry: ModelEntry
    model: nn.Module
    preprocessing: Preprocessing
    categories: tuple[str, ...]
    weights: str  # a weights name, "bundled", "none" or "checkpoint"
    checkpoint: str | None = None
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @property
    def trained(self) -> bool:
        return self.weights != "none"

    @property
    def num_classes(self) -> int:
        return len(self.categories)

    @property
    def device(self) -> torch.device:
        """Where the model's weights are (inputs go there)."""
        return model_device(self.model)

    def label(self, index: int) -> str:
        return self.categories[index] if 0 <= index < len(self.categories) else f"class {index}"

    def describe(self) -> str:
        if self.checkpoint:
            return f"{self.name} ({self.entry.name} checkpoint {Path(self.checkpoint).name}, {self.num_classes} classes)"
        return f"{self.entry.name} ({self.weights} weights)" if self.trained else f"{self.entry.name} (untrained)"


def load_model(
    name: str | None,
    *,
    weights: str | None = "default",
    checkpoint: str | os.PathLike | None = None,
    classes: str | os.PathLike | list[str] | None = None,
    display_name: str | None = None,
    device: str | torch.device | None = "cpu",
    download: bool = True,
    progress: Callable[[int, int | None], None] | None = None,
    cancel: threading.Event | None = None,
) -> LoadedModel:
    """Build ``name`` and load weights: the default trained ones, a named set, none, or a checkpoint.

    ``classes`` (with ``checkpoint``) is a .txt/.json file or a list of names;
    its length must equal the checkpoint's class count. ``device`` (``auto``, ``cpu``,
    ``cuda[:N]``, ``mps``; see :func:`~backbones.inference.device.resolve_device`) is
    where the model is put; it is checked before anything is built. ``name`` may be None with a checkpoint
    that says its own architecture (one written by :func:`backbones.transfer.export.save_checkpoint`).

    Trained weights missing here are downloaded first, as torchvision and timm do (``progress(done, total)``
    per chunk, ``cancel`` stops it), unless ``download`` is false or offline mode is on
    (``BACKBONES_OFFLINE=1``; ``HF_HUB_OFFLINE=1`` for timm models): then :class:`WeightsUnavailableError`
    names the file, where it goes, its URL and how to import it. ``weights="none"`` never touches the network.
    """
    dev = resolve_device(device)
    if checkpoint is not None:
        return load_checkpoint(name, checkpoint, classes=classes, display_name=display_name, device=dev)
    if name is None:
        raise CheckpointError("no model named: give a catalog name or a checkpoint")
    entry = get_entry(name)
    info = resolve_weights(entry, weights)
    if info is None:
        return LoadedModel(
            name=entry.name,
            entry=entry,
            model=build_architecture(entry).to(dev),
            preprocessing=entry.preprocessing,
            categories=imagenet_categories(),
            weights="none",
        )
    model = load_trained(entry, info, download=download, progress=progress, cancel=cancel).to(dev)
    return LoadedModel(
        name=entry.name,
        entry=entry,
        model=model,
        preprocessing=info.preprocessing,
        categories=imagenet_categories(),
        weights=info.name,
    )


def load_checkpoint(
    entry: ModelEntry | str | None,
    checkpoint: str | os.PathLike,
    *,
    classes: str | os.PathLike | list[str] | None = None,
    display_name: str | None = None,
    device: str | torch.device | None = "cpu",
) -> LoadedModel:
    """Load a user's fine-tuned checkpoint into a catalog architecture, on ``device``.

    The class count is inferred from the classifier weight and the head replaced
    to match. Without ``classes``, 1000-class checkpoints use ImageNet names and
    others ``class 0 .. class N-1``. The file is read with ``map_location="cpu"``
    whatever device it was saved from (a GPU checkpoint loads on a CPU-only machine),
    checked against the architecture there, then the model moves to ``device``.

    A ``.safetensors`` file that carries its architecture, class names and preprocessing in its metadata
    (see :data:`~backbones.zoo.checkpoints.META_ARCH`) needs only its path: ``entry`` may be None, and an
    ``entry`` that names another architecture is refused in one line.
    """
    dev = resolve_device(device)
    path = Path(checkpoint)
    meta = read_checkpoint_metadata(path)
    entry = _checkpoint_entry(entry, meta, path.name)
    state = read_state_dict(path)
    extra = {}
    if entry.arch == "googlenet" and any(k.startswith("aux1.") for k in state):
        extra["aux_logits"] = True  # trained with auxiliary heads: keep them so every key fits
    model = build_architecture(entry, **extra)
    n = fit_state_dict(model, state, label=path.name)
    if classes is None:
        names = metadata_classes(meta, label=path.name)
        if names is None:
            names = list(imagenet_categories()) if n == 1000 else [f"class {i}" for i in range(n)]
        elif len(names) != n:
            raise CheckpointError(f"{path.name} has {n} classes but its metadata names {len(names)}")
    else:
        names = list(classes) if isinstance(classes, (list, tuple)) else read_class_names(classes)
        if len(names) != n:
            raise CheckpointError(
                f"{path.name} has {n} classes but the class-name list has {len(names)}"
            )
    return LoadedModel(
        name=display_name or path.stem,
        entry=entry,
        model=model.eval().to(dev),
        preprocessing=_metadata_preprocessing(meta, path.name) or entry.preprocessing,
        categories=tuple(names),
        weights="checkpoint",
        checkpoint=str(path),
    )



def _checkpoint_entry(entry: ModelEntry | str | None, meta: dict[str, str], label: str) -> ModelEntry:
    """The architecture a checkpoint is loaded into: the caller's, checked against the one the file names."""
    saved = meta.get(META_ARCH)
    if entry is None:
        if not saved:
            raise CheckpointError(f"{label} does not say which architecture it is for: name the model (--model M)")
        return get_entry(saved)
    entry = get_entry(entry) if isinstance(entry, str) else entry
    if saved and get_entry(saved).name != entry.name:
        raise CheckpointError(f"{label} was saved from {saved}, not {entry.name}: load it as {saved} (or name no model)")
    return entry


def _metadata_preprocessing(meta: dict[str, str], label: str) -> Preprocessing | None:
    """The preprocessing a checkpoint was trained with, when its metadata says (else the architecture's)."""
    import json

    raw = meta.get(META_PREPROCESSING)
    if not raw:
        return None
    try:
        d = json.loads(raw)
        return Preprocessing(
            crop_size=int(d["crop_size"]),
            resize_size=int(d["resize_size"]),
            mean=tuple(float(x) for x in d["mean"]),
            std=tuple(float(x) for x in d["std"]),
            interpolation=str(d.get("interpolation", "bilinear")),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{label}: the preprocessing in its metadata is not readable") from exc
