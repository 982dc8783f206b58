"""viz.cam: Grad-CAM values worked out by hand, pointing on real photos, and a shared model left untouched."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from torch import nn

from backbones.errors import BackboneError, CancelledError, LayerError
from backbones.inference.preprocessing import Preprocessing
from backbones.zoo.catalog import get_entry
from backbones.zoo.models import LoadedModel, load_model
from viz.cam import (
    METHODS,
    TargetError,
    explain,
    explain_methods,
    explain_models,
    explain_tensor,
    explain_topk,
    map_to_image,
    resolve_target,
)

# ---------------------------------------------------------------------------------------------
# Hand-built networks


class GapNet(nn.Module):
    """1x1 conv (3 -> 2 channels, no bias) -> global average pool -> linear (2 -> 2, no bias)."""

    def __init__(self, conv_w, fc_w):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1, bias=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor(conv_w, dtype=torch.float32).view(2, 3, 1, 1))
            self.fc.weight.copy_(torch.tensor(fc_w, dtype=torch.float32))

    def forward(self, x):
        return self.fc(self.flat(self.pool(self.conv(x))))


class TinyNet(nn.Module):
    """Conv-BN-ReLU(inplace) -> strided conv -> ReLU(inplace) -> GAP -> linear: a ResNet in miniature."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1),
            nn.BatchNorm2d(6),
            nn.ReLU(inplace=True),
            nn.Conv2d(6, 8, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.ReLU6(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 4)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            bn = self.features[1]
            bn.running_mean.copy_(torch.randn(6, generator=g) * 0.1)
            bn.running_var.copy_(torch.rand(6, generator=g) + 0.5)
        self.eval()

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def wrap(model: nn.Module, size: int, categories) -> LoadedModel:
    """A LoadedModel around a hand-built net; identity normalisation, no resize beyond ``size``."""
    return LoadedModel(
        name="tiny",
        entry=get_entry("resnet18"),  # not in the default-layer table: the generic rule applies
        model=model.eval(),
        preprocessing=Preprocessing(crop_size=size, resize_size=size, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)),
        categories=tuple(categories),
        weights="none",
    )


def tiny_image(size=16, seed=1) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), mode="RGB")


def model_state(model: nn.Module) -> list:
    """Everything a CAM could leave behind on a shared model."""
    state = []
    for name, m in model.named_modules():
        hooks = tuple(
            len(getattr(m, attr, {}))
            for attr in (
                "_forward_hooks",
                "_forward_pre_hooks",
                "_backward_hooks",
                "_backward_pre_hooks",
                "_forward_hooks_with_kwargs",
                "_forward_pre_hooks_with_kwargs",
            )
        )
        state.append((name, type(m).__name__, m.training, getattr(m, "inplace", None), hooks))
    for name, p in model.named_parameters():
        state.append((name, p.requires_grad, p.grad is None))
    return state


def assert_untouched(model: nn.Module, before: list) -> None:
    after = model_state(model)
    assert after == before
    assert all(p.grad is None for p in model.parameters())
    assert all(len(m._forward_hooks) == 0 and len(m._backward_hooks) == 0 for m in model.modules())


# ---------------------------------------------------------------------------------------------
# Grad-CAM against a hand computation


CONV_W = [[1.0, -1.0, 0.5], [-0.5, 2.0, 1.0]]
FC_W = [[1.0, -2.0], [-1.0, 0.5]]


def test_gradcam_matches_hand_computation():
    # Input 4x4, three channels with simple patterns.
    r = np.arange(16, dtype=np.float32).reshape(4, 4) / 15.0  # ramp 0..1
    g = np.eye(4, dtype=np.float32)  # diagonal
    b = np.zeros((4, 4), dtype=np.float32)
    b[:, :2] = 1.0  # left half
    x = torch.from_numpy(np.stack([r, g, b]))[None]
    loaded = wrap(GapNet(CONV_W, FC_W), 4, ["cat", "dog"])

    # By hand: A_k = sum_c W[k, c] x_c; score_t = sum_k FC[t, k] mean(A_k);
    # dscore_t / dA_k(i, j) = FC[t, k] / 16, so alpha_k = FC[t, k] / 16 and
    # Grad-CAM_t = relu(sum_k FC[t, k] / 16 * A_k).
    a0 = 1.0 * r - 1.0 * g + 0.5 * b
    a1 = -0.5 * r + 2.0 * g + 1.0 * b
    logits = np.array([FC_W[t][0] * a0.mean() + FC_W[t][1] * a1.mean() for t in range(2)])
    for t in range(2):
        expected = np.maximum(FC_W[t][0] / 16 * a0 + FC_W[t][1] / 16 * a1, 0.0)
        exp = explain_tensor(loaded, x, method="gradcam", layer="conv", target=t)
        assert exp.raw.shape == (4, 4)
        np.testing.assert_allclose(exp.raw, expected, rtol=1e-5, atol=1e-7)
        assert exp.scale == pytest.approx(expected.max(), rel=1e-5)
        # Same resolution as the input: the normalised crop map is the raw map / max.
        np.testing.assert_allclose(exp.heatmap_crop, expected / expected.max(), rtol=1e-5, atol=1e-6)
        probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        assert exp.target.prob == pytest.approx(probs[t], rel=1e-5)
        assert exp.target.label == ["cat", "dog"][t]
    # Without a target: the class with the larger logit.
    assert explain_tensor(loaded, x, layer="conv").target.index == int(np.argmax(logits))


def test_gradcam_plus_plus_matches_hand_computation():
    rng = np.random.default_rng(3)
    x = torch.from_numpy(rng.random((1, 3, 4, 4), dtype=np.float32))
    loaded = wrap(GapNet(CONV_W, FC_W), 4, ["cat", "dog"])
    w = np.array(CONV_W, dtype=np.float32)
    acts = np.einsum("kc,chw->khw", w, x[0].numpy())
    t = 1
    g = np.array(FC_W[t], dtype=np.float32) / 16  # constant gradient per channel
    # alpha_k = g^2 / (2 g^2 + sum(A_k) g^3); weight_k = sum_ij alpha_k relu(g_k) = 16 alpha_k relu(g_k)
    alpha = g**2 / (2 * g**2 + acts.sum(axis=(1, 2)) * g**3)
    weights = 16 * alpha * np.maximum(g, 0)
    expected = np.maximum(np.einsum("k,khw->hw", weights, acts), 0)
    exp = explain_tensor(loaded, x, method="gradcam++", layer="conv", target=t)
    np.testing.assert_allclose(exp.raw, expected, rtol=1e-4, atol=1e-6)


def test_gradcam_upsamples_bilinearly_and_agrees_with_captum():
    from captum.attr import LayerGradCam

    loaded = wrap(TinyNet(), 16, ["a", "b", "c", "d"])
    x = loaded.preprocessing(tiny_image()).unsqueeze(0)
    exp = explain_tensor(loaded, x, layer="features.4", target=2)
    assert exp.raw.shape == (8, 8) and exp.heatmap_crop.shape == (16, 16)
    net = TinyNet()  # a fresh copy with the same weights: captum's hooks go there, not on `loaded`
    direct = LayerGradCam(net, net.features[4])
    ref = direct.attribute(x, target=2, relu_attributions=True).detach()[0, 0].numpy()
    np.testing.assert_allclose(exp.raw, ref, rtol=1e-5, atol=1e-7)
    up = torch.nn.functional.interpolate(torch.from_numpy(ref)[None, None], size=(16, 16), mode="bilinear")[0, 0].numpy()
    np.testing.assert_allclose(exp.heatmap_crop, up / up.max(), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Mapping back onto the photo


def test_works_inside_a_callers_inference_mode():
    loaded = wrap(TinyNet(), 16, ["a", "b", "c", "d"])
    ref = explain(loaded, tiny_image(), method="saliency")
    with torch.inference_mode():
        x = loaded.preprocessing(tiny_image()).unsqueeze(0)
        inside = explain_tensor(loaded, x, method="saliency")
        top = explain_topk(loaded, tiny_image(), k=2)
    np.testing.assert_array_equal(inside.heatmap_crop, ref.heatmap_crop)
    assert top[0].target.index == ref.target.index


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


# ---------------------------------------------------------------------------------------------
# Real photos


def _portrait(path, width, height) -> Image.Image:
    return ImageOps.fit(Image.open(path).convert("RGB"), (width, height), method=Image.BICUBIC)


@pytest.mark.parametrize("left_first", [True, False])
def test_gradcam_points_at_each_photo_in_a_two_photo_image(lite0, grace_hopper, flower_photo, left_first):
    photos = [(grace_hopper, "military uniform"), (flower_photo, "daisy")]
    if not left_first:
        photos.reverse()
    w, h = 224, 448
    image = Image.new("RGB", (2 * w, h))
    for i, (path, _) in enumerate(photos):
        image.paste(_portrait(path, w, h), (i * w, 0))
    for side, (_, label) in enumerate(photos):
        exp = explain(lite0, image, target=label)
        assert exp.target.label == label
        assert exp.shape == (h, 2 * w)
        row, col = exp.peak
        assert (col < w) == (side == 0), f"{label}: peak at column {col}"
        own = exp.heatmap[:, :w] if side == 0 else exp.heatmap[:, w:]
        assert own.sum() / exp.heatmap.sum() > 0.7, f"{label}: most heat should lie on its own photo"


def test_topk_shares_one_pass_and_matches_single_explanations(lite0, grace_hopper):
    image = Image.open(grace_hopper).convert("RGB")
    top = explain_topk(lite0, image, k=5)
    assert len(top) == 5
    probs = [e.target.prob for e in top]
    assert probs == sorted(probs, reverse=True)
    assert "military uniform" in [e.target.label for e in top]
    assert [e.target.rank for e in top] == [1, 2, 3, 4, 5]
    for e in top:
        single = explain(lite0, image, target=e.target.index)
        np.testing.assert_allclose(single.raw, e.raw, rtol=1e-5, atol=1e-6)
        assert single.target.prob == pytest.approx(e.target.prob)


def test_every_method_on_the_bundled_model(lite0, grace_hopper):
    image = Image.open(grace_hopper).convert("RGB").resize((128, 150))
    results = explain_methods(
        lite0, image, methods=["gradcam", "gradcam++", "guided-gradcam", "saliency", "integrated-gradients"], target="military uniform", ig_steps=8
    )
    for exp in results:
        assert exp.target.label == "military uniform"
        assert exp.heatmap.shape == (150, 128) and exp.heatmap.dtype == np.float32
        assert 0.0 <= exp.heatmap.min() and exp.heatmap.max() <= 1.0
        assert exp.scale > 0
        assert (exp.layer is not None) == METHODS[exp.method].uses_layer


# ---------------------------------------------------------------------------------------------
# The shared model is never changed


ALL_METHODS = list(METHODS)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_no_hook_grad_mode_or_flag_left_behind(method):
    loaded = wrap(TinyNet(), 16, ["a", "b", "c", "d"])
    before = model_state(loaded.model)
    exp = explain(loaded, tiny_image(), method=method, ig_steps=4)
    assert exp.heatmap.shape == (16, 16)
    assert_untouched(loaded.model, before)
    # The inplace flags the model was built with are still there.
    assert loaded.model.features[2].inplace and loaded.model.features[4].inplace


@pytest.mark.parametrize("method", ALL_METHODS)
def test_nothing_left_behind_after_a_failure_mid_method(method):
    loaded = wrap(TinyNet(), 16, ["a", "b", "c", "d"])
    before = model_state(loaded.model)

    def boom(done, total, message):  # raised from inside captum's forward pass, with its hooks attached
        if done == total:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        explain(loaded, tiny_image(), method=method, progress=boom, ig_steps=4)
    assert_untouched(loaded.model, before)
    with pytest.raises(CancelledError):
        explain(loaded, tiny_image(), method=method, should_stop=lambda: True, ig_steps=4)
    assert_untouched(loaded.model, before)
    with pytest.raises(TargetError):
        explain(loaded, tiny_image(), method=method, target=99)
    assert_untouched(loaded.model, before)


def test_resnet_with_inplace_relu_and_frozen_parameters():
    loaded = load_model("resnet18", weights="none")
    model = loaded.model
    torch.manual_seed(0)
    for p in model.parameters():
        p.requires_grad_(False)
    before = model_state(model)
    inplace = [m.inplace for m in model.modules() if isinstance(m, nn.ReLU)]
    assert all(inplace)
    image = tiny_image(size=64, seed=5)
    for method in ("gradcam", "guided-gradcam", "saliency"):
        exp = explain(loaded, image, method=method, target=3)
        assert exp.heatmap.shape == (64, 64)
        assert np.isfinite(exp.heatmap).all()
    assert exp.target.index == 3
    assert_untouched(model, before)
    assert [m.inplace for m in model.modules() if isinstance(m, nn.ReLU)] == inplace
    assert not any(p.requires_grad for p in model.parameters())


def test_frozen_parameters_give_the_same_maps():
    free = wrap(TinyNet(), 16, ["a", "b", "c", "d"])
    frozen = wrap(TinyNet(), 16, ["a", "b", "c", "d"])
    for p in frozen.model.parameters():
        p.requires_grad_(False)
    for method in ("gradcam", "gradcam++", "guided-gradcam", "saliency"):
        a = explain(free, tiny_image(), method=method, target=1)
        b = explain(frozen, tiny_image(), method=method, target=1)
        np.testing.assert_array_equal(a.heatmap, b.heatmap)
    assert all(p.grad is None for p in free.model.parameters())
    assert not any(p.requires_grad for p in frozen.model.parameters())


def test_results_are_deterministic():
    loaded = wrap(TinyNet(), 16, ["a", "b", "c", "d"])
    for method in ALL_METHODS:
        a = explain(loaded, tiny_image(), method=method, ig_steps=4)
        b = explain(loaded, tiny_image(), method=method, ig_steps=4)
        np.testing.assert_array_equal(a.heatmap, b.heatmap)
        assert a.to_dict() == b.to_dict()


def test_two_threads_at_once_match_sequential_results(lite0, grace_hopper):
    image = Image.open(grace_hopper).convert("RGB").resize((160, 188))
    jobs = [("gradcam", "military uniform"), ("saliency", None), ("guided-gradcam", 652), ("gradcam", None)]
    sequential = [explain(lite0, image, method=m, target=t) for m, t in jobs]
    before = model_state(lite0.model)
    results: dict[int, object] = {}
    errors = []
    barrier = threading.Barrier(2)

    def worker(indices):
        try:
            barrier.wait()
            for i in indices:
                m, t = jobs[i]
                results[i] = explain(lite0, image, method=m, target=t)
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=([0, 1],)), threading.Thread(target=worker, args=([2, 3],))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    for i, seq in enumerate(sequential):
        np.testing.assert_allclose(results[i].heatmap, seq.heatmap, atol=1e-5)
        assert results[i].target == seq.target
    assert_untouched(lite0.model, before)


# ---------------------------------------------------------------------------------------------
# Targets, layers, methods


def test_targets_by_index_label_and_substring(lite0):
    assert resolve_target(lite0, None) is None
    assert resolve_target(lite0, 652) == 652
    assert resolve_target(lite0, "652") == 652
    assert resolve_target(lite0, "Military Uniform") == 652
    assert resolve_target(lite0, "military_uniform") == 652
    assert lite0.categories[resolve_target(lite0, "daisy")] == "daisy"
    assert lite0.categories[resolve_target(lite0, "uniform")] == "military uniform"  # the only label containing it


def test_bad_targets_say_what_would_work(lite0):
    with pytest.raises(TargetError, match=r"0\.\.999"):
        resolve_target(lite0, 1000)
    with pytest.raises(TargetError, match=r"0\.\.999"):
        resolve_target(lite0, -1)
    with pytest.raises(TargetError, match="military uniform \\(652\\)"):
        resolve_target(lite0, "militery unifrom")
    with pytest.raises(TargetError, match="matches .* classes: .*terrier"):
        resolve_target(lite0, "terrier")
    with pytest.raises(TargetError):
        resolve_target(lite0, "")


def test_wrong_layer_lists_valid_names(lite0, grace_hopper):
    image = Image.open(grace_hopper).convert("RGB")
    with pytest.raises(LayerError) as info:
        explain(lite0, image, layer="blocks.9")
    message = str(info.value)
    assert "blocks.6" in message and "bn2" in message and "\n" not in message
    with pytest.raises(LayerError, match="1x1"):
        explain(lite0, image, layer="global_pool.pool")
    with pytest.raises(LayerError, match="2-D"):
        explain(lite0, image, layer="classifier")


def test_unknown_method_and_transformers():
    loaded = wrap(TinyNet(), 16, ["a", "b", "c", "d"])
    with pytest.raises(BackboneError, match="gradcam, gradcam\\+\\+"):
        explain(loaded, tiny_image(), method="lime")
    assert explain(loaded, tiny_image(), method="Grad-CAM").method == "gradcam"
    vit = LoadedModel(
        name="vit_b_16", entry=get_entry("vit_b_16"), model=TinyNet(), preprocessing=loaded.preprocessing,
        categories=loaded.categories, weights="none",
    )
    with pytest.raises(LayerError, match="transformer"):
        explain(vit, tiny_image())
    assert explain(vit, tiny_image(), method="saliency").layer is None


def test_explain_models_and_progress(lite0, grace_hopper):
    image = Image.open(grace_hopper).convert("RGB").resize((100, 117))
    seen = []
    out = explain_models([lite0, lite0], image, target="military uniform", progress=lambda d, t, m: seen.append((d, t)))
    assert [e.target.index for e in out] == [652, 652]
    assert seen == [(1, 2), (2, 2)]
    np.testing.assert_array_equal(out[0].heatmap, out[1].heatmap)


def test_to_dict_has_the_cli_fields(lite0, grace_hopper):
    exp = explain(lite0, Image.open(grace_hopper).convert("RGB"))
    d = exp.to_dict()
    assert set(d) == {"model", "method", "layer", "target", "shape", "peak"}
    assert set(d["target"]) == {"index", "label", "prob"}
    assert d["shape"] == [600, 512] and d["layer"] == "bn2" and d["model"] == "efficientnet_lite0"
    assert exp.heatmap[d["peak"][0], d["peak"][1]] == exp.heatmap.max()
