"""viz.cam: the entry points on real photos — pointing, top-k, several methods and models, threads, layers."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from backbones.errors import LayerError
from tests.unit.viz_nets import TinyNet, assert_untouched, model_state, tiny_image, wrap
from viz.cam import METHODS, explain, explain_methods, explain_models, explain_tensor, explain_topk


def test_works_inside_a_callers_inference_mode():
    loaded = wrap(TinyNet(), 16, ["a", "b", "c", "d"])
    ref = explain(loaded, tiny_image(), method="saliency")
    with torch.inference_mode():
        x = loaded.preprocessing(tiny_image()).unsqueeze(0)
        inside = explain_tensor(loaded, x, method="saliency")
        top = explain_topk(loaded, tiny_image(), k=2)
    np.testing.assert_array_equal(inside.heatmap_crop, ref.heatmap_crop)
    assert top[0].target.index == ref.target.index


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
# Layers, several models, JSON fields


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
