"""A fine-tune's outputs show up without an upload: its checkpoint on the Models page and in the picker (used by
Predict with the user's class names), its log on the Training runs page."""

from __future__ import annotations

import torch
from PIL import Image

from tests.app.conftest import errors, no_exception, open_page

CLASSES = ["blue_square", "green_triangle", "red_disc"]


def _fine_tuned(tmp_path):
    """What a fine-tune leaves in the runs folder: a checkpoint (red_disc always wins) and its epoch log."""
    import torchvision

    from backbones.paths import runs_dir
    from backbones.transfer.export import save_checkpoint
    from backbones.transfer.runs import EpochRecord, RunFiles

    model = torchvision.models.mobilenet_v3_small(weights=None, num_classes=3)
    with torch.no_grad():
        model.classifier[-1].bias.copy_(torch.tensor([0.0, 0.0, 50.0]))
    run = runs_dir() / "20261204-120000-mobilenet_v3_small-shapes-head"
    save_checkpoint(model, CLASSES, run, arch="mobilenet_v3_small", weights=None, meta={"stage": "head"})
    files = RunFiles(run)
    files.heading("head")
    for epoch, (loss, acc) in enumerate([(1.1, 0.4), (0.7, 0.7), (0.4, 0.9)], start=1):
        files.epoch(EpochRecord("head", epoch, loss, acc, loss + 0.1, acc - 0.1, 1e-3, 0.5))
    return run.name


def test_a_fine_tune_is_listed_and_used_without_an_upload(app, tmp_path):
    label = _fine_tuned(tmp_path)
    open_page(app, "models")
    no_exception(app)
    text = " ".join(m.value for m in app.markdown)
    assert label in text.replace("\\", "") and "mobilenet_v3_small, 3 classes" in text
    option = f"custom:{label}"
    assert f"★ {label}" in app.sidebar.multiselect[0].options
    app.sidebar.multiselect[0].set_value([option])
    image = tmp_path / "red.png"
    Image.new("RGB", (64, 64), (220, 20, 20)).save(image)
    open_page(app, "predict")
    no_exception(app)
    assert not errors(app), errors(app)
    specs = [c.proto.spec for c in app.get("plotly_chart")]
    assert any("red_disc" in s for s in specs)

    open_page(app, "training")
    no_exception(app)
    assert app.toggle(key="train_local").value is True
    assert label in list(app.dataframe[0].value["name"])
    assert not app.toggle(key="train_seed").value  # the demo runs stay out when there are real ones
