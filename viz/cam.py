"""Where is the model looking? The entry points: explain one image, its top-k classes, several models or methods.

Every method (:mod:`viz.methods`) runs on a private view of the model
(:func:`viz.layers.private_view`): the view shares the model's parameters but has
its own hooks, ``inplace`` flags and train/eval mode, so the cached model that
other sessions use is never touched — no hook, ``.grad``, mode or flag change,
even when a method fails half-way — and two threads can explain with the same
model at once::

    loaded = load_model("efficientnet_lite0")
    exp = explain(loaded, image)                           # Grad-CAM of the top-1 class
    exp = explain(loaded, image, target="daisy", method="integrated-gradients")
    exp.heatmap          # float32 (H, W) in [0, 1], the ORIGINAL image's height and width
    exp.heatmap_crop     # float32 (h, w) in [0, 1] over the model's input crop
    exp.to_dict()        # {"model", "method", "layer", "target": {...}, "shape", "peak"}

Heatmaps are normalised by their own maximum (``scale``, kept so maps can be put
on a shared colour scale, see :mod:`viz.overlay`); where the preprocessing crop
cuts the image, the part of the image the model never saw is 0
(:func:`viz.geometry.map_to_image`). Targets are resolved by :mod:`viz.targets`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from backbones.callbacks import ProgressFn, StopFn
from backbones.errors import BackboneError
from backbones.zoo.models import LoadedModel
from viz.geometry import Box, map_to_image, whole_input_box
from viz.inputs import ensure_rgb, make_private_view
from viz.layers import find_layer, resolve_layer
from viz.methods.base import Attribution, Method, MethodInfo, check_stop
from viz.methods.registry import LAYER_METHODS, METHOD_CLASSES, METHODS, list_methods, normalize_method
from viz.targets import Target, TargetError, check_topk, describe_target, resolve_target

# Names that users' scripts import from viz.cam, wherever they are defined now.
__all__ = [
    "LAYER_METHODS",
    "METHODS",
    "Explanation",
    "MethodInfo",
    "ProgressFn",
    "StopFn",
    "Target",
    "TargetError",
    "explain",
    "explain_methods",
    "explain_models",
    "explain_tensor",
    "explain_topk",
    "list_methods",
    "map_to_image",
    "normalize_method",
    "resolve_target",
]


@dataclass(frozen=True, eq=False)
class Explanation:
    """One heatmap: which model looked where for which class.

    ``heatmap`` is float32 ``(H, W)`` in [0, 1] over the original image (0 outside
    the preprocessing crop); ``heatmap_crop`` float32 ``(h, w)`` in [0, 1] over
    the model's input; ``raw`` the method's map before upsampling and
    normalisation (Grad-CAM: ``(h', w')`` at the layer's resolution, in the
    class score's units); ``scale`` the raw value that maps to 1.0 (0 when the
    map is empty), so maps can share a colour scale.
    """

    model: str
    method: str
    layer: str | None
    target: Target
    heatmap: np.ndarray = field(repr=False)
    heatmap_crop: np.ndarray = field(repr=False)
    raw: np.ndarray = field(repr=False)
    scale: float
    crop_box: tuple[float, float, float, float]  # (left, top, right, bottom) in original pixels

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.heatmap.shape[0]), int(self.heatmap.shape[1]))

    @property
    def peak(self) -> tuple[int, int] | None:
        """``(row, col)`` of the hottest pixel of ``heatmap``; ``None`` for an empty map."""
        if not self.scale > 0:
            return None
        row, col = np.unravel_index(int(np.argmax(self.heatmap)), self.heatmap.shape)
        return (int(row), int(col))

    @property
    def title(self) -> str:
        where = f" @ {self.layer}" if self.layer else ""
        return f"{self.model} · {METHODS[self.method].title}{where} · {self.target.label} {self.target.prob:.0%}"

    def to_dict(self) -> dict:
        peak = self.peak
        return {
            "model": self.model,
            "method": self.method,
            "layer": self.layer,
            "target": self.target.to_dict(),
            "shape": list(self.shape),
            "peak": None if peak is None else list(peak),
        }


def _prepare(loaded: LoadedModel, method: str, layer: str | None) -> tuple[str, str | None]:
    method = normalize_method(method)
    layer_name = resolve_layer(loaded, layer) if method in LAYER_METHODS else None
    return method, layer_name


def _build_method(
    loaded: LoadedModel,
    method: str,
    layer_name: str | None,
    *,
    ig_steps: int = 32,
    baseline: str = "mean",
    head_fusion: str = "mean",
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> Method:
    """``method`` (canonical name) on a fresh private view of ``loaded``, at ``layer_name`` for the Grad-CAM family.

    The layer's activation layout (a ViT's token grid, a Swin stage's channels-last map) travels with it.
    """
    if not 1 <= int(ig_steps) <= 1024:
        raise BackboneError(f"ig_steps must be in 1..1024, got {ig_steps}")
    view = make_private_view(loaded)
    layer = view.get_submodule(layer_name) if layer_name else None
    layout = find_layer(loaded, layer_name).layout if layer_name else None
    cls = METHOD_CLASSES[method]
    offered = {"n_steps": ig_steps, "baseline": baseline, "head_fusion": head_fusion}
    return cls(view, layer, layout=layout, progress=progress, should_stop=should_stop, **{k: offered[k] for k in cls.options})


def _finish(loaded: LoadedModel, method: str, layer_name: str | None, att: Attribution, box: Box, size) -> Explanation:
    """An :class:`Explanation` from the first image of ``att``; ``size = (W, H)`` of the photo, or ``None``."""
    crop = att.heat[0].detach().cpu()
    scale = float(crop.max()) if crop.numel() else 0.0
    if not math.isfinite(scale) or scale <= 0:
        scale = 0.0
        norm = torch.zeros_like(crop)
    else:
        norm = (crop / scale).clamp(0, 1)
    heat_crop = norm.numpy().astype(np.float32)
    heatmap = heat_crop if size is None else np.clip(map_to_image(heat_crop, box, size), 0, 1)
    return Explanation(
        model=loaded.name,
        method=method,
        layer=layer_name,
        target=describe_target(loaded, att.index, att.probs),
        heatmap=heatmap,
        heatmap_crop=heat_crop,
        raw=att.raw[0].detach().cpu().numpy().astype(np.float32),
        scale=scale,
        crop_box=tuple(float(v) for v in box),
    )


def explain_tensor(
    loaded: LoadedModel,
    inputs: torch.Tensor,
    *,
    method: str = "gradcam",
    layer: str | None = None,
    target: int | str | None = None,
    ig_steps: int = 32,
    baseline: str = "mean",
    head_fusion: str = "mean",
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> Explanation:
    """Explain an already preprocessed input, shape ``(1, 3, h, w)`` or ``(3, h, w)``.

    The heatmap is over the input itself (``heatmap == heatmap_crop``).
    """
    method, layer_name = _prepare(loaded, method, layer)
    index = resolve_target(loaded, target)
    x = inputs if inputs.ndim == 4 else inputs.unsqueeze(0)
    if x.ndim != 4 or x.shape[0] != 1:
        raise BackboneError(f"inputs must have shape (1, 3, h, w), got {tuple(inputs.shape)}")
    m = _build_method(loaded, method, layer_name, ig_steps=ig_steps, baseline=baseline, head_fusion=head_fusion,
                      progress=progress, should_stop=should_stop)
    att = m.attribute(x, target=index)
    return _finish(loaded, method, layer_name, att, whole_input_box(*x.shape[2:]), None)


def explain(
    loaded: LoadedModel,
    image,
    *,
    method: str = "gradcam",
    layer: str | None = None,
    target: int | str | None = None,
    ig_steps: int = 32,
    baseline: str = "mean",
    head_fusion: str = "mean",
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> Explanation:
    """Explain one image with one model and one method.

    ``image`` is an RGB PIL image (or a path / bytes, decoded with
    :func:`backbones.inference.images.load_image`). ``method`` is one of :data:`METHODS`
    (``gradcam`` by default); ``layer`` a dotted module name for the Grad-CAM
    family (default: :func:`viz.layers.default_layer`), ignored by the others;
    ``target`` a class index, a label, or ``None`` for the top-1 class.
    ``ig_steps`` and ``baseline`` (``"mean"``: the mean colour, or ``"blur"``: a blurred copy) tune
    integrated gradients; ``head_fusion`` (``"mean"`` or ``"max"``) how attention rollout fuses a ViT's
    heads. ``progress(done, total, message)`` is called after each
    forward pass; ``should_stop()`` returning true raises
    :class:`~backbones.errors.CancelledError`.

    Raises :class:`~backbones.errors.LayerError` for a bad layer,
    :class:`TargetError` for a bad target, :class:`~backbones.errors.BackboneError`
    for an unknown method.
    """
    img = ensure_rgb(image)
    method, layer_name = _prepare(loaded, method, layer)
    index = resolve_target(loaded, target)
    x = loaded.preprocessing(img).unsqueeze(0)
    m = _build_method(loaded, method, layer_name, ig_steps=ig_steps, baseline=baseline, head_fusion=head_fusion,
                      progress=progress, should_stop=should_stop)
    att = m.attribute(x, target=index)
    box = loaded.preprocessing.crop_box(img.width, img.height)
    return _finish(loaded, method, layer_name, att, box, (img.width, img.height))


def explain_topk(
    loaded: LoadedModel,
    image,
    *,
    method: str = "gradcam",
    layer: str | None = None,
    k: int = 5,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    **options,
) -> list[Explanation]:
    """One explanation for each of the model's top-``k`` classes, best first.

    The Grad-CAM family (bar Guided Grad-CAM) shares one forward pass between the
    ``k`` classes (one backward pass to the layer each); other methods run once
    per class. ``progress`` is called once per class.
    """
    k = check_topk(loaded, k)
    img = ensure_rgb(image)
    method, layer_name = _prepare(loaded, method, layer)
    x = loaded.preprocessing(img).unsqueeze(0)
    box = loaded.preprocessing.crop_box(img.width, img.height)
    size = (img.width, img.height)
    m = _build_method(
        loaded, method, layer_name,
        ig_steps=options.get("ig_steps", 32), baseline=options.get("baseline", "mean"),
        head_fusion=options.get("head_fusion", "mean"), should_stop=should_stop,
    )

    def each(i: int, att: Attribution) -> None:
        if progress is not None:
            progress(i + 1, k, f"{method} for {loaded.label(att.index)}")

    return [_finish(loaded, method, layer_name, att, box, size) for att in m.attribute_topk(x, k, each=each)]


def explain_models(
    models: Sequence[LoadedModel],
    image,
    *,
    method: str = "gradcam",
    target: int | str | None = None,
    layers: dict[str, str] | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    **options,
) -> list[Explanation]:
    """The same method on several models (``layers`` maps a model's name to its layer).

    With a label as ``target`` every model explains that class (models whose
    class list lacks it raise :class:`TargetError`); with ``None`` each its own top-1.
    """
    out = []
    for i, loaded in enumerate(models):
        check_stop(should_stop)
        layer = (layers or {}).get(loaded.name)
        out.append(explain(loaded, image, method=method, layer=layer, target=target, should_stop=should_stop, **options))
        if progress is not None:
            progress(i + 1, len(models), f"{method} with {loaded.name}")
    return out


def explain_methods(
    loaded: LoadedModel,
    image,
    *,
    methods: Sequence[str] = ("gradcam", "guided-gradcam", "saliency", "integrated-gradients", "occlusion"),
    layer: str | None = None,
    target: int | str | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    **options,
) -> list[Explanation]:
    """Several methods on one model, for the same class (top-1 unless ``target`` says otherwise)."""
    img = ensure_rgb(image)
    index = resolve_target(loaded, target)
    out = []
    for i, method in enumerate(methods):
        check_stop(should_stop)
        exp = explain(loaded, img, method=method, layer=layer, target=index, should_stop=should_stop, **options)
        index = exp.target.index  # every method explains the class the first one chose
        out.append(exp)
        if progress is not None:
            progress(i + 1, len(methods), f"{method} done")
    return out
