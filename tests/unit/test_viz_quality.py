"""viz.quality: deletion / insertion on a hand-built model with known answers, the randomisation check, guided backprop, the slide pack."""

from __future__ import annotations

import hashlib
import io
import json
import math
import shlex
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from backbones.errors import BackboneError
from tests.unit.viz_nets import TinyNet, tiny_image, wrap
from viz.cam import explain
from viz.cli import main
from viz.layers import private_view
from viz.methods.gradients import make_baseline
from viz.methods.registry import METHOD_CLASSES
from viz.pack import PROJECTOR_WIDTH, build_pack, render_explanations_figure
from viz.quality import (
    area_under_curve,
    list_cascade_blocks,
    make_random_map,
    randomize_block,
    rank_average,
    run_sanity_check,
    score_maps,
    spearman,
    ssim,
)


def checksum(model: nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


# ---------------------------------------------------------------------------------------------
# Deletion / insertion on a model that looks only at the top-left quadrant


class QuadrantNet(nn.Module):
    """Logits ``(10 * mean(top-left quadrant) - 5, 0)``: class 0's probability depends on that quadrant only."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        h, w = x.shape[2] // 2, x.shape[3] // 2
        z = 10 * x[:, :, :h, :w].mean(dim=(1, 2, 3)) - 5
        return torch.stack([z, torch.zeros_like(z)], dim=1)


def quadrant_case():
    x = torch.zeros(1, 3, 16, 16)
    x[:, :, :8, :8] = 1.0
    quadrant = np.zeros((16, 16), dtype=np.float32)
    quadrant[:8, :8] = 1.0
    return x, quadrant


def test_a_map_of_the_quadrant_gets_the_known_curves_and_beats_its_inverse_and_a_random_map():
    x, quadrant = quadrant_case()
    model = QuadrantNet()
    maps = [quadrant, 1 - quadrant, make_random_map((4, 4), (16, 16), seed=0)]
    (good, inverse, random), passes = score_maps(model, x, maps, 0, steps=4, batch_size=8)

    # By hand: 64 of 256 pixels per step; the quadrant map deletes the whole quadrant in step 1
    # (logit -5 from then on) and inserts it in step 1 (logit +5 from then on).
    blurred = make_baseline(x, "blur")[0, :, :8, :8].mean().item()
    np.testing.assert_allclose(good.deletion_curve, [sigmoid(5)] + [sigmoid(-5)] * 4, rtol=1e-6)
    np.testing.assert_allclose(good.insertion_curve, [sigmoid(10 * blurred - 5)] + [sigmoid(5)] * 4, rtol=1e-5)
    assert good.deletion_auc == pytest.approx((sigmoid(5) / 2 + 3 * sigmoid(-5) + sigmoid(-5) / 2) / 4)
    # The inverse map touches the quadrant last: deletion stays high until step 4.
    np.testing.assert_allclose(inverse.deletion_curve, [sigmoid(5)] * 4 + [sigmoid(-5)], rtol=1e-6)

    assert good.deletion_auc < random.deletion_auc < inverse.deletion_auc
    assert good.insertion_auc > random.insertion_auc > inverse.insertion_auc
    # 3 shared images + 3 maps x 2 curves x 3 inner steps = 21 images, 8 per pass.
    assert passes == 3 == model.calls


def test_scores_are_seeded_and_checked():
    x, quadrant = quadrant_case()
    flat = np.ones((16, 16), dtype=np.float32)  # every pixel tied: the order comes from the seed
    a, _ = score_maps(QuadrantNet(), x, [flat], 0, steps=8, seed=1)
    b, _ = score_maps(QuadrantNet(), x, [flat], 0, steps=8, seed=1)
    c, _ = score_maps(QuadrantNet(), x, [flat], 0, steps=8, seed=2)
    assert a == b and a != c
    with pytest.raises(BackboneError, match="must cover the input"):
        score_maps(QuadrantNet(), x, [np.ones((8, 8))], 0)
    with pytest.raises(BackboneError, match="steps"):
        score_maps(QuadrantNet(), x, [quadrant], 0, steps=0)
    assert area_under_curve([1.0, 0.0]) == 0.5 and area_under_curve([1.0, 1.0, 1.0]) == 1.0


def test_the_random_map_is_as_smooth_as_the_method_map():
    smooth = make_random_map((7, 7), (224, 224), seed=3)
    assert smooth.shape == (224, 224) and 0 <= smooth.min() and smooth.max() <= 1
    np.testing.assert_array_equal(smooth, make_random_map((7, 7), (224, 224), seed=3))
    assert np.abs(np.diff(smooth, axis=1)).max() < 0.1  # bilinear between 7x7 cells: no pixel noise
    assert np.abs(np.diff(make_random_map((224, 224), (224, 224)), axis=1)).mean() > 0.2
    assert METHOD_CLASSES["gradcam"].native_shape((7, 7), (224, 224)) == (7, 7)
    assert METHOD_CLASSES["occlusion"].native_shape((224, 224), (224, 224)) == (13, 13)  # window 32, stride 16


def test_spearman_and_ssim():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, (12, 12)).astype(float)  # many ties
    b = a + rng.normal(0, 2, a.shape)
    np.testing.assert_allclose(rank_average(a), scipy_stats.rankdata(a.ravel()))
    assert spearman(a, b) == pytest.approx(scipy_stats.spearmanr(a.ravel(), b.ravel())[0])
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert math.isnan(spearman(a, np.zeros_like(a)))
    m = rng.random((32, 32))
    assert ssim(m, m) == pytest.approx(1.0)
    assert ssim(m, rng.random((32, 32))) < 0.2


# ---------------------------------------------------------------------------------------------
# Cascading randomisation


def test_cascade_blocks_and_randomising_a_private_view_leaves_the_model_alone():
    loaded = wrap(TinyNet(), 16, ["a", "b", "c", "d"])
    assert list_cascade_blocks(loaded) == ["fc", "features.3", "features.1", "features.0"]
    before = checksum(loaded.model)
    view = private_view(loaded.model)
    randomize_block(view, "features.1", seed=0)  # BatchNorm: identity statistics
    assert checksum(loaded.model) == before
    assert torch.equal(view.features[1].running_var, torch.ones(6))
    assert not torch.equal(loaded.model.features[1].running_var, torch.ones(6))
    check = run_sanity_check(loaded, tiny_image(), method="gradcam")
    assert [s.randomized for s in check.steps] == ["fc", "features.3", "features.1", "features.0"]
    assert checksum(loaded.model) == before


def test_grad_cam_fails_to_survive_randomising_the_real_classifier(lite0, grace_hopper):
    before = checksum(lite0.model)
    check = run_sanity_check(lite0, grace_hopper, method="gradcam", max_steps=1)
    assert [s.randomized for s in check.steps] == ["classifier"]
    assert check.steps[0].spearman < 0.8  # measured 0.58: far from the 1.0 of an unchanged map
    assert check.layer == "bn2" and check.original.shape == check.steps[0].heatmap.shape == (224, 224)
    assert checksum(lite0.model) == before


# ---------------------------------------------------------------------------------------------
# Guided backpropagation


class SiLUNet(TinyNet):
    def __init__(self):
        super().__init__()
        self.features[2] = nn.SiLU()


def test_guided_backprop_refuses_a_silu_network_and_runs_on_relu6():
    with pytest.raises(BackboneError, match=r"ReLU/ReLU6 network.*SiLU \(at features\.2\)"):
        explain(wrap(SiLUNet(), 16, "abcd"), tiny_image(), method="guided-backprop")
    loaded = wrap(TinyNet(), 16, "abcd")
    exp = explain(loaded, tiny_image(), method="gbp")
    assert exp.method == "guided-backprop" and exp.heatmap.shape == (16, 16) and exp.scale > 0
    assert all(type(m) is not nn.ReLU or type(m).__name__ == "ReLU" for m in loaded.model.modules())
    assert type(loaded.model.features[5]) is nn.ReLU6


# ---------------------------------------------------------------------------------------------
# The CLI and the slide pack


def test_faithfulness_and_sanity_cli_json(capsys, grace_hopper):
    assert main(["faithfulness", str(grace_hopper), "--steps", "8", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert list(doc) == ["model", "method", "target", "steps", "deletion_auc", "insertion_auc", "random_deletion_auc",
                         "random_insertion_auc", "deletion_curve", "insertion_curve", "forward_passes"]
    assert doc["steps"] == 8 and len(doc["deletion_curve"]) == 9 and doc["forward_passes"] == 1  # 3 + 2 x 2 x 7 images
    assert doc["deletion_auc"] < doc["random_deletion_auc"] and doc["insertion_auc"] > doc["random_insertion_auc"]
    assert main(["sanity", str(grace_hopper), "--max-steps", "1", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert list(doc) == ["model", "method", "steps"] and list(doc["steps"][0]) == ["randomized", "spearman", "ssim"]
    assert main(["faithfulness", str(grace_hopper), "--steps", "0"]) == 2
    assert "error: steps must be in 1..1024" in capsys.readouterr().err


def _png_width(data: bytes) -> int:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img.width


def test_build_pack_takes_figures_tables_settings_and_commands():
    import pandas as pd
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 3))
    fig.add_subplot().plot([0, 1], [1, 0])
    small = Image.new("RGB", (64, 32), "red")
    buf = io.BytesIO()
    small.save(buf, format="PNG")
    data = build_pack(
        {"curve": fig, "pil": small, "bytes": buf.getvalue(), "explain": render_explanations_figure(tiny_image(), [])},
        {"frame": pd.DataFrame({"a": [1, 2]}), "rows": [{"model": "m", "auc": 0.5}]},
        {"models": ["m"]},
        [["python", "-m", "viz", "methods"]],
    )
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = zf.namelist()
        assert names == ["figures/curve.png", "figures/pil.png", "figures/bytes.png", "figures/explain.png",
                         "tables/frame.csv", "tables/rows.csv", "settings.json", "commands.sh"]
        for n in names[:4]:
            assert _png_width(zf.read(n)) == PROJECTOR_WIDTH
        assert zf.read("tables/rows.csv").decode() == "model,auc\nm,0.5\n"
        settings = json.loads(zf.read("settings.json"))
        assert settings["models"] == ["m"] and "torch" in settings["versions"]
        assert zf.read("commands.sh").decode().startswith("#!/bin/sh\n")
    with pytest.raises(BackboneError, match="not a readable image"):
        build_pack({"x": b"not a png"}, {}, {}, [])


def test_pack_cli_writes_a_zip_whose_commands_run(capsys, tmp_path, grace_hopper, monkeypatch):
    out = tmp_path / "pack.zip"
    assert main(["pack", str(grace_hopper), "--models", "efficientnet_lite0", "--methods", "gradcam", "saliency",
                 "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["out"] == str(out)
    with zipfile.ZipFile(out) as zf:
        assert _png_width(zf.read("figures/efficientnet_lite0.png")) == PROJECTOR_WIDTH
        settings = json.loads(zf.read("settings.json"))
        assert settings["models"] == ["efficientnet_lite0"] and settings["layer"] == {"efficientnet_lite0": "bn2"}
        assert settings["device"] == {"efficientnet_lite0": "cpu"} and settings["weights"] == {"efficientnet_lite0": "bundled"}
        predictions = zf.read("tables/predictions.csv").decode().splitlines()
        assert predictions[0] == "model,rank,index,label,prob" and len(predictions) == 6
        commands = [c for c in zf.read("commands.sh").decode().splitlines() if c.startswith("python -m viz")]
    assert commands[0].startswith("python -m viz pack ") and len(commands) == 3
    argv = shlex.split(commands[1])[3:]  # the Grad-CAM panel
    assert argv[0] == "cam" and "--target" in argv
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 0
    assert Image.open(tmp_path / "efficientnet_lite0_gradcam.png").size == (512, 600)


# ---------------------------------------------------------------------------------------------
# Per-visitor work stops with the visitor and takes turns through one fair queue (issue 21, finding 8)

FAST_METHODS = ("gradcam", "saliency", "gradcam++")


def _flips_after(units: list):
    """A should_stop that turns true once one unit of work has reported progress."""
    return lambda: len(units) >= 1


def test_ranking_stops_after_the_unit_in_which_the_visitor_left():
    from backbones.errors import CancelledError
    from viz.quality import rank_methods

    loaded = wrap(TinyNet(), 16, ["a", "b", "c", "d"])
    units: list = []
    with pytest.raises(CancelledError):
        rank_methods([loaded, loaded], tiny_image(), methods=FAST_METHODS, steps=4, batch_size=4,
                     progress=lambda done, total, msg: units.append(msg), should_stop=_flips_after(units))
    assert units == ["faithfulness of gradcam on tiny"]  # 1 of 6 units ran
    full = rank_methods([loaded], tiny_image(), methods=FAST_METHODS, steps=4, batch_size=4)
    assert [f.method for f in full] == list(FAST_METHODS)
    assert len({f.target.index for f in full}) == 1  # one class for every method, as before


def test_sanity_check_stops_after_the_step_in_which_the_visitor_left():
    from backbones.errors import CancelledError

    loaded = wrap(TinyNet(), 16, ["a", "b", "c", "d"])
    steps: list = []
    with pytest.raises(CancelledError):
        run_sanity_check(loaded, tiny_image(), method="gradcam",
                         progress=lambda done, total, msg: steps.append(msg), should_stop=_flips_after(steps))
    assert steps == ["randomised fc"]  # 1 of 4 steps


def test_a_visitor_who_leaves_while_waiting_gives_up_the_place_in_the_queue():
    import threading
    import time

    from backbones.errors import CancelledError
    from backbones.measure.common import FairLock
    from viz.quality import rank_methods

    queue, gone, outcome = FairLock(), threading.Event(), {}
    loaded = wrap(TinyNet(), 16, ["a", "b", "c", "d"])

    def visitor():
        try:
            rank_methods([loaded], tiny_image(), methods=FAST_METHODS, steps=4, batch_size=4,
                         should_stop=gone.is_set, queue=queue)
        except CancelledError as exc:
            outcome["error"] = exc

    with queue:  # someone else's long unit
        worker = threading.Thread(target=visitor)
        worker.start()
        while not queue._queue:  # noqa: SLF001 - waiting until the visitor is queued
            time.sleep(0.01)
        gone.set()
        worker.join(timeout=2)
        assert not worker.is_alive() and "error" in outcome
        assert not queue._queue  # noqa: SLF001 - its place is given up
    assert queue.acquire(blocking=False)
    queue.release()


def test_two_visitors_take_turns_unit_by_unit():
    import threading
    import time

    from backbones.measure.common import FairLock
    from viz.quality import rank_methods

    class RecordingQueue(FairLock):
        def acquire_unless(self, should_stop, **kwargs):
            granted = super().acquire_unless(should_stop, **kwargs)
            order.append(threading.current_thread().name)
            return granted

    queue, order = RecordingQueue(), []
    loaded = wrap(TinyNet(), 16, ["a", "b", "c", "d"])

    def visitor():
        rank_methods([loaded], tiny_image(), methods=FAST_METHODS, steps=4, batch_size=4, queue=queue)

    threads = [threading.Thread(target=visitor, name=who) for who in "AB"]
    with queue:  # both arrive while the queue is busy, A first
        for i, thread in enumerate(threads, start=1):
            thread.start()
            while len(queue._queue) < i:  # noqa: SLF001 - A queued before B starts
                time.sleep(0.01)
    for thread in threads:
        thread.join(timeout=30)
    assert order == ["A", "B"] * 3  # first come, first served, one unit each in turn
