"""Explaining the catalog's transformers: ViT token grids, Swin's channels-last stages, attention rollout.

vit_b_16 and swin_t are built untrained on the CPU once per module. torchvision initialises a ViT's head
to zeros, so an untrained ViT has no gradient at all: the fixture gives it a seeded random head (on the
test's own copy), as any trained head would have.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backbones.errors import BackboneError, LayerError
from backbones.zoo.models import load_model
from viz.cam import explain, explain_tensor
from viz.features import feature_maps
from viz.layers import default_layer, describe_layers, resolve_layer, spatial_layers
from viz.methods.registry import refused_methods
from viz.methods.rollout import roll_out
from viz.overlay import joint_heatmaps, render_grid


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    loaded = load_model("vit_b_16", weights="none")
    with torch.no_grad():
        loaded.model.heads.head.weight.normal_(0, 0.02)
    return loaded


@pytest.fixture(scope="module")
def vit_input(vit, photo):
    return vit.preprocessing(photo).unsqueeze(0)


@pytest.fixture(scope="module")
def vit_cam(vit, vit_input):
    """Grad-CAM of vit_b_16 at its default layer, computed once for the tests that look at it."""
    return explain_tensor(vit, vit_input, method="gradcam")


@pytest.fixture(scope="module")
def tiny_vit():
    """A two-block ViT on 32 px inputs (4x4 patches of 8 px), for what costs many passes."""
    from torchvision.models.vision_transformer import VisionTransformer

    from tests.unit.viz_nets import wrap

    torch.manual_seed(0)
    model = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=4)
    with torch.no_grad():
        model.heads.head.weight.normal_(0, 0.5)
    return wrap(model, 32, ["a", "b", "c", "d"])


@pytest.fixture(scope="module")
def swin():
    torch.manual_seed(0)
    return load_model("swin_t", weights="none")


@pytest.fixture(scope="module")
def photo():
    from backbones.inference.images import load_image
    from backbones.samples import sample_photos

    return load_image(next(iter(sample_photos().values())))


def snapshot(model):
    """What an explanation could leave behind: tensors, hooks, instance forwards, modes."""
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [(n, dict(m._forward_hooks), dict(m._forward_pre_hooks), dict(m._backward_hooks), "forward" in m.__dict__, m.training)
         for n, m in model.named_modules()],
    )


def assert_same(model, before, x, out_before):
    state, modules = snapshot(model)
    assert state.keys() == before[0].keys() and all(torch.equal(state[k], before[0][k]) for k in state)
    assert modules == before[1]
    assert not any(hooks or pre or back or forward for _, hooks, pre, back, forward, _ in modules)
    with torch.no_grad():
        assert torch.equal(model(x), out_before)


def test_vit_layers_are_token_grids_and_later_layers_say_why_not(vit):
    assert default_layer(vit) == "encoder.layers.encoder_layer_11.ln_1"
    infos = {i.name: i for i in describe_layers(vit)}
    block = infos["encoder.layers.encoder_layer_5"]
    assert block.spatial and block.map_shape == (768, 14, 14) and block.layout.prefix == 1
    assert "class token dropped" in block.layout.describe()
    names = [i.name for i in spatial_layers(vit)]
    assert "conv_proj" in names and "encoder.layers.encoder_layer_11.ln_1" in names
    assert "encoder.ln" not in names and "encoder.layers.encoder_layer_11" not in names
    with pytest.raises(LayerError, match="only the class token reaches the classifier.*encoder_layer_11.ln_1"):
        resolve_layer(vit, "encoder.layers.encoder_layer_11")
    with pytest.raises(LayerError, match="not a map over the image"):
        resolve_layer(vit, "heads.head")


def test_vit_gradcam_and_rollout_leave_the_cached_model_untouched(vit, vit_input, vit_cam):
    x = vit_input
    with torch.no_grad():
        out = vit.model(x)
    before = snapshot(vit.model)
    cam = vit_cam
    assert cam.layer == "encoder.layers.encoder_layer_11.ln_1"
    assert cam.raw.shape == (14, 14) and cam.heatmap.shape == (224, 224) and cam.scale > 0 and cam.peak is not None
    rollout = explain_tensor(vit, x, method="rollout", target=cam.target.index)
    assert rollout.raw.shape == (14, 14) and rollout.raw.sum() == pytest.approx(1.0, abs=1e-5)
    assert (rollout.raw > 0).all() and rollout.heatmap.shape == (224, 224)
    assert_same(vit.model, before, x, out)


def test_rollout_by_hand_and_its_refusals(swin):
    # Two layers over a class token and two patches; heads (2) averaged.
    a1 = torch.tensor([[[0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]] * 2)[None]
    a2 = torch.tensor([[[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]] * 2)[None]
    eye = torch.eye(3)
    l1, l2 = 0.5 * a1[0, 0] + 0.5 * eye, 0.5 * a2[0, 0] + 0.5 * eye
    expected = (l2 @ l1)[0, 1:]
    got = roll_out([a1, a2])[0]
    assert torch.allclose(got, expected / expected.sum())
    refused = refused_methods(swin.model)
    assert "windows" in refused["rollout"] and "GELU" in refused["guided-gradcam"] and "GELU" in refused["guided-backprop"]
    with pytest.raises(BackboneError, match="guided Grad-CAM needs a ReLU/ReLU6 network.*GELU"):
        explain(swin, swin_photo(), method="guided-gradcam")
    with pytest.raises(BackboneError, match="head_fusion"):
        roll_out([a1], head_fusion="min")


def swin_photo():
    from PIL import Image

    return Image.new("RGB", (64, 64), (120, 80, 40))


def test_swin_gradcam_reads_the_channels_last_stage_and_features_work(swin, photo):
    # Swin pads to its windows, so a 112 px input (a quarter of the work) has the same layers at half the grid.
    x = torch.nn.functional.interpolate(swin.preprocessing(photo).unsqueeze(0), size=(112, 112), mode="bilinear")
    with torch.no_grad():
        out = swin.model(x)
    before = snapshot(swin.model)
    assert default_layer(swin) == "norm"
    layout = next(i for i in describe_layers(swin) if i.name == "features.5").layout
    assert layout.kind == "NHWC" and layout.grid == (14, 14)
    cam = explain_tensor(swin, x, method="gradcam")
    assert cam.raw.shape == (4, 4) and cam.heatmap.shape == (112, 112) and cam.scale > 0 and cam.peak is not None
    fm = feature_maps(swin, photo, "features.3", top=4)
    assert fm.output_shape == (192, 28, 28) and fm.maps.shape == (4, 28, 28)
    assert_same(swin.model, before, x, out)


def test_a_cnn_and_a_transformer_share_one_colour_scale(vit_input, vit_cam, photo):
    cnn = load_model("resnet18", weights="none")
    a = explain_tensor(cnn, vit_input, method="gradcam")  # the same 224 px input, ImageNet normalisation
    b = vit_cam
    assert a.heatmap.shape == b.heatmap.shape == (224, 224)
    joint = joint_heatmaps([a, b])
    top = max(a.scale, b.scale)
    assert a.scale != b.scale
    for exp, m in zip((a, b), joint):  # each map in units of the larger one's maximum
        np.testing.assert_allclose(m, np.clip(exp.heatmap * (exp.scale / top), 0, 1), atol=1e-6)
    assert max(float(m.max()) for m in joint) > 0.99 and min(float(m.max()) for m in joint) < 0.99
    grid = render_grid(photo.resize((224, 224)), [a, b], normalize="joint")
    assert grid.width > 2 * 224 * 0.9


def test_the_explain_page_library_path_runs_on_vit_b_16(vit, photo):
    """What Explain calls for vit_b_16 (caches.cam_layers, layer_layouts, refused_methods, explanation, features):
    the page itself needs trained weights, which a test cannot download. Scores and the sanity check: below."""
    layers = [i.name for i in spatial_layers(vit)]
    default = default_layer(vit)
    assert default in layers
    assert set(refused_methods(vit.model)) == {"guided-gradcam", "guided-backprop"}
    exp = explain(vit, photo, method="gradcam", layer="encoder.layers.encoder_layer_10")
    assert exp.heatmap.shape == (photo.height, photo.width) and exp.raw.shape == (14, 14)
    assert feature_maps(vit, photo, "encoder.layers.encoder_layer_3", top=2).output_shape == (768, 14, 14)


def test_faithfulness_sanity_and_every_method_on_a_small_vit(tiny_vit):
    from viz.quality import run_sanity_check, score_faithfulness, score_methods

    image = swin_photo().resize((32, 32))
    assert default_layer(tiny_vit) == "encoder.layers.encoder_layer_1.ln_1"
    f = score_faithfulness(tiny_vit, image, method="gradcam", steps=4)
    assert 0 <= f.score.deletion_auc <= 1 and 0 <= f.random.insertion_auc <= 1
    ranked = {s.method for s in score_methods(tiny_vit, image, steps=2)}
    assert ranked == {"gradcam", "gradcam++", "saliency", "integrated-gradients", "occlusion", "rollout"}
    check = run_sanity_check(tiny_vit, image, method="gradcam")
    assert [s.randomized for s in check.steps][:3] == ["heads.head", "encoder.ln", "encoder.layers.encoder_layer_1"]
    assert all(np.isfinite(s.ssim) for s in check.steps)
    mean = explain(tiny_vit, image, method="rollout")
    top = explain(tiny_vit, image, method="rollout", head_fusion="max")
    assert mean.raw.shape == top.raw.shape == (4, 4) and top.raw.sum() == pytest.approx(1.0, abs=1e-5)
    assert not np.allclose(top.raw, mean.raw)


def test_rollout_reads_attention_on_a_view_and_restores_it_after_a_failure(tiny_vit):
    from viz.layers import private_view
    from viz.methods.rollout import AttentionRollout, reading_attention

    attention = [m for m in tiny_vit.model.modules() if isinstance(m, torch.nn.MultiheadAttention)]
    view = private_view(tiny_vit.model)
    with pytest.raises(RuntimeError, match="boom"), reading_attention(view) as weights:
        view(torch.zeros(1, 3, 32, 32))
        assert len(weights) == 2 and weights[0].shape == (1, 2, 17, 17)
        raise RuntimeError("boom")
    assert not any("forward" in m.__dict__ for m in view.modules())
    assert not any("forward" in m.__dict__ for m in attention)

    def boom(done, total, message):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        AttentionRollout(private_view(tiny_vit.model), progress=boom).attribute(torch.zeros(1, 3, 32, 32))
    assert not any("forward" in m.__dict__ or m._forward_hooks for m in tiny_vit.model.modules())
