"""viz.overlay: colours, blending, joint normalisation, grids and PNG bytes."""

from __future__ import annotations

import io

import matplotlib
import numpy as np
import pytest
from PIL import Image

from backbones.errors import BackboneError
from viz.cam import Explanation, Target
from viz.overlay import colorize, joint_heatmaps, overlay, overlay_image, render_grid, to_png_bytes


def _exp(heatmap, scale, title="m"):
    h = np.asarray(heatmap, dtype=np.float32)
    return Explanation(
        model=title, method="gradcam", layer="x", target=Target(0, "a", 0.5), heatmap=h, heatmap_crop=h, raw=h,
        scale=scale, crop_box=(0.0, 0.0, float(h.shape[1]), float(h.shape[0])),
    )


def test_colorize_uses_the_matplotlib_colormap():
    heat = np.array([[0.0, 1.0]], dtype=np.float32)
    rgb = colorize(heat, cmap="viridis")
    ref = (np.asarray(matplotlib.colormaps["viridis"]([0.0, 1.0]))[:, :3] * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(rgb[0], ref)
    with pytest.raises(BackboneError, match="colormap"):
        colorize(heat, cmap="no-such-map")


def test_overlay_blends_with_the_opacity():
    image = Image.new("RGB", (2, 1), (100, 50, 0))
    heat = np.array([[0.0, 1.0]], dtype=np.float32)
    np.testing.assert_array_equal(overlay(image, heat, alpha=0.0), np.asarray(image))
    np.testing.assert_array_equal(overlay(image, heat, alpha=1.0, cmap="gray"), [[[0, 0, 0], [255, 255, 255]]])
    half = overlay(image, heat, alpha=0.5, cmap="gray")
    np.testing.assert_array_equal(half, [[[50, 25, 0], [178, 152, 128]]])
    assert overlay_image(image, np.zeros((4, 8)), alpha=0.3).size == (2, 1)  # heatmap resized to the image
    with pytest.raises(BackboneError, match="opacity"):
        overlay(image, heat, alpha=1.5)


def test_joint_normalisation_and_grid():
    a = _exp([[0.0, 1.0], [0.5, 0.25]], scale=4.0, title="strong")
    b = _exp([[1.0, 0.0], [0.0, 0.0]], scale=1.0, title="weak")
    ja, jb = joint_heatmaps([a, b])
    np.testing.assert_allclose(ja, a.heatmap)
    np.testing.assert_allclose(jb, b.heatmap * 0.25)
    image = Image.new("RGB", (2, 2), "white")
    grid = render_grid(image, [a, b], normalize="joint", cell_height=40, titles=["A", "B"], show_image=True)
    assert grid.mode == "RGB" and grid.width == 3 * 40 + 4 * 6
    png = to_png_bytes(grid)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert Image.open(io.BytesIO(png)).size == grid.size
    with pytest.raises(BackboneError, match="does not match"):
        render_grid(Image.new("RGB", (3, 3)), [a])
