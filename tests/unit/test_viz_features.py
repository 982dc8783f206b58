"""viz.features: channel statistics worked out by hand, no hook left behind, the channel grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from backbones.errors import LayerError
from backbones.inference.preprocessing import Preprocessing
from backbones.zoo.catalog import get_entry
from backbones.zoo.models import LoadedModel
from viz.features import feature_maps, render_feature_grid


class ChannelNet(nn.Module):
    """1x1 conv with fixed weights: channel k = w_k . (r, g, b) + b_k, then ReLU, GAP, linear."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(3, 2)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 2.0, 0], [0, 0, -1.0]]).view(3, 3, 1, 1))
            self.conv.bias.copy_(torch.tensor([0.0, -0.5, 0.25]))

    def forward(self, x):
        return self.fc(self.pool(self.act(self.conv(x))).flatten(1))


def wrap(model, size=4) -> LoadedModel:
    return LoadedModel(
        name="channels",
        entry=get_entry("resnet18"),
        model=model.eval(),
        preprocessing=Preprocessing(crop_size=size, resize_size=size, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)),
        categories=("a", "b"),
        weights="none",
    )


def test_feature_maps_stats_and_ranking_by_hand():
    # A 4x4 image: red 1.0 in the left half, green 0.5 everywhere, blue 0.2 on the top row.
    rgb = np.zeros((4, 4, 3), dtype=np.uint8)
    rgb[:, :2, 0] = 255
    rgb[:, :, 1] = 128  # 128/255
    rgb[0, :, 2] = 51  # 0.2
    loaded = wrap(ChannelNet())
    fm = feature_maps(loaded, Image.fromarray(rgb), "act", top=2)
    g = 128 / 255
    c0 = np.where(np.arange(16).reshape(4, 4) % 4 < 2, 1.0, 0.0)  # red
    c1 = np.full((4, 4), max(2 * g - 0.5, 0.0))  # 2 * green - 0.5
    c2 = np.maximum(0.25 - np.where(np.arange(16).reshape(4, 4) < 4, 0.2, 0.0), 0)  # 0.25 - blue
    expected = {0: c0, 1: c1, 2: c2}
    means = {k: v.mean() for k, v in expected.items()}
    assert fm.output_shape == (3, 4, 4)
    assert [c.index for c in fm.channels] == sorted(means, key=lambda k: -means[k])
    for c in fm.channels:
        v = expected[c.index]
        assert c.mean == pytest.approx(v.mean(), abs=1e-6)
        assert c.max == pytest.approx(v.max(), abs=1e-6)
        assert c.std == pytest.approx(v.std(), abs=1e-6)
        assert c.fraction_active == pytest.approx((v > 0).mean())
    assert fm.maps.shape == (2, 4, 4) and fm.maps.dtype == np.float32
    np.testing.assert_allclose(fm.maps[0], expected[fm.channels[0].index], atol=1e-6)
    d = fm.to_dict()
    assert d["output_shape"] == [3, 4, 4] and len(d["channels"]) == 2 and d["layer"] == "act"
    assert set(d["channels"][0]) == {"index", "mean", "max", "std", "fraction_active"}


def test_feature_maps_leave_no_hook_and_reject_flat_layers():
    loaded = wrap(ChannelNet())
    feature_maps(loaded, Image.new("RGB", (4, 4), "red"), "conv")
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in loaded.model.modules())
    with pytest.raises(LayerError, match="2-D"):
        feature_maps(loaded, Image.new("RGB", (4, 4)), "fc")
    with pytest.raises(LayerError, match="conv"):
        feature_maps(loaded, Image.new("RGB", (4, 4)), "cnv")


def test_feature_grid_renders_one_tile_per_channel(lite0, grace_hopper):
    fm = feature_maps(lite0, Image.open(grace_hopper).convert("RGB"), "blocks.5", top=6)
    assert fm.output_shape == (192, 7, 7) and len(fm.channels) == 192
    means = [c.mean for c in fm.channels]
    assert means == sorted(means, reverse=True)
    grid = render_feature_grid(fm, columns=3, cell=32)
    assert grid.mode == "RGB" and grid.width == 3 * 32 + 4 * 4
    joint = render_feature_grid(fm, normalize="joint", labels=False, cell=16)
    assert joint.height == 2 * 16 + 3 * 4
