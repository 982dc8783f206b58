"""viz.features and viz.overlay: channel statistics worked out by hand, grids, colours, PNG bytes."""

from __future__ import annotations

import io

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from backbones.errors import BackboneError, LayerError
from backbones.inference.preprocessing import Preprocessing
from backbones.zoo.catalog import get_entry
from backbones.zoo.models import LoadedModel
from viz.cam import Explanation, Target
from viz.features import feature_maps, render_feature_grid
from viz.layers import default_layer, private_view, resolve_layer, spatial_layers
from viz.overlay import colorize, joint_heatmaps, overlay, overlay_image, render_grid, to_png_bytes


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


# ---------------------------------------------------------------------------------------------
# Layers


def test_layer_defaults_and_candidates():
    from backbones.zoo.models import build_architecture

    class Holder:  # what default_layer reads from a LoadedModel
        def __init__(self, name):
            self.entry = get_entry(name)
            self.name = name
            self.model = build_architecture(self.entry)
            self.preprocessing = self.entry.preprocessing

    resnet = Holder("resnet18")  # generic rule: the last spatial module before avgpool
    assert default_layer(resnet) == "layer4"
    names = [i.name for i in spatial_layers(resnet, max_depth=1)]
    assert names == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    assert resolve_layer(resnet, "layer3.1.conv2") == "layer3.1.conv2"
    assert default_layer(Holder("squeezenet1_1")) == "features"  # table: not the 1000-channel conv
    assert default_layer(Holder("mobilenet_v3_small")) == "features"


def test_private_view_shares_parameters_but_not_state():
    model = nn.Sequential(nn.Conv2d(3, 2, 1), nn.ReLU(inplace=True))
    model.train()
    view = private_view(model)
    assert view[0].weight is model[0].weight
    view[0].register_forward_hook(lambda *a: None)
    view[1].inplace = True
    assert not view.training and model.training
    assert not model[0]._forward_hooks and view[0]._forward_hooks
    assert private_view(model)[1].inplace is False and model[1].inplace is True


# ---------------------------------------------------------------------------------------------
# Overlays


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
