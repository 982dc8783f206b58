"""Where is the model looking? Grad-CAM, Guided Grad-CAM, saliency, integrated gradients, occlusion.

Every method runs captum on a private view of the model (:func:`viz.layers.private_view`):
the view shares the model's parameters but has its own hooks, ``inplace`` flags and
train/eval mode, so the cached model that other sessions use is never touched —
no hook, ``.grad``, mode or flag change, even when a method fails half-way — and
two threads can explain with the same model at once::

    loaded = load_model("efficientnet_lite0")
    exp = explain(loaded, image)                           # Grad-CAM of the top-1 class
    exp = explain(loaded, image, target="daisy", method="integrated-gradients")
    exp.heatmap          # float32 (H, W) in [0, 1], the ORIGINAL image's height and width
    exp.heatmap_crop     # float32 (h, w) in [0, 1] over the model's input crop
    exp.to_dict()        # {"model", "method", "layer", "target": {...}, "shape", "peak"}

Heatmaps are normalised by their own maximum (``scale``, kept so maps can be put
on a shared colour scale, see :mod:`viz.overlay`); where the preprocessing crop
cuts the image, the part of the image the model never saw is 0.
"""

from __future__ import annotations

import difflib
import math
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from backbones.errors import BackboneError, CancelledError
from backbones.zoo.models import LoadedModel
from viz.layers import private_view, resolve_layer

# captum warns on every Guided Backprop call that it sets (and removes) ReLU hooks:
# on our private view that is expected, and the warning would reach CLI users.
warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU activations", category=UserWarning)

Progress = Callable[[int, int, str], None]
ShouldStop = Callable[[], bool]


class TargetError(BackboneError, ValueError):
    """A target class that is out of range, unknown or ambiguous."""


@dataclass(frozen=True)
class MethodInfo:
    """An attribution method as the UI lists it."""

    name: str
    title: str
    uses_layer: bool
    passes: str  # the work it costs, for a hint next to the picker
    description: str

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "title": self.title,
            "uses_layer": self.uses_layer,
            "passes": self.passes,
            "description": self.description,
        }


METHODS: dict[str, MethodInfo] = {
    m.name: m
    for m in (
        MethodInfo(
            "gradcam", "Grad-CAM", True, "1 forward + backward to the layer",
            "Layer activations weighted by the spatially averaged gradient of the class score, ReLU "
            "(captum LayerGradCam), upsampled bilinearly.",
        ),
        MethodInfo(
            "gradcam++", "Grad-CAM++", True, "1 forward + backward to the layer",
            "Grad-CAM with per-position weights from second and third powers of the gradient "
            "(Chattopadhay et al. 2018), on captum's layer gradient primitive.",
        ),
        MethodInfo(
            "guided-gradcam", "Guided Grad-CAM", True, "2 forward + backward passes",
            "Guided backpropagation (ReLU and ReLU6 pass only positive gradients) times the Grad-CAM map: "
            "fine detail inside the Grad-CAM region (captum GuidedGradCam).",
        ),
        MethodInfo(
            "saliency", "Saliency", False, "1 forward + backward to the input",
            "Largest absolute input gradient over the colour channels (captum Saliency).",
        ),
        MethodInfo(
            "integrated-gradients", "Integrated Gradients", False, "32 forward + backward passes, batched",
            "Gradients integrated along the path from a mean-colour baseline to the image "
            "(captum IntegratedGradients, Gauss-Legendre, 32 steps); absolute sum over channels.",
        ),
        MethodInfo(
            "occlusion", "Occlusion", False, "~170 forward passes, batched",
            "Drop in the class score when a window (1/7 of the input, stride 1/14) is replaced "
            "by the mean colour (captum Occlusion); positive part.",
        ),
    )
}

#: The methods that need a spatial layer.
LAYER_METHODS = frozenset(n for n, m in METHODS.items() if m.uses_layer)

_ALIASES = {
    "grad-cam": "gradcam",
    "grad_cam": "gradcam",
    "gradcampp": "gradcam++",
    "grad-cam++": "gradcam++",
    "gradcam-plus-plus": "gradcam++",
    "guided_gradcam": "guided-gradcam",
    "guidedgradcam": "guided-gradcam",
    "guided-grad-cam": "guided-gradcam",
    "ig": "integrated-gradients",
    "integrated_gradients": "integrated-gradients",
    "gradients": "saliency",
}


def list_methods() -> list[MethodInfo]:
    """Every method, in the order a picker shows them."""
    return list(METHODS.values())


def normalize_method(method: str) -> str:
    """The canonical method name; :class:`BackboneError` listing the choices when unknown."""
    key = str(method).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in METHODS:
        raise BackboneError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    return key


# ---------------------------------------------------------------------------------------------
# Targets


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
        index = int(target)
        if not 0 <= index < n:
            raise TargetError(f"class index {index} is out of range: this model has classes 0..{n - 1}")
        return index
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


# ---------------------------------------------------------------------------------------------
# Results


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


# ---------------------------------------------------------------------------------------------
# Running a method on a private view


class _Scorer(nn.Module):
    """Model view -> the target's logit, shape ``(N,)``; remembers the first pass's probabilities.

    With no index the first forward pass picks its top-1 class, so Grad-CAM and
    saliency need no separate prediction pass. Each forward checks for
    cancellation and reports progress.
    """

    def __init__(self, view: nn.Module, index: int | None, *, total: int = 1, progress=None, should_stop=None):
        super().__init__()
        self.view = view
        self.index = index
        self.probs: torch.Tensor | None = None
        self.calls = 0
        self.total = total
        self.progress = progress
        self.should_stop = should_stop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.should_stop is not None and self.should_stop():
            raise CancelledError("explanation cancelled")
        logits = _logits(self.view(x))
        if self.probs is None:
            self.probs = torch.softmax(logits[0].detach().float(), dim=0)
            if self.index is None:
                self.index = int(self.probs.argmax())
            if not 0 <= self.index < logits.shape[1]:
                raise TargetError(f"class index {self.index} is out of range: this model has classes 0..{logits.shape[1] - 1}")
        self.calls += 1
        if self.progress is not None:
            self.progress(min(self.calls, self.total), self.total, "forward pass")
        return logits[:, self.index]


def _logits(out) -> torch.Tensor:
    if isinstance(out, (tuple, list)):  # GoogLeNet/Inception outputs with aux heads
        out = out[0]
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise BackboneError(f"the model must return (N, classes) logits to be explained, got {shape}")
    return out


class _GuidedReLU6(nn.ReLU):
    """ReLU6 that captum's Guided Backprop recognises as a ReLU (it only hooks nn.ReLU)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.hardtanh(x, 0.0, 6.0)


def _guide_relu6(view: nn.Module) -> None:
    # Only the private view is changed: EfficientNet-Lite and MobileNetV2 use ReLU6.
    for module in view.modules():
        for name, child in list(module._modules.items()):
            if type(child) is nn.ReLU6:
                module._modules[name] = _GuidedReLU6()


def _device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    p = next(iter(model.parameters()), None)
    if p is None:
        return torch.device("cpu"), torch.float32
    return p.device, (p.dtype if p.is_floating_point() else torch.float32)


@dataclass
class _Run:
    raw: torch.Tensor  # the method's map before upsampling, 2-D
    crop: torch.Tensor  # non-negative, (h, w) over the input
    index: int
    probs: torch.Tensor


def _occlusion_geometry(size: int) -> tuple[int, int]:
    window = max(2, round(size / 7))
    stride = max(1, round(size / 14))
    return window, stride


def _run_method(
    view: nn.Module,
    x: torch.Tensor,
    method: str,
    layer: nn.Module | None,
    index: int | None,
    *,
    ig_steps: int,
    baseline: str,
    progress: Progress | None,
    should_stop: ShouldStop | None,
) -> _Run:
    """One method on a ``(1, 3, h, w)`` input; gradients flow only on the private view."""
    from captum.attr import (
        GuidedGradCam,
        IntegratedGradients,
        LayerAttribution,
        LayerGradCam,
        Occlusion,
        Saliency,
    )

    size = tuple(x.shape[2:])
    if method == "integrated-gradients":
        total = 1 + math.ceil(ig_steps / _IG_BATCH)
    elif method == "occlusion":
        window, stride = _occlusion_geometry(min(size))
        positions = ((size[0] - window) // stride + 1) * ((size[1] - window) // stride + 1)
        total = 2 + math.ceil(positions / _OCCLUSION_BATCH)
    else:
        total = 2 if method == "guided-gradcam" else 1
    scorer = _Scorer(view, index, total=total, progress=progress, should_stop=should_stop)
    if method in ("integrated-gradients", "occlusion"):
        # These methods evaluate perturbed inputs, so the top-1 class and the
        # probabilities must come from a pass over the image itself, first.
        with torch.no_grad():
            scorer(x)
    if method == "gradcam":
        cam = LayerGradCam(scorer, layer).attribute(x, target=None, relu_attributions=True).detach()
        raw = cam[0, 0]
        crop = LayerAttribution.interpolate(cam, size, interpolate_mode="bilinear")[0, 0]
    elif method == "gradcam++":
        cam = _gradcam_pp(scorer, layer, x)
        raw = cam[0, 0]
        crop = LayerAttribution.interpolate(cam, size, interpolate_mode="bilinear")[0, 0]
    elif method == "guided-gradcam":
        _guide_relu6(view)
        x = x.clone().requires_grad_()
        attr = GuidedGradCam(scorer, layer).attribute(x, target=None, interpolate_mode="bilinear").detach()
        raw = attr[0].abs().amax(0)
        crop = raw
    elif method == "saliency":
        x = x.clone().requires_grad_()
        attr = Saliency(scorer).attribute(x, target=None, abs=True).detach()
        raw = attr[0].amax(0)
        crop = raw
    elif method == "integrated-gradients":
        base = _baseline(x, baseline)
        attr = IntegratedGradients(scorer).attribute(
            x, baselines=base, target=None, n_steps=ig_steps, method="gausslegendre", internal_batch_size=_IG_BATCH
        ).detach()
        raw = attr[0].sum(0)
        crop = raw.abs()
    elif method == "occlusion":
        attr = Occlusion(scorer).attribute(
            x,
            sliding_window_shapes=(x.shape[1], window, window),
            strides=(x.shape[1], stride, stride),
            baselines=0.0,  # zero after normalisation: the mean colour
            target=None,
            perturbations_per_eval=_OCCLUSION_BATCH,
        ).detach()
        raw = attr[0].mean(0)
        crop = raw.clamp(min=0)
    else:  # normalize_method guards this
        raise BackboneError(f"unknown method {method!r}")
    return _Run(raw=raw.float(), crop=crop.float(), index=int(scorer.index), probs=scorer.probs)


_IG_BATCH = 8
_OCCLUSION_BATCH = 16


def _baseline(x: torch.Tensor, kind: str) -> torch.Tensor:
    # x is normalised: zeros are the dataset's mean colour.
    if kind == "mean":
        return torch.zeros_like(x)
    if kind == "blur":
        k = max(3, (min(x.shape[2:]) // 10) | 1)
        sigma = k / 3
        t = torch.arange(k, dtype=x.dtype, device=x.device) - k // 2
        g = torch.exp(-(t**2) / (2 * sigma**2))
        g = g / g.sum()
        c = x.shape[1]
        padded = F.pad(x, (k // 2,) * 4, mode="reflect")
        out = F.conv2d(padded, g.view(1, 1, 1, k).repeat(c, 1, 1, 1), groups=c)
        return F.conv2d(out, g.view(1, 1, k, 1).repeat(c, 1, 1, 1), groups=c)
    raise BackboneError(f"unknown baseline {kind!r}; choose mean or blur")


def _gradcam_pp(scorer: nn.Module, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ map ``(1, 1, h, w)`` from one forward pass and one backward pass to ``layer``."""
    from captum._utils.gradient import compute_layer_gradients_and_eval

    grads, acts = compute_layer_gradients_and_eval(scorer, layer, (x,), None)
    g, a = grads[0].detach(), acts[0].detach()
    if g.ndim != 4:
        raise BackboneError("Grad-CAM++ needs a layer with an (N, C, H, W) output")
    g2 = g.pow(2)
    denom = 2 * g2 + a.sum(dim=(2, 3), keepdim=True) * g.pow(3)
    alpha = torch.where(denom != 0, g2 / torch.where(denom != 0, denom, torch.ones_like(denom)), torch.zeros_like(g2))
    weights = (alpha * g.clamp(min=0)).sum(dim=(2, 3), keepdim=True)
    return (weights * a).sum(dim=1, keepdim=True).clamp(min=0)


# ---------------------------------------------------------------------------------------------
# Mapping the crop back onto the photo


def _interp_matrix(n_out: int, start: float, end: float, n_in: int) -> torch.Tensor:
    """``(n_out, n_in)`` weights sampling a length-``n_in`` signal at output pixel centres.

    Output pixel ``i`` (centre ``i + 0.5``) lies at input coordinate
    ``(i + 0.5 - start) / (end - start) * n_in - 0.5``; linear interpolation, edges clamped
    (``align_corners=False`` semantics, like ``F.interpolate``).
    """
    centres = (torch.arange(n_out, dtype=torch.float64) + 0.5 - start) / (end - start) * n_in - 0.5
    centres = centres.clamp(0, n_in - 1)
    lo = centres.floor().long().clamp(max=n_in - 1)
    hi = (lo + 1).clamp(max=n_in - 1)
    w_hi = centres - lo
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    rows = torch.arange(n_out)
    m[rows, lo] += 1 - w_hi
    m[rows, hi] += w_hi
    return m.float()


def map_to_image(crop_map: np.ndarray | torch.Tensor, box: Sequence[float], size: tuple[int, int]) -> np.ndarray:
    """Place a map over the crop ``box = (left, top, right, bottom)`` onto an image of ``size = (W, H)``.

    Bilinear, float32 ``(H, W)``; pixels whose centre falls outside the box are 0.
    """
    m = torch.as_tensor(np.asarray(crop_map), dtype=torch.float32)
    width, height = size
    left, top, right, bottom = box
    out = np.zeros((height, width), dtype=np.float32)
    x0, x1 = max(0, math.ceil(left - 0.5)), min(width, math.floor(right - 0.5) + 1)
    y0, y1 = max(0, math.ceil(top - 0.5)), min(height, math.floor(bottom - 0.5) + 1)
    if x1 <= x0 or y1 <= y0:
        return out
    rx = _interp_matrix(x1 - x0, left - x0, right - x0, m.shape[1])
    ry = _interp_matrix(y1 - y0, top - y0, bottom - y0, m.shape[0])
    out[y0:y1, x0:x1] = (ry @ m @ rx.T).numpy()
    return out


# ---------------------------------------------------------------------------------------------
# Public entry points


def _as_image(image) -> Image.Image:
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    from backbones.inference.images import load_image

    return load_image(image)


def _prepare(loaded: LoadedModel, method: str, layer: str | None) -> tuple[str, str | None]:
    method = normalize_method(method)
    layer_name = resolve_layer(loaded, layer) if method in LAYER_METHODS else None
    return method, layer_name


def _view_of(loaded: LoadedModel) -> nn.Module:
    # The lock only guards the moment of copying: a view is private afterwards.
    with loaded.lock:
        return private_view(loaded.model)


def _target_of(loaded: LoadedModel, run: _Run) -> Target:
    probs = run.probs
    top = probs.topk(min(5, probs.numel())).indices.tolist()
    rank = top.index(run.index) + 1 if run.index in top else None
    return Target(index=run.index, label=loaded.label(run.index), prob=float(probs[run.index]), rank=rank)


def _finish(loaded, method, layer_name, run: _Run, box, size) -> Explanation:
    crop = run.crop.detach().cpu()
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
        target=_target_of(loaded, run),
        heatmap=heatmap,
        heatmap_crop=heat_crop,
        raw=run.raw.detach().cpu().numpy().astype(np.float32),
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
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
) -> Explanation:
    """Explain an already preprocessed input, shape ``(1, 3, h, w)`` or ``(3, h, w)``.

    The heatmap is over the input itself (``heatmap == heatmap_crop``).
    """
    method, layer_name = _prepare(loaded, method, layer)
    index = resolve_target(loaded, target)
    x = inputs if inputs.ndim == 4 else inputs.unsqueeze(0)
    if x.ndim != 4 or x.shape[0] != 1:
        raise BackboneError(f"inputs must have shape (1, 3, h, w), got {tuple(inputs.shape)}")
    run = _run(loaded, x, method, layer_name, index, ig_steps=ig_steps, baseline=baseline, progress=progress, should_stop=should_stop)
    h, w = x.shape[2:]
    return _finish(loaded, method, layer_name, run, (0.0, 0.0, float(w), float(h)), None)


def _run(loaded, x, method, layer_name, index, **kw) -> _Run:
    ig_steps = kw.get("ig_steps", 32)
    if not 1 <= int(ig_steps) <= 1024:
        raise BackboneError(f"ig_steps must be in 1..1024, got {ig_steps}")
    view = _view_of(loaded)
    device, dtype = _device_dtype(view)
    layer_module = view.get_submodule(layer_name) if layer_name else None
    with torch.inference_mode(False), torch.enable_grad():
        # A copy made outside inference mode: a caller's inference tensor cannot enter autograd.
        x = x.detach().to(device=device, dtype=dtype).clone()
        return _run_method(view, x, method, layer_module, index, **kw)


def explain(
    loaded: LoadedModel,
    image,
    *,
    method: str = "gradcam",
    layer: str | None = None,
    target: int | str | None = None,
    ig_steps: int = 32,
    baseline: str = "mean",
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
) -> Explanation:
    """Explain one image with one model and one method.

    ``image`` is an RGB PIL image (or a path / bytes, decoded with
    :func:`backbones.inference.images.load_image`). ``method`` is one of :data:`METHODS`
    (``gradcam`` by default); ``layer`` a dotted module name for the Grad-CAM
    family (default: :func:`viz.layers.default_layer`), ignored by the others;
    ``target`` a class index, a label, or ``None`` for the top-1 class.
    ``ig_steps`` and ``baseline`` (``"mean"``: the mean colour, or ``"blur"``: a blurred copy) tune
    integrated gradients. ``progress(done, total, message)`` is called after each
    forward pass; ``should_stop()`` returning true raises
    :class:`~backbones.errors.CancelledError`.

    Raises :class:`~backbones.errors.LayerError` for a bad layer,
    :class:`TargetError` for a bad target, :class:`~backbones.errors.BackboneError`
    for an unknown method.
    """
    img = _as_image(image)
    method, layer_name = _prepare(loaded, method, layer)
    index = resolve_target(loaded, target)
    x = loaded.preprocessing(img).unsqueeze(0)
    run = _run(loaded, x, method, layer_name, index, ig_steps=ig_steps, baseline=baseline, progress=progress, should_stop=should_stop)
    box = loaded.preprocessing.crop_box(img.width, img.height)
    return _finish(loaded, method, layer_name, run, box, (img.width, img.height))


def explain_topk(
    loaded: LoadedModel,
    image,
    *,
    method: str = "gradcam",
    layer: str | None = None,
    k: int = 5,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
    **options,
) -> list[Explanation]:
    """One explanation for each of the model's top-``k`` classes, best first.

    Grad-CAM shares one forward pass between the ``k`` classes (one backward pass
    to the layer each); other methods run once per class.
    """
    if not 1 <= int(k) <= loaded.num_classes:
        raise TargetError(f"k must be in 1..{loaded.num_classes}, got {k}")
    img = _as_image(image)
    method, layer_name = _prepare(loaded, method, layer)
    x = loaded.preprocessing(img).unsqueeze(0)
    box = loaded.preprocessing.crop_box(img.width, img.height)
    size = (img.width, img.height)
    if method == "gradcam":
        runs = _gradcam_many(loaded, x, layer_name, k, progress=progress, should_stop=should_stop)
        return [_finish(loaded, method, layer_name, run, box, size) for run in runs]
    view = _view_of(loaded)
    device, dtype = _device_dtype(view)
    with torch.inference_mode():
        probs = torch.softmax(_logits(view(x.to(device=device, dtype=dtype)))[0].float(), dim=0)
    indices = probs.topk(int(k)).indices.tolist()
    out = []
    for i, index in enumerate(indices):
        if should_stop is not None and should_stop():
            raise CancelledError("explanation cancelled")
        run = _run(loaded, x, method, layer_name, index, ig_steps=options.get("ig_steps", 32), baseline=options.get("baseline", "mean"), progress=None, should_stop=should_stop)
        out.append(_finish(loaded, method, layer_name, run, box, size))
        if progress is not None:
            progress(i + 1, len(indices), f"{method} for {loaded.label(index)}")
    return out


def _gradcam_many(loaded, x, layer_name, k, *, progress=None, should_stop=None) -> list[_Run]:
    """Grad-CAM for the top-``k`` classes from one forward pass (captum's LayerGradCam arithmetic)."""
    from captum._utils.gradient import _forward_layer_distributed_eval
    from captum.attr import LayerAttribution

    view = _view_of(loaded)
    device, dtype = _device_dtype(view)
    layer = view.get_submodule(layer_name)
    size = tuple(x.shape[2:])
    runs = []
    with torch.inference_mode(False), torch.enable_grad():
        x = x.detach().to(device=device, dtype=dtype).clone()
        saved, logits = _forward_layer_distributed_eval(
            lambda t: _logits(view(t)), (x,), layer, forward_hook_with_return=True, require_layer_grads=True
        )
        acts = next(iter(saved[layer].values()))[0]
        probs = torch.softmax(logits[0].detach().float(), dim=0)
        indices = probs.topk(int(k)).indices.tolist()
        for i, index in enumerate(indices):
            if should_stop is not None and should_stop():
                raise CancelledError("explanation cancelled")
            (grad,) = torch.autograd.grad(logits[0, index], acts, retain_graph=i + 1 < len(indices))
            weights = grad.mean(dim=tuple(range(2, grad.ndim)), keepdim=True)
            cam = F.relu((weights * acts.detach()).sum(dim=1, keepdim=True))
            crop = LayerAttribution.interpolate(cam, size, interpolate_mode="bilinear")[0, 0]
            runs.append(_Run(raw=cam[0, 0].float(), crop=crop.float(), index=index, probs=probs))
            if progress is not None:
                progress(i + 1, len(indices), f"gradcam for {loaded.label(index)}")
    return runs


def explain_models(
    models: Sequence[LoadedModel],
    image,
    *,
    method: str = "gradcam",
    target: int | str | None = None,
    layers: dict[str, str] | None = None,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
    **options,
) -> list[Explanation]:
    """The same method on several models (``layers`` maps a model's name to its layer).

    With a label as ``target`` every model explains that class (models whose
    class list lacks it raise :class:`TargetError`); with ``None`` each its own top-1.
    """
    out = []
    for i, loaded in enumerate(models):
        if should_stop is not None and should_stop():
            raise CancelledError("explanation cancelled")
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
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
    **options,
) -> list[Explanation]:
    """Several methods on one model, for the same class (top-1 unless ``target`` says otherwise)."""
    img = _as_image(image)
    index = resolve_target(loaded, target)
    out = []
    for i, method in enumerate(methods):
        if should_stop is not None and should_stop():
            raise CancelledError("explanation cancelled")
        exp = explain(loaded, img, method=method, layer=layer, target=index, should_stop=should_stop, **options)
        index = exp.target.index  # every method explains the class the first one chose
        out.append(exp)
        if progress is not None:
            progress(i + 1, len(methods), f"{method} done")
    return out
