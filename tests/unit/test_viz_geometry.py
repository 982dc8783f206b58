"""viz.geometry: a map over the model's crop placed back onto the photo."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.unit.viz_nets import TinyNet, tiny_image, wrap
from viz.cam import explain
from viz.geometry import map_to_image


def test_map_to_image_places_the_crop_and_zeroes_the_rest():
    crop = np.ones((8, 8), dtype=np.float32)
    out = map_to_image(crop, (2.0, 1.0, 10.0, 9.0), (12, 10))
    assert out.shape == (10, 12) and out.dtype == np.float32
    expected = np.zeros((10, 12), dtype=np.float32)
    expected[1:9, 2:10] = 1.0
    np.testing.assert_array_equal(out, expected)
    # A 2x2 map onto a 4x4 box: bilinear with clamped edges, like F.interpolate(align_corners=False).
    small = np.array([[0.0, 1.0], [2.0, 3.0]], dtype=np.float32)
    ref = torch.nn.functional.interpolate(torch.from_numpy(small)[None, None], size=(4, 4), mode="bilinear")[0, 0].numpy()
    np.testing.assert_allclose(map_to_image(small, (0, 0, 4, 4), (4, 4)), ref, atol=1e-6)


def test_heatmap_covers_the_original_image():
    # 40 wide x 20 high, model crop 16 after resizing the short side to 16: a 32x16 resize, centre 16x16 kept.
    loaded = wrap(TinyNet(), 16, ["a", "b", "c", "d"])
    image = tiny_image(size=20).resize((40, 20))
    exp = explain(loaded, image, layer="features.4")
    assert exp.shape == (20, 40) and exp.heatmap.shape == (20, 40)
    assert exp.crop_box == pytest.approx((10.0, 0.0, 30.0, 20.0))
    assert np.all(exp.heatmap[:, :10] == 0) and np.all(exp.heatmap[:, 30:] == 0)
    assert exp.heatmap.dtype == np.float32 and exp.heatmap.min() >= 0 and exp.heatmap.max() <= 1
    assert exp.heatmap[:, 10:30].max() > 0.9
    assert 10 <= exp.peak[1] < 30
