"""Heatmaps on photos: colormaps, blending, side-by-side grids, PNG bytes.

Pure numpy + PIL with matplotlib's colormap tables (``matplotlib.colormaps``);
no pyplot, so nothing here touches global figure state and any thread may call it::

    rgb = overlay(image, exp.heatmap, cmap="jet", alpha=0.5)     # uint8 (H, W, 3)
    img = render_grid(image, [exp_a, exp_b], normalize="joint")  # PIL image with titles + colour bar
    png = to_png_bytes(img)                                      # for a download button
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from backbones.errors import BackboneError

#: Colormaps a picker offers (any matplotlib colormap name works).
COLORMAPS = ("jet", "turbo", "inferno", "magma", "viridis", "plasma", "hot", "coolwarm", "gray")


@functools.lru_cache(maxsize=64)
def _lut(cmap: str) -> np.ndarray:
    """``(256, 3)`` uint8 lookup table of a matplotlib colormap."""
    import matplotlib

    try:
        cm = matplotlib.colormaps[cmap]
    except KeyError as exc:
        raise BackboneError(f"unknown colormap {cmap!r}; try one of {', '.join(COLORMAPS)}") from exc
    table = cm(np.linspace(0.0, 1.0, 256))[:, :3]
    return np.round(table * 255).astype(np.uint8)


def normalize_heatmap(heatmap: np.ndarray, *, vmin: float | None = None, vmax: float | None = None) -> np.ndarray:
    """float32 copy scaled to [0, 1]: ``(h - vmin) / (vmax - vmin)``, clipped (defaults: the map's range).

    A constant map becomes all zeros; NaN becomes 0.
    """
    h = np.nan_to_num(np.asarray(heatmap, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    lo = float(h.min()) if vmin is None else float(vmin)
    hi = float(h.max()) if vmax is None else float(vmax)
    if not hi > lo:
        return np.zeros_like(h)
    return np.clip((h - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def colorize(heatmap: np.ndarray, *, cmap: str = "jet", vmin: float = 0.0, vmax: float = 1.0) -> np.ndarray:
    """uint8 ``(H, W, 3)`` colours of a ``(H, W)`` map, ``vmin``..``vmax`` spanning the colormap."""
    h = normalize_heatmap(heatmap, vmin=vmin, vmax=vmax)
    return _lut(cmap)[np.round(h * 255).astype(np.uint8)]


def _rgb_array(image) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise BackboneError(f"image must be (H, W, 3) RGB, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    return arr[..., :3]


def _fit(heatmap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a map to ``size = (W, H)`` when it does not match already."""
    h = np.asarray(heatmap, dtype=np.float32)
    if (h.shape[1], h.shape[0]) == tuple(size):
        return h
    return np.asarray(Image.fromarray(h, mode="F").resize(size, Image.BILINEAR), dtype=np.float32)


def overlay(
    image,
    heatmap: np.ndarray,
    *,
    cmap: str = "jet",
    alpha: float = 0.5,
    vmin: float = 0.0,
    vmax: float = 1.0,
    crop_box: Sequence[float] | None = None,
    dim: float = 0.6,
) -> np.ndarray:
    """Blend a heatmap onto an image: uint8 ``(H, W, 3)``.

    ``image`` is a PIL image or ``(H, W, 3)`` array; ``heatmap`` is resized to it
    if needed. ``alpha`` is the heatmap's opacity (0: the photo, 1: only colours).
    With ``crop_box = (left, top, right, bottom)`` (the part of the photo the model saw), the rest is faded
    towards white by ``dim`` and left without colours, and the box gets a dark outline, so the map's edge
    reads as "the model did not see this" rather than as evidence.
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise BackboneError(f"opacity must be between 0 and 1, got {alpha}")
    rgb = _rgb_array(image)
    colours = colorize(_fit(heatmap, (rgb.shape[1], rgb.shape[0])), cmap=cmap, vmin=vmin, vmax=vmax)
    out = rgb.astype(np.float32) * (1.0 - alpha) + colours.astype(np.float32) * alpha
    if crop_box is not None:
        h, w = rgb.shape[:2]
        left, top, right, bottom = (int(round(v)) for v in crop_box)
        left, top = max(0, min(left, w)), max(0, min(top, h))
        right, bottom = max(left, min(right, w)), max(top, min(bottom, h))
        inside = np.zeros((h, w), dtype=bool)
        inside[top:bottom, left:right] = True
        faded = rgb.astype(np.float32) * (1.0 - dim) + 255.0 * dim
        out = np.where(inside[..., None], out, faded)
        t = max(2, round(min(h, w) / 200))  # outline thickness scales with the photo
        if right - left < w or bottom - top < h:
            for y0, y1, x0, x1 in ((top, top + t, left, right), (bottom - t, bottom, left, right),
                                   (top, bottom, left, left + t), (top, bottom, right - t, right)):
                out[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = (30, 30, 30)
    return np.round(out).astype(np.uint8)


def overlay_image(image, heatmap: np.ndarray, **kwargs) -> Image.Image:
    """:func:`overlay` as a PIL image."""
    return Image.fromarray(overlay(image, heatmap, **kwargs), mode="RGB")


def joint_heatmaps(explanations: Sequence) -> list[np.ndarray]:
    """Heatmaps rescaled to one shared scale: each times ``scale / max(scales)``.

    Meaningful when the maps share units (one method across models or classes);
    each map's own maximum then shows how strong it is relative to the others.
    """
    top = max((float(e.scale) for e in explanations), default=0.0)
    if not top > 0:
        return [np.zeros_like(e.heatmap) for e in explanations]
    return [np.clip(e.heatmap * (float(e.scale) / top), 0.0, 1.0).astype(np.float32) for e in explanations]


@functools.lru_cache(maxsize=8)
def load_font(size: int):
    """Pillow's default font at ``size`` pixels (cached), for labels on rendered images."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()


def _text_lines(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> list[str]:
    """Words wrapped to ``width`` pixels, at most two lines (the second cut with an ellipsis)."""
    words, lines, line = text.split(), [], ""
    for word in words:
        trial = f"{line} {word}".strip()
        if draw.textlength(trial, font=font) <= width or not line:
            line = trial
        else:
            lines.append(line)
            line = word
    lines.append(line)
    if len(lines) > 2:
        second = " ".join(lines[1:])
        while second and draw.textlength(second + "…", font=font) > width:
            second = second[:-1]
        lines = [lines[0], second + "…"]
    return lines


def font_height(font) -> int:
    """The pixel size of ``font``: the height of one line of its text."""
    return int(getattr(font, "size", 11))


def colour_bar(width: int, *, cmap: str = "jet", left_label: str = "0", right_label: str = "1", caption: str = "",
               font_size: int | None = None) -> Image.Image:
    """A colour scale as an image: the ramp, its end labels and a caption (for pages and slides)."""
    return _colour_bar(width, cmap, left_label, right_label, caption, load_font(font_size or max(12, width // 45)))


def _colour_bar(width: int, cmap: str, left_label: str, right_label: str, caption: str, font) -> Image.Image:
    """A horizontal colour ramp with its end values and a caption below."""
    bar_h, pad, line = 14, 6, font_height(font) + 4
    img = Image.new("RGB", (width, pad + bar_h + 2 + 2 * line + pad), "white")
    draw = ImageDraw.Draw(img)
    inner = max(16, width - 2 * pad)
    ramp = colorize(np.tile(np.linspace(0, 1, inner, dtype=np.float32), (bar_h, 1)), cmap=cmap)
    img.paste(Image.fromarray(ramp, mode="RGB"), (pad, pad))
    y = pad + bar_h + 2
    draw.text((pad, y), left_label, fill="black", font=font)
    draw.text((pad + inner - draw.textlength(right_label, font=font), y), right_label, fill="black", font=font)
    draw.text((max(pad, (width - draw.textlength(caption, font=font)) / 2), y + line), caption, fill="black", font=font)
    return img


def render_grid(
    image,
    explanations: Sequence,
    *,
    normalize: str = "each",
    cmap: str = "jet",
    alpha: float = 0.5,
    columns: int | None = None,
    titles: Sequence[str] | None = None,
    cell_height: int = 256,
    colorbar: bool = True,
    show_image: bool = False,
) -> Image.Image:
    """Side-by-side overlays of several explanations of one image, on one colour scale.

    ``explanations`` are :class:`viz.cam.Explanation` (several models or methods
    or classes). ``normalize="each"`` shows every map on its own 0..max scale;
    ``"joint"`` divides all by the largest ``scale`` (:func:`joint_heatmaps`), so
    weaker maps look weaker. Every cell uses the same colormap and range, shown
    once by the colour bar. ``show_image`` adds the photo itself as the first cell.
    Returns an RGB PIL image.
    """
    if not explanations:
        raise BackboneError("nothing to show: no explanations")
    if normalize not in ("each", "joint"):
        raise BackboneError(f"normalize must be 'each' or 'joint', got {normalize!r}")
    rgb = _rgb_array(image)
    height, width = rgb.shape[:2]
    for e in explanations:
        if tuple(e.heatmap.shape) != (height, width):
            raise BackboneError(f"heatmap {e.heatmap.shape} does not match the image ({height}, {width})")
    maps = joint_heatmaps(explanations) if normalize == "joint" else [e.heatmap for e in explanations]
    cells = [overlay(rgb, m, cmap=cmap, alpha=alpha) for m in maps]
    names = list(titles) if titles is not None else [e.title for e in explanations]
    if len(names) != len(cells):
        raise BackboneError(f"{len(names)} titles for {len(cells)} maps")
    if show_image:
        cells.insert(0, rgb)
        names.insert(0, "image")
    n = len(cells)
    cols = max(1, min(columns or min(n, 4), n))
    rows = math.ceil(n / cols)
    cell_w = max(1, round(width * cell_height / height))
    font = load_font(max(11, cell_height // 18))
    line_h = font_height(font) + 4
    title_h = 2 * line_h + 6
    gap = 6
    grid_w = cols * cell_w + (cols + 1) * gap
    grid_h = rows * (cell_height + title_h) + (rows + 1) * gap
    bar = None
    if colorbar:
        if normalize == "joint":
            top = max(float(e.scale) for e in explanations)
            bar = _colour_bar(grid_w, cmap, "0", f"{top:.3g}", "shared scale (largest map = max)", font)
        else:
            bar = _colour_bar(grid_w, cmap, "0", "1", "each map scaled to its own maximum", font)
    canvas = Image.new("RGB", (grid_w, grid_h + (bar.height if bar else 0)), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (cell, name) in enumerate(zip(cells, names)):
        r, c = divmod(i, cols)
        x = gap + c * (cell_w + gap)
        y = gap + r * (cell_height + title_h + gap)
        for j, line in enumerate(_text_lines(draw, name, font, cell_w)):
            draw.text((x, y + j * line_h), line, fill="black", font=font)
        canvas.paste(Image.fromarray(cell, mode="RGB").resize((cell_w, cell_height), Image.BILINEAR), (x, y + title_h))
    if bar is not None:
        canvas.paste(bar, (0, grid_h))
    return canvas


def render_explanation(image, explanation, *, cmap: str = "jet", alpha: float = 0.5) -> Image.Image:
    """One explanation blended onto its image (the same size as the image), the model's crop outlined."""
    return overlay_image(image, explanation.heatmap, cmap=cmap, alpha=alpha, crop_box=explanation.crop_box)


def to_png_bytes(image) -> bytes:
    """PNG file contents of a PIL image or a uint8 ``(H, W, 3)`` / float ``(H, W)`` array."""
    if not isinstance(image, Image.Image):
        arr = np.asarray(image)
        if arr.ndim == 2:
            arr = colorize(arr, cmap="gray")
        image = Image.fromarray(_rgb_array(arr), mode="RGB")
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()
