"""viz.methods: Grad-CAM values worked out by hand, every registered method used directly, a shared model left untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from backbones.errors import BackboneError, CancelledError
from backbones.zoo.catalog import get_entry
from backbones.zoo.models import LoadedModel, load_model
from tests.unit.viz_nets import CONV_W, FC_W, GapNet, TinyNet, assert_untouched, model_state, tiny_image, wrap
from viz.cam import METHODS, TargetError, explain, explain_tensor, explain_topk
from viz.layers import default_layer, private_view
from viz.methods.base import Attribution
from viz.methods.gradcam import LayerCAM
from viz.methods.registry import LAYER_METHODS, METHOD_CLASSES, get_method_class

# ---------------------------------------------------------------------------------------------
# Grad-CAM against a hand computation


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
# The registry: one class per method, captum style


def test_every_registered_method_is_used_directly_captum_style():
    loaded = wrap(TinyNet(), 16, ["a", "b", "c", "d"])
    x = loaded.preprocessing(tiny_image()).unsqueeze(0)
    assert list(METHOD_CLASSES) == list(METHODS)
    for name, cls in METHOD_CLASSES.items():
        assert cls.info is METHODS[name] and get_method_class(name) is cls
        if cls.refusal(loaded.model) is not None:
            assert name == "rollout"  # a ViT method: test_viz_transformers runs it
            continue
        view = private_view(loaded.model)
        layer = "features.4" if name in LAYER_METHODS else None
        options = {"n_steps": 4} if "n_steps" in cls.options else {}
        att = cls(view, view.get_submodule(layer) if layer else None, **options).attribute(torch.cat([x, x]), target=1)
        assert isinstance(att, Attribution) and att.index == 1
        assert att.heat.shape == (2, 16, 16) and att.raw.shape[0] == 2 and bool((att.heat >= 0).all())
        ref = explain_tensor(loaded, x, method=name, layer=layer, target=1, ig_steps=4)
        np.testing.assert_allclose(att.raw[0].numpy(), ref.raw, rtol=1e-5, atol=1e-6)
    with pytest.raises(BackboneError, match="needs a layer"):
        METHOD_CLASSES["gradcam"](loaded.model)


def test_the_grad_cam_variants_differ_only_in_their_channel_weights():
    for name in ("gradcam", "gradcam++"):
        cls = METHOD_CLASSES[name]
        assert issubclass(cls, LayerCAM)
        assert {k for k in vars(cls) if not k.startswith("__")} == {"info", "channel_weights"}


def test_topk_of_each_grad_cam_variant_matches_single_explanations():
    loaded = wrap(TinyNet(), 16, ["a", "b", "c", "d"])
    seen = []
    for method in ("gradcam", "gradcam++", "saliency"):
        seen.clear()
        top = explain_topk(loaded, tiny_image(), method=method, k=3, progress=lambda d, t, m: seen.append((d, t, m)))
        assert [(d, t) for d, t, _ in seen] == [(1, 3), (2, 3), (3, 3)]
        assert [m for _, _, m in seen] == [f"{method} for {e.target.label}" for e in top]
        for e in top:
            single = explain(loaded, tiny_image(), method=method, target=e.target.index)
            np.testing.assert_allclose(single.raw, e.raw, rtol=1e-6, atol=1e-7)
            assert single.target == e.target


# ---------------------------------------------------------------------------------------------
# The shared model is never changed


ALL_METHODS = [m for m in METHODS if m != "rollout"]  # rollout is for ViTs: test_viz_transformers


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


def test_unknown_method_and_transformers():
    loaded = wrap(TinyNet(), 16, ["a", "b", "c", "d"])
    with pytest.raises(BackboneError, match="gradcam, gradcam\\+\\+"):
        explain(loaded, tiny_image(), method="lime")
    assert explain(loaded, tiny_image(), method="Grad-CAM").method == "gradcam"
    vit = LoadedModel(
        name="vit_b_16", entry=get_entry("vit_b_16"), model=TinyNet(), preprocessing=loaded.preprocessing,
        categories=loaded.categories, weights="none",
    )
    # Transformers are explained like any model now (test_viz_transformers); what decides is the network itself.
    assert explain(vit, tiny_image()).layer == default_layer(loaded)
    with pytest.raises(BackboneError, match="attention rollout needs a vision transformer"):
        explain(vit, tiny_image(), method="rollout")
    assert explain(vit, tiny_image(), method="saliency").layer is None
