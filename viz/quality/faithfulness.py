"""Deletion and insertion scores (Petsiuk et al. 2018, RISE): does the model's confidence follow the map?

Deletion replaces the map's most salient pixels first with the baseline (zeros
after normalisation: the dataset's mean colour), in ``steps`` equal steps, and
records the class probability after each; the area under that curve (trapezoid
over the deleted fraction 0..1, so in [0, 1]) is the deletion AUC — lower is
better. Insertion starts from a blurred copy (:func:`viz.methods.gradients.make_baseline`)
and puts the most salient pixels back first — higher is better. Pixels the map
ranks equal are taken in a seeded random order.

The masked images go through the model in batches (``batch_size`` per forward
pass); the three images every map shares (the image, the fully deleted image and
the blurred one) are evaluated once. A score is reported beside the same score
for a seeded random map drawn at the method's native resolution and upsampled
like the method's map (:func:`make_random_map`): per-pixel noise would scatter
deletions over the whole image, which wrecks any image fastest and makes every
real map look worse than random.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from backbones.callbacks import ProgressFn, StopFn
from backbones.errors import BackboneError
from backbones.inference.logits import logits_of
from backbones.measure.common import WORK_QUEUE, FairLock
from backbones.zoo.models import LoadedModel
from viz.cam import Explanation, explain
from viz.inputs import ensure_rgb, get_device_dtype, make_private_view
from viz.methods.base import check_stop
from viz.methods.gradcam import upsample
from viz.methods.gradients import make_baseline
from viz.methods.registry import METHOD_CLASSES, refused_methods
from viz.targets import Target, resolve_target

#: Masked images per forward pass.
BATCH_SIZE = 32

#: The methods :func:`score_methods` compares by default, those of them that apply to the model
#: (guided Grad-CAM needs a ReLU network, rollout a ViT).
DEFAULT_METHODS = ("gradcam", "gradcam++", "guided-gradcam", "saliency", "integrated-gradients", "occlusion", "rollout")


@dataclass(frozen=True)
class FaithfulnessScore:
    """Deletion and insertion curves of one map (``steps + 1`` probabilities each, from 0 to all pixels) and their AUCs."""

    deletion_auc: float
    insertion_auc: float
    deletion_curve: tuple[float, ...]
    insertion_curve: tuple[float, ...]

    def to_dict(self) -> dict:
        return {
            "deletion_auc": self.deletion_auc,
            "insertion_auc": self.insertion_auc,
            "deletion_curve": list(self.deletion_curve),
            "insertion_curve": list(self.insertion_curve),
        }


@dataclass(frozen=True)
class Faithfulness:
    """The faithfulness of one explanation, with a random map's scores for reference.

    ``forward_passes`` counts the batched passes of the scoring (the map and its
    random reference together), not those of the explanation itself.
    """

    model: str
    method: str
    layer: str | None
    target: Target
    steps: int
    score: FaithfulnessScore
    random: FaithfulnessScore
    forward_passes: int

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "method": self.method,
            "target": self.target.to_dict(),
            "steps": self.steps,
            "deletion_auc": self.score.deletion_auc,
            "insertion_auc": self.score.insertion_auc,
            "random_deletion_auc": self.random.deletion_auc,
            "random_insertion_auc": self.random.insertion_auc,
            "deletion_curve": list(self.score.deletion_curve),
            "insertion_curve": list(self.score.insertion_curve),
            "forward_passes": self.forward_passes,
        }


def area_under_curve(curve: Sequence[float]) -> float:
    """Trapezoid area under ``curve`` sampled at equal steps over [0, 1]: in [0, 1] for probabilities."""
    steps = len(curve) - 1
    if steps < 1:
        raise BackboneError("a curve needs at least two points")
    return float((sum(curve) - (curve[0] + curve[-1]) / 2) / steps)


def make_random_map(native: tuple[int, int], size: tuple[int, int], *, seed: int = 0) -> np.ndarray:
    """Uniform noise drawn at ``native = (h, w)`` and upsampled bilinearly (as Grad-CAM is) to ``size = (H, W)``."""
    g = torch.Generator().manual_seed(int(seed))
    noise = torch.rand((1, 1, *native), generator=g)
    if tuple(native) != tuple(size):
        noise = upsample(noise, tuple(size))
    return noise[0, 0].numpy().astype(np.float32)


def _check_steps(steps: int, batch_size: int) -> None:
    if not 1 <= int(steps) <= 1024:
        raise BackboneError(f"steps must be in 1..1024, got {steps}")
    if int(batch_size) < 1:
        raise BackboneError(f"batch_size must be at least 1, got {batch_size}")


def _ranks(saliency: np.ndarray, seed: int) -> torch.Tensor:
    """Each pixel's place in the deletion order (0 = most salient), ties in a seeded random order."""
    flat = np.asarray(saliency, dtype=np.float64).ravel()
    tiebreak = np.random.default_rng(seed).random(flat.size)
    order = np.lexsort((tiebreak, -flat))
    ranks = np.empty(flat.size, dtype=np.int64)
    ranks[order] = np.arange(flat.size)
    return torch.from_numpy(ranks).view(saliency.shape)


def _key(kind: str, which: int, count: int, total: int) -> tuple:
    """One masked image; the images every map shares get one key each so they are evaluated once."""
    if (kind, count) in (("deletion", 0), ("insertion", total)):
        return ("image",)
    if (kind, count) == ("deletion", total):
        return ("deleted",)
    if (kind, count) == ("insertion", 0):
        return ("blurred",)
    return (kind, which, count)


def score_maps(
    model: nn.Module,
    inputs: torch.Tensor,
    maps: Sequence[np.ndarray],
    index: int,
    *,
    steps: int = 32,
    batch_size: int = BATCH_SIZE,
    seed: int = 0,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> tuple[list[FaithfulnessScore], int]:
    """Deletion and insertion scores of each map for class ``index``, and the forward passes they took.

    ``model`` returns ``(N, classes)`` logits (pass a private view of a shared
    model); ``inputs`` is the preprocessed image ``(1, C, H, W)`` and each map is
    ``(H, W)`` over it. Runs under ``torch.inference_mode``.
    """
    _check_steps(steps, batch_size)
    if inputs.ndim != 4 or inputs.shape[0] != 1:
        raise BackboneError(f"inputs must have shape (1, C, H, W), got {tuple(inputs.shape)}")
    size = tuple(inputs.shape[2:])
    for m in maps:
        if tuple(np.shape(m)) != size:
            raise BackboneError(f"a map must cover the input ({size[0]}x{size[1]}), got {tuple(np.shape(m))}")
    device, dtype = get_device_dtype(model)
    x = inputs[0].detach().to(device=device, dtype=dtype)
    total = size[0] * size[1]
    counts = [(k * total + steps // 2) // steps for k in range(steps + 1)]
    ranks = [_ranks(np.asarray(m), seed).to(device) for m in maps]
    with torch.inference_mode():
        fixed = {("image",): x, ("deleted",): torch.zeros_like(x), ("blurred",): make_baseline(x[None], "blur")[0]}

        def image_for(key: tuple) -> torch.Tensor:
            if key in fixed:
                return fixed[key]
            kind, which, count = key
            mask = ranks[which] < count
            return torch.where(mask, 0.0, x) if kind == "deletion" else torch.where(mask, x, fixed[("blurred",)])

        wanted = {
            (kind, which): [_key(kind, which, c, total) for c in counts]
            for which in range(len(maps))
            for kind in ("deletion", "insertion")
        }
        keys = list(dict.fromkeys(k for ks in wanted.values() for k in ks))
        probs: dict[tuple, float] = {}
        passes = math.ceil(len(keys) / batch_size)
        for p in range(passes):
            check_stop(should_stop)
            chunk = keys[p * batch_size : (p + 1) * batch_size]
            logits = logits_of(model(torch.stack([image_for(k) for k in chunk])))
            probs.update(zip(chunk, torch.softmax(logits.float(), dim=1)[:, index].tolist()))
            if progress is not None:
                progress(p + 1, passes, "deletion and insertion")
    scores = []
    for which in range(len(maps)):
        deletion = tuple(probs[k] for k in wanted[("deletion", which)])
        insertion = tuple(probs[k] for k in wanted[("insertion", which)])
        scores.append(FaithfulnessScore(area_under_curve(deletion), area_under_curve(insertion), deletion, insertion))
    return scores, passes


def score_explanations(
    loaded: LoadedModel,
    image,
    explanations: Sequence[Explanation],
    *,
    steps: int = 32,
    seed: int = 0,
    batch_size: int = BATCH_SIZE,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> list[Faithfulness]:
    """Score explanations already computed for ``image`` with ``loaded`` (e.g. the ones a page shows).

    Each is scored for its own class, beside a random map as smooth as it
    (``seed`` draws the random map and orders tied pixels).
    """
    _check_steps(steps, batch_size)
    img = ensure_rgb(image)
    x = loaded.preprocessing(img).unsqueeze(0)
    size = tuple(x.shape[2:])
    view = make_private_view(loaded)
    out = []
    for i, exp in enumerate(explanations):
        native = METHOD_CLASSES[exp.method].native_shape(exp.raw.shape, size)
        reference = make_random_map(native, size, seed=seed)
        (score, random), passes = score_maps(
            view, x, [exp.heatmap_crop, reference], exp.target.index,
            steps=steps, batch_size=batch_size, seed=seed, should_stop=should_stop,
        )
        out.append(Faithfulness(exp.model, exp.method, exp.layer, exp.target, int(steps), score, random, passes))
        if progress is not None:
            progress(i + 1, len(explanations), f"faithfulness of {exp.method}")
    return out


def score_faithfulness(
    loaded: LoadedModel,
    image,
    *,
    method: str = "gradcam",
    layer: str | None = None,
    target: int | str | None = None,
    steps: int = 32,
    seed: int = 0,
    batch_size: int = BATCH_SIZE,
    should_stop: StopFn | None = None,
    **options,
) -> Faithfulness:
    """Explain ``image`` (:func:`viz.cam.explain`, same arguments) and score that explanation."""
    _check_steps(steps, batch_size)
    img = ensure_rgb(image)
    exp = explain(loaded, img, method=method, layer=layer, target=target, should_stop=should_stop, **options)
    return score_explanations(loaded, img, [exp], steps=steps, seed=seed, batch_size=batch_size, should_stop=should_stop)[0]


def score_methods(
    loaded: LoadedModel,
    image,
    *,
    methods: Sequence[str] | None = None,
    layer: str | None = None,
    target: int | str | None = None,
    steps: int = 32,
    seed: int = 0,
    batch_size: int = BATCH_SIZE,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    **options,
) -> list[Faithfulness]:
    """Every method in ``methods`` on the same image and class (the first method's top-1 unless ``target``), scored.

    ``None``: the :data:`DEFAULT_METHODS` that apply to this model. One method at a time through the shared
    work queue, as :func:`rank_methods` (of which this is one model).
    """
    return rank_methods(
        [loaded], image, methods=methods, layer=layer, target=target, steps=steps, seed=seed,
        batch_size=batch_size, progress=progress, should_stop=should_stop, **options,
    )


def rank_methods(
    models: Sequence[LoadedModel],
    image,
    *,
    methods: Sequence[str] | None = None,
    layer: str | None = None,
    target: int | str | None = None,
    steps: int = 32,
    seed: int = 0,
    batch_size: int = BATCH_SIZE,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    queue: FairLock | None = WORK_QUEUE,
    **options,
) -> list[Faithfulness]:
    """Every method on every model for ``image`` (per model: the first method's top-1 class unless ``target``),
    scored; in model order, then method order.

    Each (model, method) is one unit of work, taken through ``queue`` (the server's one fair FIFO work queue, shared
    with measurements and sanity checks; None: no queue), so visitors who rank at the same time take turns unit by
    unit. ``should_stop()`` is checked while waiting for a turn, between units and inside each
    (:class:`CancelledError`): the work stops with the visitor. ``progress(done, total, message)`` after each unit.
    ``methods=None``: per model, the :data:`DEFAULT_METHODS` that apply to it (guided methods refuse GELU networks,
    rollout all but ViTs).
    """
    _check_steps(steps, batch_size)
    img = ensure_rgb(image)
    plans = []
    for loaded in models:
        if methods is None:
            refused = refused_methods(loaded.model)
            plans.append((loaded, [m for m in DEFAULT_METHODS if m not in refused]))
        else:
            plans.append((loaded, list(methods)))
    total = sum(len(m) for _, m in plans)
    out: list[Faithfulness] = []
    for loaded, chosen in plans:
        index = None
        for method in chosen:
            with queue.turn(should_stop, what="ranking methods") if queue is not None else contextlib.nullcontext():
                check_stop(should_stop)
                if index is None:
                    index = resolve_target(loaded, target)
                exp = explain(loaded, img, method=method, layer=layer, target=index, should_stop=should_stop, **options)
                index = exp.target.index  # every method explains the class the first one chose
                out += score_explanations(
                    loaded, img, [exp], steps=steps, seed=seed, batch_size=batch_size, should_stop=should_stop
                )
            if progress is not None:
                progress(len(out), total, f"faithfulness of {method} on {loaded.name}")
    return out
