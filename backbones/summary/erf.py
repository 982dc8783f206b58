"""The effective receptive field (Luo et al., NeurIPS 2016): which input pixels a layer's centre unit really responds to.

The theoretical receptive field (``F(i) = (F(i+1) - 1) x stride + ksize``, the
summary's ``receptive_field``) bounds what a unit *can* see; Luo et al. show that
what it does see is roughly Gaussian and covers a fraction of that. Measured as
they do: the gradient of the centre unit of a layer's output, summed over
channels, with respect to the input, its absolute value summed over colour
channels and averaged over ``N`` inputs (the bundled sample photos, see
:mod:`backbones.samples`, mirrored for more than three; Gaussian noise when there
are none). The map is reported with two sizes around its centre of mass: the
side of the smallest centred square holding ``share`` (95%) of the gradient mass,
and the radius of the smallest centred disc that does.

It applies to CNNs and transformers alike: a ViT's token layers and a Swin
stage's channels-last maps are laid out on their grid first
(:mod:`backbones.layouts`), and the centre unit is the centre token; its channels
are combined with seeded random signs instead of summed, because the channel sum
of a LayerNorm's output does not depend on the input. It works
untrained (random weights, Luo's case) and trained; the result says which::

    erf = measure_erf("resnet18", images=4)        # untrained unless weights are given
    erf.find("layer4").side, erf.find("layer4").radius, erf.find("layer4").map.shape   # px, px, (224, 224)
    erf.to_dict()

Cost: one forward pass of ``N`` images that keeps every measured layer's output,
then one backward pass per layer (``N`` images at once: ``layers x N`` per-image
passes, bounded by ``max_passes``); a container that only passes on its last
block's output is measured once. The model is never changed: hooks live only
for the forward pass (taken under the lock of a shared
:class:`~backbones.zoo.models.LoadedModel`) and pass a copy on, so in-place
operations further on cannot change what was kept; all of it on a private view
(:func:`backbones.private_view.private_view`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from backbones.callbacks import ProgressFn, StopFn
from backbones.errors import BackboneError, CancelledError, LayerError, WeightsUnavailableError
from backbones.layouts import ActivationLayout, detect_layout, first_tensor, patch_size_of
from backbones.private_view import private_view

#: Share of the gradient mass the reported square and disc hold.
SHARE = 0.95

#: Default number of inputs averaged.
DEFAULT_IMAGES = 4

#: Most inputs one measurement averages.
MAX_IMAGES = 64

#: Default bound on layers x images (per-image backward passes) of one measurement.
MAX_PASSES = 512

#: Inputs are kept in memory with every measured layer's graph: the largest side accepted.
MAX_SIDE = 1024


@dataclass(frozen=True, eq=False)
class LayerERF:
    """The effective receptive field of one layer's centre unit.

    ``grid`` is the layer's map ``(h, w)`` and ``unit`` the centre position measured;
    ``side`` (px) the smallest square centred on the map's centre of mass ``centre``
    (row, column in input pixels) holding ``share`` of the gradient mass, ``radius``
    (px) the smallest such disc; ``whole_input`` is true when even the whole input does
    not hold that share inside the square (the side is then the input's longer side). ``channels``
    says how the centre unit's channels were combined: ``"sum"`` (Luo et al.; CNN maps) or
    ``"random signs"`` (token and channels-last layers, see :func:`_channel_weights`).
    ``map`` is float32 ``(H, W)`` over the input, summing to 1.
    """

    name: str
    layout: str
    grid: tuple[int, int]
    unit: tuple[int, int]
    side: int
    radius: float
    centre: tuple[float, float]
    share: float
    whole_input: bool
    map: np.ndarray = field(repr=False)
    channels: str = "sum"

    def to_dict(self, *, with_map: bool = False) -> dict:
        out = {
            "side_px": self.side,
            "radius_px": round(self.radius, 2),
            "share": self.share,
            "centre": [round(v, 2) for v in self.centre],
            "grid": list(self.grid),
            "unit": list(self.unit),
            "layout": self.layout,
            "channels": self.channels,
            "whole_input": self.whole_input,
        }
        if with_map:
            out["map"] = self.map.tolist()
        return out


@dataclass(frozen=True, eq=False)
class EffectiveReceptiveFields:
    """Effective receptive fields of several layers of one model, measured together.

    ``trained`` says whether the weights were trained (``weights``: their name, or
    ``"none"`` for random initialisation); ``inputs`` is ``"photos"`` or ``"noise"``;
    ``passes`` counts per-image backward passes, ``seconds`` the wall time.
    """

    model: str
    input_size: tuple[int, int, int]
    weights: str
    trained: bool
    inputs: str
    images: int
    share: float
    layers: tuple[LayerERF, ...]
    passes: int
    seconds: float
    notes: tuple[str, ...] = ()

    def find(self, name: str) -> LayerERF:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise LayerError(f"no effective receptive field measured for {name!r}")

    def get(self, name: str) -> LayerERF | None:
        return next((layer for layer in self.layers if layer.name == name), None)

    def to_dict(self, *, with_maps: bool = False) -> dict:
        return {
            "model": self.model,
            "input_size": list(self.input_size),
            "weights": self.weights,
            "trained": self.trained,
            "inputs": self.inputs,
            "images": self.images,
            "share": self.share,
            "passes": self.passes,
            "seconds": round(self.seconds, 3),
            "notes": list(self.notes),
            "layers": {layer.name: layer.to_dict(with_map=with_maps) for layer in self.layers},
        }


def measure_square(grad_map: torch.Tensor, *, share: float = SHARE) -> tuple[int, float, tuple[float, float], bool]:
    """``(side, radius, centre, whole_input)`` of a non-negative ``(H, W)`` map (see :class:`LayerERF`).

    The square of side ``s`` covers rows ``a .. a + s - 1`` with ``a = round(cy - (s - 1) / 2)``
    (``cy`` the centre of mass), so a kernel-sized patch centred on a pixel is found exactly.
    """
    m = grad_map.double()
    total = float(m.sum())
    height, width = m.shape
    if not total > 0:
        raise BackboneError("the centre unit's gradient is zero everywhere: no effective receptive field to measure")
    rows = torch.arange(height, dtype=torch.float64)
    cols = torch.arange(width, dtype=torch.float64)
    cy = float((m.sum(1) * rows).sum() / total)
    cx = float((m.sum(0) * cols).sum() / total)
    # An integral image: the mass of any rectangle in four look-ups.
    integral = torch.zeros(height + 1, width + 1, dtype=torch.float64)
    integral[1:, 1:] = m.cumsum(0).cumsum(1)
    target = share * total
    side, whole = max(height, width), True
    for s in range(1, max(height, width) + 1):
        r0 = min(max(0, round(cy - (s - 1) / 2)), max(0, height - s))
        c0 = min(max(0, round(cx - (s - 1) / 2)), max(0, width - s))
        r1, c1 = min(height, r0 + s), min(width, c0 + s)
        mass = float(integral[r1, c1] - integral[r0, c1] - integral[r1, c0] + integral[r0, c0])
        if mass >= target * (1 - 1e-9):
            side, whole = s, False
            break
    dist = torch.sqrt((rows[:, None] - cy) ** 2 + (cols[None, :] - cx) ** 2).flatten()
    order = torch.argsort(dist)
    cumulative = m.flatten()[order].cumsum(0)
    k = int(torch.searchsorted(cumulative, torch.tensor(target * (1 - 1e-9), dtype=torch.float64)))
    radius = float(dist[order[min(k, order.numel() - 1)]]) + 0.5  # to the far edge of the last pixel taken
    return side, radius, (cy, cx), whole


def make_inputs(preprocessing, input_size: tuple[int, int, int], images: int, *, seed: int = 0) -> tuple[torch.Tensor, str]:
    """``(inputs (N, C, H, W), "photos" | "noise")``: the sample photos through ``preprocessing`` (mirrored copies
    after the first round), resized to ``input_size`` if it differs; Gaussian noise without photos or preprocessing."""
    from backbones.samples import sample_photos

    c, h, w = input_size
    photos = list(sample_photos().values()) if preprocessing is not None and c == 3 else []
    if not photos:
        g = torch.Generator().manual_seed(int(seed))
        return torch.randn((images, c, h, w), generator=g), "noise"
    from PIL import Image, ImageOps

    tensors = []
    for i in range(images):
        with Image.open(photos[i % len(photos)]) as opened:
            img = opened.convert("RGB")
        if (i // len(photos)) % 2:
            img = ImageOps.mirror(img)
        t = preprocessing(img)
        if tuple(t.shape[1:]) != (h, w):
            t = torch.nn.functional.interpolate(t[None], size=(h, w), mode="bilinear", align_corners=False)[0]
        tensors.append(t)
    return torch.stack(tensors), "photos"




def _keep_outputs(
    model: nn.Module, names: Sequence[str], x: torch.Tensor
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """One forward pass of ``x`` keeping each named module's first output; every hook is removed before returning.

    Also ``{name: earlier name}`` for a module that only passes on what another one produced (a
    ``Sequential`` returning its last block's output): it is measured once.
    """
    kept: dict[str, torch.Tensor] = {}
    passed_on: dict[int, tuple[torch.Tensor, str]] = {}  # the copy itself stays referenced: ids are not reused
    aliases: dict[str, str] = {}
    handles = []

    def make_hook(name):
        def hook(_module, _inputs, output):
            first = first_tensor(output)
            if first is None or name in kept:
                return None
            if id(first) in passed_on and passed_on[id(first)][0] is first:
                aliases[name] = passed_on[id(first)][1]
            kept[name] = first
            # A copy travels on: an in-place op further on (ResNet's `out += identity`) must not change what we keep.
            copy = first.clone()
            passed_on[id(copy)] = (copy, aliases.get(name, name))
            if isinstance(output, (tuple, list)):
                return type(output)([copy, *output[1:]])
            return copy

        return hook

    try:
        for name in names:
            handles.append(model.get_submodule(name).register_forward_hook(make_hook(name)))
        model(x)
    finally:
        for handle in handles:
            handle.remove()
    return kept, aliases


def _resolve(model, weights: str | None):
    """``(nn.Module, name, preprocessing, weights, trained, notes, lock)`` for what :func:`measure_erf` takes."""
    import contextlib

    from backbones.zoo.models import LoadedModel, build_architecture, load_model

    notes: list[str] = []
    if isinstance(model, str):
        from backbones.zoo.catalog import get_entry

        entry = get_entry(model)
        if weights in (None, "none"):
            return build_architecture(entry), entry.name, entry.preprocessing, "none", False, notes, contextlib.nullcontext()
        try:
            loaded = load_model(entry.name, weights=weights, download=weights != "default")
        except WeightsUnavailableError:
            if weights != "default":
                raise
            notes.append("trained weights are not here: measured with random weights (untrained, Luo et al.'s case)")
            return build_architecture(entry), entry.name, entry.preprocessing, "none", False, notes, contextlib.nullcontext()
        model = loaded
    if isinstance(model, LoadedModel):
        return model.model, model.name, model.preprocessing, model.weights, model.trained, notes, model.lock
    if isinstance(model, nn.Module):
        return model, type(model).__name__, None, "as given", True, notes, contextlib.nullcontext()
    raise BackboneError(f"cannot measure a {type(model).__name__}: give a model name, a LoadedModel or an nn.Module")


def grid_layers(model: nn.Module, input_size: tuple[int, int, int]) -> list[tuple[str, int]]:
    """``(name, depth)`` of every module whose output lies on a grid of more than one position, in forward order.

    One forward pass of a zero image on the meta device where the model can go there, else on its own device.
    """
    hw = (input_size[1], input_size[2])
    patch = patch_size_of(model)
    found: dict[str, int] = {}
    names = {id(m): n for n, m in model.named_modules() if n}
    handles = []

    def hook(module, _inputs, output):
        name = names.get(id(module))
        first = first_tensor(output)
        if name is None or first is None or name in found:
            return
        layout = detect_layout(tuple(first.shape[1:]), hw, patch_size=patch)
        if layout is not None and layout.positions > 1:
            found[name] = len(found)

    for m in model.modules():
        if id(m) in names:
            handles.append(m.register_forward_hook(hook))
    try:
        p = next(model.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
        dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32
        with torch.no_grad():
            model(torch.zeros((1, *input_size), device=device, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
    return [(name, name.count(".") + 1) for name in sorted(found, key=found.get)]


def default_erf_layers(model: nn.Module, input_size: tuple[int, int, int]) -> list[str]:
    """The grid layers at the shallowest depth that has at least six of them (at most depth 4).

    ResNet: ``conv1 .. layer4``; VGG and MobileNet: ``features.0 ..``; ViT: the encoder blocks;
    Swin: ``features.0 .. features.7``.
    """
    layers = grid_layers(model, input_size)
    for depth in range(1, 5):
        chosen = [n for n, d in layers if d <= depth]
        if len(chosen) >= 6:
            return chosen
    return [n for n, d in layers if d <= 4]


def measure_erf(
    model,
    *,
    layers: Sequence[str] | None = None,
    max_depth: int | None = None,
    images: int = DEFAULT_IMAGES,
    input_size: Sequence[int] | None = None,
    weights: str | None = "none",
    share: float = SHARE,
    max_passes: int = MAX_PASSES,
    seed: int = 0,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> EffectiveReceptiveFields:
    """Effective receptive fields of ``layers`` of ``model`` (see the module docstring).

    ``model`` is a catalog name (built on the CPU with ``weights``: ``"none"`` for random
    initialisation, ``"default"`` for the trained default when its file is here, else
    random with a note saying so, or a weights name), a
    :class:`~backbones.zoo.models.LoadedModel` (its weights; measured under its lock) or
    an ``nn.Module`` (as it is). ``layers`` are dotted names of modules whose output lies
    on a grid (default: every such layer with at most ``max_depth`` dotted parts, or
    :func:`default_erf_layers` without one); ``images`` inputs are averaged.
    ``progress(done, total, layer)`` after each layer; ``should_stop()`` true raises
    :class:`~backbones.errors.CancelledError`. Raises :class:`BackboneError` when
    ``layers x images`` exceeds ``max_passes``.
    """
    started = time.perf_counter()
    if not 1 <= int(images) <= MAX_IMAGES:
        raise BackboneError(f"images must be in 1..{MAX_IMAGES}, got {images}")
    if not 0 < float(share) < 1:
        raise BackboneError(f"share must be between 0 and 1, got {share}")
    images = int(images)
    net, name, preprocessing, weights_name, trained, notes, lock = _resolve(model, weights)
    if input_size is None:
        input_size = tuple(preprocessing.input_size) if preprocessing is not None else (3, 224, 224)
    c, h, w = (int(v) for v in input_size)
    if min(c, h, w) < 1 or max(h, w) > MAX_SIDE:
        raise BackboneError(f"input size {c}x{h}x{w} out of range (H and W 1..{MAX_SIDE})")
    size = (c, h, w)
    with lock:
        # Hooks, eval mode and in-place flags off on a view: a shared model never sees them.
        net = private_view(net)
        if layers is not None:
            names = list(layers)
        elif max_depth is not None:
            names = [n for n, d in grid_layers(net, size) if d <= int(max_depth)]
        else:
            names = default_erf_layers(net, size)
        if not names:
            raise BackboneError(f"{name} has no layer whose output lies on a grid over a {h}x{w} input")
        if len(names) * images > int(max_passes):
            raise BackboneError(
                f"{len(names)} layers x {images} images = {len(names) * images} backward passes, over the limit of "
                f"{max_passes}; measure fewer layers (--depth) or fewer --images"
            )
        for n in names:
            try:
                net.get_submodule(n)
            except AttributeError as exc:
                raise LayerError(f"{name} has no layer {n!r}") from exc
        inputs, kind = make_inputs(preprocessing, size, images, seed=seed)
        p = next(net.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
        dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32
        patch = patch_size_of(net)
        with torch.inference_mode(False), torch.enable_grad():
            x = inputs.to(device=device, dtype=dtype).requires_grad_()
            kept, aliases = _keep_outputs(net, names, x)
    results: dict[str, LayerERF] = {}
    backward = 0
    with torch.inference_mode(False), torch.enable_grad():
        for i, n in enumerate(names):
            if should_stop is not None and should_stop():
                raise CancelledError("effective receptive field cancelled")
            out = kept.get(n)
            if out is None:
                raise LayerError(f"layer {n!r} of {name} did not run in the forward pass (eval mode)")
            if aliases.get(n) in results:
                results[n] = dataclasses.replace(results[aliases[n]], name=n)
            else:
                layout = detect_layout(tuple(out.shape[1:]), (h, w), patch_size=patch)
                if layout is None or layout.positions < 1:
                    raise LayerError(f"layer {n!r} has a {tuple(out.shape[1:])} output, which does not lie on a grid")
                results[n] = _measure_layer(n, layout, out, x, share, seed=seed + i)
                backward += 1
            if progress is not None:
                progress(i + 1, len(names), n)
    del kept, x
    return EffectiveReceptiveFields(
        model=name, input_size=size, weights=weights_name, trained=bool(trained), inputs=kind, images=images,
        share=float(share), layers=tuple(results[n] for n in names), passes=backward * images,
        seconds=time.perf_counter() - started, notes=tuple(notes),
    )


def _channel_weights(layout: ActivationLayout, channels: int, seed: int, like: torch.Tensor) -> torch.Tensor | None:
    """``None`` (sum over channels, Luo et al.) for a CNN map; seeded random signs for transformer layers.

    A LayerNorm's output sums to its bias over the channels whatever the input (at initialisation exactly
    zero), so the channel sum of a token or channels-last layer right after one has no gradient, and a
    residual stream read right after one cancels its identity path; a random +-1 direction does not cancel.
    """
    if layout.kind == "NCHW":
        return None
    g = torch.Generator().manual_seed(int(seed))
    signs = torch.randint(0, 2, (channels,), generator=g).to(dtype=like.dtype) * 2 - 1
    return signs.to(like.device)


def _measure_layer(name: str, layout: ActivationLayout, out: torch.Tensor, x: torch.Tensor, share: float, *, seed: int) -> LayerERF:
    fmap = layout.to_nchw(out)
    gh, gw = layout.grid
    unit = (gh // 2, gw // 2)
    centre_unit = fmap[:, :, unit[0], unit[1]]  # (N, C)
    weights = _channel_weights(layout, centre_unit.shape[1], seed, centre_unit)
    centre = centre_unit.sum() if weights is None else (centre_unit * weights).sum()
    if not centre.requires_grad:
        raise BackboneError(f"layer {name!r} does not depend on the input (no gradient)")
    # The graph stays for the next layer: several layers share the one forward pass.
    (grad,) = torch.autograd.grad(centre, x, retain_graph=True)
    grad_map = grad.detach().abs().sum(1).mean(0).float().cpu()
    side, radius, (cy, cx), whole = measure_square(grad_map, share=share)
    total = float(grad_map.sum())
    return LayerERF(
        name=name, layout=layout.kind, grid=(gh, gw), unit=unit, side=side, radius=radius, centre=(cy, cx),
        share=float(share), whole_input=whole, map=(grad_map / total).numpy().astype(np.float32),
        channels="sum" if weights is None else "random signs",
    )


def erf_row(erf: EffectiveReceptiveFields, name: str, receptive_field: int | None) -> dict | None:
    """The ``erf`` entry of one ``summary --json`` row: side, radius, share and the ratio to the theoretical RF
    (``None`` for a layer that was not measured)."""
    layer = erf.get(name)
    if layer is None:
        return None
    r = ratio(layer.side, receptive_field)
    return layer.to_dict() | {"ratio_to_rf": None if r is None else round(r, 4), "trained": erf.trained}


def ratio(erf_side: int | None, receptive_field: int | None) -> float | None:
    """ERF side over the theoretical receptive field (both px), or ``None`` where either is missing."""
    if not erf_side or not receptive_field:
        return None
    return erf_side / receptive_field

