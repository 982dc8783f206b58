"""summarize_model's inputs: input sizes, user errors, checkpoints with their own head, caching."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch import nn

from backbones.cli import main
from backbones.errors import BackboneError, LayerError, UnknownModelError
from backbones.summary import summarize_model


def test_input_size_override_changes_shapes_and_is_cached_separately():
    default = summarize_model("resnet18")
    assert summarize_model("resnet18") is default  # cached
    small = summarize_model("resnet18", input_size=(3, 160, 160))
    assert small is not default and small.input_size == (3, 160, 160)
    assert small.find("layer4").output_shape == (1, 512, 5, 5)
    assert small.total_params == default.total_params
    assert small.total_mult_adds < default.total_mult_adds
    assert small.find("avgpool").receptive_field == 435 + 4 * 32
    with pytest.raises(dataclasses.FrozenInstanceError):
        default.total_params = 1  # type: ignore[misc]


def test_bad_inputs_are_user_errors():
    with pytest.raises(UnknownModelError):
        summarize_model("resnet5O")
    with pytest.raises(BackboneError, match="cannot run on a 3x32x32 input"):
        summarize_model("alexnet", input_size=(3, 32, 32))
    with pytest.raises(BackboneError, match="out of range"):
        summarize_model("alexnet", input_size=(3, 0, 224))
    with pytest.raises(BackboneError, match="three integers"):
        summarize_model("alexnet", input_size=(224, 224))
    s = summarize_model("alexnet")
    with pytest.raises(LayerError, match="no layer .features.O.; did you mean features"):
        s.find("features.O")


def test_checkpoint_with_102_classes_summarises_with_its_own_head(tmp_path, capsys):
    from backbones.zoo.models import build_architecture, load_checkpoint

    model = build_architecture("resnet18")
    model.fc = nn.Linear(512, 102)
    path = tmp_path / "flowers.pth"
    torch.save(model.state_dict(), path)
    loaded = load_checkpoint("resnet18", path)
    s = summarize_model(loaded)
    assert s.model == "flowers" and s.architecture == "resnet18"
    fc = s.find("fc")
    assert fc.output_shape == (1, 102)
    assert fc.params == 512 * 102 + 102 == 52_326
    assert fc.derivation == "Linear 512->102: 102*512+102 = 52,326 params"
    assert s.total_params == 11_689_512 - 513_000 + 52_326
    assert summarize_model(loaded) is s  # cached per loaded model
    assert main(["summary", "resnet18", "--checkpoint", str(path), "--json", "--depth", "1"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["model"] == "flowers" and doc["layers"][-1]["output_shape"] == [1, 102]
    assert not loaded.model._forward_hooks and not loaded.model.fc._forward_pre_hooks
