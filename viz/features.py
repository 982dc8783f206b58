"""Feature maps: what one layer's channels respond to on an image.

``feature_maps(loaded, image, "layer3")`` runs the image through a private view
of the model (captum ``LayerActivation``; the shared model gets no hook) and
returns the layer's output shape, statistics for every channel, ranked by mean
activation, and the ``top`` channels' maps; :func:`render_feature_grid` draws
them as a grid with each channel's index and mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image, ImageDraw

from backbones.errors import BackboneError
from backbones.zoo.models import LoadedModel
from viz.inputs import ensure_rgb, get_device_dtype, make_private_view
from viz.layers import find_layer
from viz.overlay import colorize, font_height, load_font, normalize_heatmap


@dataclass(frozen=True)
class ChannelStats:
    """One channel of a layer's output on one image (``fraction_active``: share of positions > 0)."""

    index: int
    mean: float
    max: float
    std: float
    fraction_active: float

    def to_dict(self) -> dict:
        return {
            "index": self.index,
            "mean": self.mean,
            "max": self.max,
            "std": self.std,
            "fraction_active": self.fraction_active,
        }


@dataclass(frozen=True, eq=False)
class FeatureMaps:
    """A layer's activations for one image.

    ``output_shape`` is ``(C, H, W)``; ``channels`` holds statistics for all ``C``
    channels, highest mean first; ``maps`` is float32 ``(top, H, W)``, the raw
    activations of ``channels[:top]`` in that order.
    """

    model: str
    layer: str
    output_shape: tuple[int, int, int]
    channels: tuple[ChannelStats, ...]
    maps: np.ndarray = field(repr=False)

    @property
    def top(self) -> tuple[ChannelStats, ...]:
        return self.channels[: len(self.maps)]

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "layer": self.layer,
            "output_shape": list(self.output_shape),
            "channels": [c.to_dict() for c in self.top],
        }


def feature_maps(loaded: LoadedModel, image, layer: str | None = None, *, top: int = 16) -> FeatureMaps:
    """Activations of ``layer`` (dotted name; default: the CAM default layer) for one RGB image.

    ``top`` channels (by mean activation) keep their maps; every channel gets
    statistics. Transformer layers are laid out as maps first (:mod:`backbones.layouts`).
    Raises :class:`~backbones.errors.LayerError` for a layer without a spatial output.
    """
    from captum.attr import LayerActivation

    if int(top) < 1:
        raise BackboneError(f"top must be at least 1, got {top}")
    info = find_layer(loaded, layer)
    name = info.name
    img = ensure_rgb(image)
    view = make_private_view(loaded)
    device, dtype = get_device_dtype(view)
    x = loaded.preprocessing(img).unsqueeze(0).to(device=device, dtype=dtype)
    with torch.inference_mode():
        act = LayerActivation(view, view.get_submodule(name)).attribute(x)
    if isinstance(act, tuple):
        act = act[0]
    # A ViT's patch tokens on their grid, a Swin stage transposed: every layer reads as (C, H, W).
    a = info.layout.to_nchw(act)[0].float().cpu()
    flat = a.flatten(1)
    means = flat.mean(1)
    maxes = flat.amax(1)
    stds = flat.std(1, unbiased=False)
    active = (flat > 0).float().mean(1)
    # Ties broken by channel index so the ranking is deterministic.
    order = sorted(range(a.shape[0]), key=lambda i: (-float(means[i]), i))
    channels = tuple(
        ChannelStats(
            index=i,
            mean=float(means[i]),
            max=float(maxes[i]),
            std=float(stds[i]),
            fraction_active=float(active[i]),
        )
        for i in order
    )
    k = min(int(top), len(order))
    maps = a[order[:k]].numpy().astype(np.float32)
    return FeatureMaps(model=loaded.name, layer=name, output_shape=tuple(int(s) for s in a.shape), channels=channels, maps=maps)


def render_feature_grid(
    fm: FeatureMaps,
    *,
    columns: int | None = None,
    cmap: str = "viridis",
    cell: int = 96,
    normalize: str = "each",
    labels: bool = True,
) -> Image.Image:
    """The top channels as a grid of colour-mapped tiles, each labelled ``#index mean``.

    ``normalize="each"`` scales every tile to its own min..max; ``"joint"``
    uses one range for all tiles, so strong and weak channels can be compared.
    """
    if normalize not in ("each", "joint"):
        raise BackboneError(f"normalize must be 'each' or 'joint', got {normalize!r}")
    n = len(fm.maps)
    cols = max(1, min(columns or math.ceil(math.sqrt(n)), n))
    rows = math.ceil(n / cols)
    font = load_font(max(10, cell // 8))
    label_h = font_height(font) + 4 if labels else 0
    gap = 4
    canvas = Image.new("RGB", (cols * cell + (cols + 1) * gap, rows * (cell + label_h) + (rows + 1) * gap), "white")
    draw = ImageDraw.Draw(canvas)
    lo, hi = (float(fm.maps.min()), float(fm.maps.max())) if normalize == "joint" else (None, None)
    for i, (stats, m) in enumerate(zip(fm.top, fm.maps)):
        r, c = divmod(i, cols)
        x, y = gap + c * (cell + gap), gap + r * (cell + label_h + gap)
        tile = colorize(normalize_heatmap(m, vmin=lo, vmax=hi), cmap=cmap)
        canvas.paste(Image.fromarray(tile, mode="RGB").resize((cell, cell), Image.NEAREST), (x, y + label_h))
        if labels:
            draw.text((x, y), f"#{stats.index} {stats.mean:.2g}", fill="black", font=font)
    return canvas
