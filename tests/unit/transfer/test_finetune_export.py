"""save_checkpoint: a file that loads by its path alone, with the user's class names, and is listed as theirs."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from torch import nn

from backbones.errors import CheckpointError
from backbones.transfer.export import forget_checkpoint, list_saved_checkpoints, save_checkpoint
from backbones.zoo.architectures import build_architecture
from backbones.zoo.models import load_model

CLASSES = ["red disc", "blue square", "green bar"]


@pytest.fixture(scope="module")
def resnet18_3():
    torch.manual_seed(0)
    model = build_architecture("resnet18")
    model.fc = nn.Linear(512, len(CLASSES))
    return model


def test_loads_by_path_alone_with_names_and_preprocessing(tmp_path, resnet18_3):
    from backbones.inference.preprocessing import Preprocessing

    prep = Preprocessing(crop_size=64, resize_size=72)
    path = save_checkpoint(resnet18_3, CLASSES, tmp_path / "run", arch="resnet18", weights=None,
                           meta={"preprocessing": prep, "stage": "head"})
    assert path.name == "model.safetensors"
    assert json.loads((path.parent / "classes.json").read_text()) == CLASSES
    loaded = load_model(None, checkpoint=path)
    assert loaded.entry.name == "resnet18" and loaded.categories == tuple(CLASSES)
    assert loaded.preprocessing == prep and loaded.weights == "checkpoint"
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), resnet18_3.eval()(x))
    # Named explicitly it loads too; another architecture is refused in one line.
    assert load_model("resnet18", checkpoint=path).num_classes == 3
    with pytest.raises(CheckpointError, match="was saved from resnet18, not resnet34") as err:
        load_model("resnet34", checkpoint=path)
    assert "\n" not in str(err.value)


def test_listed_as_the_users_own_until_the_file_goes(tmp_path, resnet18_3):
    path = save_checkpoint(resnet18_3, CLASSES, tmp_path / "shapes-run", arch="resnet18", weights="IMAGENET1K_V1")
    saved = {s.path: s for s in list_saved_checkpoints()}
    entry = saved[str(path.resolve())]
    assert (entry.label, entry.arch, entry.classes, entry.weights) == ("shapes-run", "resnet18", tuple(CLASSES), "IMAGENET1K_V1")
    assert len(entry.digest) == 64
    forget_checkpoint(path)
    assert str(path.resolve()) not in {s.path for s in list_saved_checkpoints()}
    path = save_checkpoint(resnet18_3, CLASSES, tmp_path / "gone", arch="resnet18", weights=None)
    path.unlink()
    assert str(path.resolve()) not in {s.path for s in list_saved_checkpoints()}


def test_a_head_that_does_not_fit_is_not_saved(tmp_path, resnet18_3):
    with pytest.raises(CheckpointError, match="2 class names") as err:
        save_checkpoint(resnet18_3, CLASSES[:2], tmp_path / "a", arch="resnet18", weights=None)
    assert "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match="does not fit"):
        save_checkpoint(resnet18_3, CLASSES, tmp_path / "b", arch="resnet34", weights=None)
    with pytest.raises(CheckpointError, match="repeat"):
        save_checkpoint(resnet18_3, ["a", "a", "b"], tmp_path / "c", arch="resnet18", weights=None)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_predict_and_cam_take_the_checkpoint_path_only(tmp_path, resnet18_3, capsys):
    from backbones.cli.runner import main
    from viz.cli import main as viz_main

    path = save_checkpoint(resnet18_3, CLASSES, tmp_path / "cli", arch="resnet18", weights=None)
    img = tmp_path / "x.png"
    Image.new("RGB", (80, 64), (200, 30, 30)).save(img)
    assert main(["predict", str(img), "--checkpoint", str(path), "--topk", "3", "--json", "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out)
    text = json.dumps(out)
    assert all(name in text for name in CLASSES)
    heat = tmp_path / "heat.npy"
    assert viz_main(["cam", str(img), "--checkpoint", str(path), "--target", "green bar", "--npy", str(heat),
                     "--out", str(tmp_path / "o.png"), "--device", "cpu"]) == 0
    assert heat.is_file()
    # The wrong architecture named on the command line: one line, exit 2.
    capsys.readouterr()
    assert main(["predict", str(img), "--model", "resnet50", "--checkpoint", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "saved from resnet18" in err and "\n" not in err
