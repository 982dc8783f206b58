"""The model-randomisation sanity check (Adebayo et al. 2018): does the map change when the model is destroyed?

Cascading randomisation re-initialises the model's blocks from the classifier
down, one block at a time, and after each step explains the image again for the
same class and compares the new map with the original one (Spearman rank
correlation and SSIM, :mod:`viz.quality.similarity`). A method whose map barely
changes while the weights that produce the prediction are gone does not explain
the model.

The randomised model is a private view (:func:`viz.layers.private_view`) whose
re-initialised blocks get their own new tensors, so the cached model — shared by
every session — is never written to. A block is a child module that holds
parameters, found by walking into plain containers (``nn.Sequential``,
``nn.ModuleList``, ``nn.ModuleDict``): ``fc``, ``layer4.1``, ... for a ResNet;
``classifier``, ``bn2``, ``conv_head``, ``blocks.6.0``, ... for EfficientNet;
``heads.head``, ``encoder.ln``, ``encoder.layers.encoder_layer_11``, ... for a ViT.
Blocks are re-initialised with their own ``reset_parameters`` (PyTorch's default
initialisation; BatchNorm back to identity statistics), seeded, on the CPU so the
result does not depend on the device.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from backbones.callbacks import ProgressFn, StopFn
from backbones.errors import BackboneError
from backbones.measure.common import WORK_QUEUE, FairLock
from backbones.zoo.models import LoadedModel
from viz.cam import explain
from viz.inputs import ensure_rgb, make_private_view
from viz.layers import NOT_RUN, describe_layers
from viz.methods.base import check_stop
from viz.quality.similarity import spearman, ssim
from viz.targets import Target

_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
# Modules walked into like containers: torchvision ViT's encoder holds all twelve blocks, which are the steps
# users expect (its position embedding is then not re-initialised).
_WALK_INTO = frozenset({"Encoder"})


@dataclass(frozen=True, eq=False)
class SanityStep:
    """The map after re-initialising every block down to and including ``randomized``."""

    randomized: str
    spearman: float  # NaN when the new map is empty (no order to correlate)
    ssim: float
    heatmap: np.ndarray = field(repr=False)  # float32 (h, w) in [0, 1] over the model's input crop

    def to_dict(self) -> dict:
        return {"randomized": self.randomized, "spearman": self.spearman, "ssim": self.ssim}


@dataclass(frozen=True, eq=False)
class SanityCheck:
    """A cascading randomisation: the original map, then one :class:`SanityStep` per block, classifier first."""

    model: str
    method: str
    layer: str | None
    target: Target
    original: np.ndarray = field(repr=False)  # float32 (h, w) in [0, 1] over the model's input crop
    steps: tuple[SanityStep, ...]

    def to_dict(self) -> dict:
        return {"model": self.model, "method": self.method, "steps": [s.to_dict() for s in self.steps]}


def _blocks(module: nn.Module, prefix: str) -> Iterator[str]:
    for name, child in module.named_children():
        full = f"{prefix}.{name}" if prefix else name
        if next(child.parameters(), None) is None:
            continue
        if type(child) in _CONTAINERS or type(child).__name__ in _WALK_INTO:
            yield from _blocks(child, full)
        else:
            yield full


def list_cascade_blocks(loaded: LoadedModel) -> list[str]:
    """The blocks in the order they are randomised: the last to run in the forward pass (the classifier) first.

    Blocks that never run in eval mode (auxiliary heads) are left out. Costs the
    forward pass of :func:`viz.layers.describe_layers` the first time.
    """
    order = {info.name: info.order for info in describe_layers(loaded) if info.order < NOT_RUN}
    return sorted((b for b in _blocks(loaded.model, "") if b in order), key=lambda b: -order[b])


def randomize_block(model: nn.Module, name: str, *, seed: int = 0) -> None:
    """Re-initialise block ``name`` of ``model`` in new tensors (the old ones are left as they were).

    Call it on a private view: the view's modules get new parameter and buffer
    tensors, so a model sharing the old ones is unaffected. Modules without
    ``reset_parameters`` get normal noise with each tensor's own mean and spread.
    """
    block = model.get_submodule(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        for module in block.modules():
            stores = (module._parameters, module._buffers)
            devices = {(i, k): t.device for i, st in enumerate(stores) for k, t in st.items() if t is not None}
            if not devices:
                continue
            for (i, key), _ in devices.items():
                _put(stores[i], key, stores[i][key].detach().to("cpu", copy=True))
            with torch.no_grad():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
                else:
                    for p in module._parameters.values():
                        if p is not None and p.is_floating_point() and p.numel() > 1:
                            p.normal_(float(p.mean()), float(p.std()))
            for (i, key), device in devices.items():
                _put(stores[i], key, stores[i][key].detach().to(device))


def _put(store: dict, key: str, tensor: torch.Tensor) -> None:
    """Replace ``store[key]`` (a module's parameter or buffer) by ``tensor``, keeping its kind and ``requires_grad``."""
    old = store[key]
    store[key] = nn.Parameter(tensor, requires_grad=old.requires_grad) if isinstance(old, nn.Parameter) else tensor


def run_sanity_check(
    loaded: LoadedModel,
    image,
    *,
    method: str = "gradcam",
    layer: str | None = None,
    target: int | str | None = None,
    seed: int = 0,
    max_steps: int | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    queue: FairLock | None = WORK_QUEUE,
    **options,
) -> SanityCheck:
    """Cascading randomisation of ``loaded`` for ``method`` on ``image`` (arguments as :func:`viz.cam.explain`).

    Every step explains the class of the original explanation (its top-1 unless
    ``target``); ``max_steps`` stops after that many blocks (default: all).
    Costs one explanation per step, plus one forward pass. The original and each step are one unit of work taken
    through ``queue`` (the server's fair work queue, shared with method ranking and measurements; None: none);
    ``should_stop()`` is checked while waiting and between and inside units (:class:`CancelledError`).
    """
    if max_steps is not None and int(max_steps) < 1:
        raise BackboneError(f"max_steps must be at least 1, got {max_steps}")
    img = ensure_rgb(image)

    def unit():
        return queue.turn(should_stop, what="the sanity check") if queue is not None else contextlib.nullcontext()

    with unit():
        original = explain(loaded, img, method=method, layer=layer, target=target, should_stop=should_stop, **options)
    blocks = list_cascade_blocks(loaded)[: max_steps if max_steps is not None else None]
    # One view for the whole cascade: each step adds one randomised block to the previous ones.
    randomized = dataclasses.replace(loaded, model=make_private_view(loaded), lock=threading.RLock())
    steps = []
    for i, name in enumerate(blocks):
        check_stop(should_stop)
        with unit():
            check_stop(should_stop)
            randomize_block(randomized.model, name, seed=seed + i)
            exp = explain(
                randomized, img, method=original.method, layer=original.layer, target=original.target.index,
                should_stop=should_stop, **options,
            )
        steps.append(SanityStep(name, spearman(original.heatmap_crop, exp.heatmap_crop),
                                ssim(original.heatmap_crop, exp.heatmap_crop), exp.heatmap_crop))
        if progress is not None:
            progress(i + 1, len(blocks), f"randomised {name}")
    return SanityCheck(loaded.name, original.method, original.layer, original.target, original.heatmap_crop, tuple(steps))
