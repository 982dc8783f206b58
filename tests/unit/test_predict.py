"""Prediction with the bundled real ImageNet weights, on real photos."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from backbones.inference.images import load_image
from backbones.inference.predict import class_probabilities, predict
from backbones.zoo.models import load_model


def labels(prediction):
    return [t.label for t in prediction.topk]


def test_real_photos_get_their_real_labels(lite0, grace_hopper, china_photo, flower_photo):
    images = [load_image(p) for p in (grace_hopper, china_photo, flower_photo)]
    results = predict(lite0, images, names=["grace", "china", "flower"], topk=5)  # one batch
    assert [r.image for r in results] == ["grace", "china", "flower"]
    assert "military uniform" in labels(results[0])
    assert labels(results[1])[0] == "palace"
    assert labels(results[2])[0] == "daisy"
    for r in results:
        probs = [t.prob for t in r.topk]
        assert probs == sorted(probs, reverse=True)
        assert [t.rank for t in r.topk] == [1, 2, 3, 4, 5]
        assert 0 < sum(probs) <= 1.0 + 1e-6


def test_batch_equals_one_by_one(lite0, grace_hopper, flower_photo):
    a, b = load_image(grace_hopper), load_image(flower_photo)
    together = class_probabilities(lite0, [a, b])
    alone = torch.cat([class_probabilities(lite0, [a]), class_probabilities(lite0, [b])])
    assert torch.allclose(together, alone, atol=1e-5)
    assert torch.allclose(together.sum(dim=1), torch.ones(2), atol=1e-5)


@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_every_bundled_model_recognises_the_palace(name, china_photo):
    # Several models on the same image; each has its own input size (240, 260) and preprocessing.
    # (Lite1/Lite2 call scikit-learn's daisy close-up "honeycomb" under every preprocessing we
    # tried, in timm's TF-padding and plain variants alike: a property of the weights, not of us.)
    loaded = load_model(name)
    assert loaded.preprocessing.crop_size == {"efficientnet_lite1": 240, "efficientnet_lite2": 260}[name]
    assert labels(predict(loaded, [load_image(china_photo)])[0])[0] == "palace"


def test_bundled_weights_consume_every_tensor():
    from backbones.zoo.bundled import bundled_weights_path, map_lite_state_dict
    from backbones.zoo.models import build_architecture

    for name in ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"):
        source = torch.load(bundled_weights_path(name), map_location="cpu", weights_only=True)
        model = build_architecture(name)
        mapped = map_lite_state_dict(source, model)
        real = [k for k in source if not k.endswith("num_batches_tracked")]
        assert len(mapped) == len(real)
        target = [k for k in model.state_dict() if not k.endswith("num_batches_tracked")]
        assert sorted(mapped) == sorted(target)


def test_untrained_model_predicts_but_says_so(grace_hopper, capsys):
    from backbones.cli import main

    assert main(["predict", str(grace_hopper), "--model", "squeezenet1_1", "--weights", "none"]) == 0
    assert "untrained" in capsys.readouterr().out


def test_missing_torchvision_weights_say_where_to_put_the_file(grace_hopper, capsys):
    from backbones.cli import main

    assert main(["predict", str(grace_hopper), "--model", "resnet50"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: resnet50: weights not on this machine and offline mode is on")  # conftest: offline
    assert "hub/checkpoints/resnet50-11ad3fa6.pth" in err
    assert "https://download.pytorch.org/models/resnet50-11ad3fa6.pth" in err
    assert "import-weights" in err and "\n" not in err


def test_cli_predict_json_on_the_real_photo(grace_hopper):
    # The acceptance command, as a user runs it.
    proc = subprocess.run(
        [sys.executable, "-m", "backbones", "predict", str(grace_hopper), "--model", "efficientnet_lite0", "--topk", "5", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert isinstance(doc, list) and len(doc) == 1
    item = doc[0]
    assert set(item) == {"image", "model", "topk"} and item["model"] == "efficientnet_lite0"
    assert [set(t) for t in item["topk"]] == [{"rank", "index", "label", "prob"}] * 5
    assert "military uniform" in [t["label"] for t in item["topk"]]


def test_cli_user_errors_are_one_line_exit_2(tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is not a photo")
    proc = subprocess.run(
        [sys.executable, "-m", "backbones", "predict", str(bad), "--model", "nosuchnet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr
