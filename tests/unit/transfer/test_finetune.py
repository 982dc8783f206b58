"""Fine-tuning on a tiny generated dataset of non-ImageNet classes (coloured shapes), with untrained ResNet-18s
at small inputs: the loss falls, the checkpoint works in predict and viz cam with the user's class names, the log
reads on the Training runs page, and cancel / divergence / bad input end in one line keeping what is good."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from backbones.data.datasets import read_dataset
from backbones.data.logs import local_runs, read_log
from backbones.errors import BackboneError, CheckpointError, DatasetError
from backbones.transfer.finetune import TrainingDivergedError, finetune
from backbones.zoo.models import load_model
from tests.unit.transfer.shapes import CLASSES, write_shapes


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return write_shapes(tmp_path_factory.mktemp("data") / "shapes")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """6 images a class at 32 px: enough for the splits, cheap for end-to-end training."""
    return write_shapes(tmp_path_factory.mktemp("small") / "shapes", per_class=6, size=32)


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def head_run(shapes, runs_root):
    records = []
    result = finetune(shapes, "resnet18", weights="none", stage="head", epochs=8, lr=3e-3, batch_size=8,
                      input_size=64, device="cpu", out_dir=runs_root / "head-run",
                      progress=lambda done, total, rec: records.append((done, total, rec)))
    return result, records


def test_head_lowers_the_loss_and_reports_per_epoch(head_run):
    result, records = head_run
    losses = [r.loss for r in result.history]
    assert losses[-1] < losses[0]
    assert [(d, t) for d, t, _ in records] == [(i, 8) for i in range(1, len(records) + 1)]
    assert result.classes == CLASSES and result.splits == {"train": 24, "val": 6, "test": 6}
    assert result.stopped in ("completed", "early-stopped") and result.epochs_run == len(records)
    assert result.best_val_acc == max(r.val_acc for r in result.history)
    assert 0.0 <= result.test_acc <= 1.0
    d = result.to_dict()
    assert json.loads((Path(result.log).parent / "run.json").read_text()) == json.loads(json.dumps(d))


def test_checkpoint_predicts_and_explains_with_the_users_classes(head_run, shapes, capsys):
    from backbones.cli.runner import main
    from viz.cli import main as viz_main

    result, _ = head_run
    loaded = load_model(None, checkpoint=result.checkpoint)
    assert loaded.categories == CLASSES and loaded.preprocessing.crop_size == 64
    img = next((shapes / "green_triangle").iterdir())
    assert main(["predict", str(img), "--checkpoint", result.checkpoint, "--topk", "3", "--json", "--device", "cpu"]) == 0
    out = json.dumps(json.loads(capsys.readouterr().out))
    assert all(c in out for c in CLASSES) and "tench" not in out
    heat = img.parent.parent.parent / "heat.npy"
    assert viz_main(["cam", str(img), "--checkpoint", result.checkpoint, "--target", "green_triangle",
                     "--npy", str(heat), "--out", str(heat.with_suffix(".png")), "--device", "cpu"]) == 0
    assert heat.is_file()
    # Evaluate matches the dataset's folders to the checkpoint's own class names: nothing is excluded.
    from backbones.data.evaluation import evaluate_dataset

    ev = evaluate_dataset(loaded, read_dataset(shapes), batch_size=12, workers=0)
    assert ev.n == 36 and ev.excluded == 0


def test_the_log_is_the_notes_format_and_reads_on_the_training_page(head_run, runs_root):
    result, _ = head_run
    lines = [ln for ln in open(result.log, encoding="utf-8").read().splitlines() if ln.startswith("epoch")]
    first = result.history[0]
    assert lines[0] == (f"epoch 1, loss {first.loss:.4f}, train accuracy {first.train_acc:.3f}, "
                        f"test accuracy {first.val_acc:.3f}, use time {first.time_s:.3f}")
    for path in (result.log, result.csv):
        (run,) = read_log(path)
        assert [e.epoch for e in run.epochs] == list(range(1, result.epochs_run + 1))
        assert [round(e.test_acc, 3) for e in run.epochs] == [round(r.val_acc, 3) for r in result.history]
        assert math.isclose(run.epochs[-1].loss, result.history[-1].loss, rel_tol=1e-3)
    runs, problems = local_runs(runs_root)
    assert not problems and "head-run" in [r.name for r in runs]


def test_last_stage_trains_layer4_and_keeps_frozen_batchnorm(small, tmp_path):
    base = load_model("resnet18", weights="none")
    before = {k: v.clone() for k, v in base.model.state_dict().items()}
    result = finetune(small, base, stage="last-stage", epochs=1, batch_size=4, input_size=32, device="cpu",
                      out_dir=tmp_path / "last")
    assert [r.stage for r in result.history] == ["head", "last-stage"]
    assert [r.lr for r in result.history] == [1e-3, 1e-4]  # a tenth of the head's learning rate
    # The caller's model is untouched (the fine-tune works on a copy).
    assert all(torch.equal(before[k], v) for k, v in base.model.state_dict().items())
    # Whatever stage the best weights came from, the frozen parts equal the start, BatchNorm statistics too.
    tuned = load_file(result.checkpoint)
    for key in ("conv1.weight", "bn1.running_mean", "bn1.running_var", "layer3.1.bn2.running_mean"):
        assert torch.equal(tuned[key], before[key]), key
    assert tuned["fc.weight"].shape == (3, 512)
    runs = read_log(result.log, name="r")
    assert [r.name for r in runs] == ["r (head)", "r (last-stage)"] and [len(r.epochs) for r in runs] == [1, 1]


def test_cancel_after_the_first_epoch_keeps_its_checkpoint(small, tmp_path):
    seen = []
    result = finetune(small, "resnet18", weights="none", epochs=5, batch_size=8, input_size=32, device="cpu",
                      out_dir=tmp_path / "c", progress=lambda d, t, r: seen.append(r), should_stop=lambda: len(seen) >= 1)
    assert result.stopped == "cancelled" and result.epochs_run == 1 and result.best_epoch == 1
    assert load_model(None, checkpoint=result.checkpoint).categories == CLASSES
    assert "cancelled" in result.message


def test_a_diverging_run_stops_in_one_line_and_keeps_the_last_good_checkpoint(small, tmp_path):
    # One step per epoch (the batch holds all the training images): epoch 1 ends with finite weights, the
    # decoupled weight decay at lr 1e30 then overflows them in epoch 2.
    with pytest.raises(TrainingDivergedError) as err:
        finetune(small, "resnet18", weights="none", epochs=5, lr=1e30, batch_size=32, input_size=32, device="cpu",
                 out_dir=tmp_path / "nan")
    message = str(err.value)
    assert "\n" not in message and "diverged" in message and "lower learning rate" in message
    result = err.value.result
    assert result.stopped == "diverged" and result.best_epoch == 1
    state = load_file(result.checkpoint)
    assert all(torch.isfinite(v.float()).all() for v in state.values())
    assert load_model(None, checkpoint=result.checkpoint).num_classes == 3


@pytest.mark.parametrize("case", ["single class", "too few", "stage", "epochs", "wrong head", "other architecture"])
def test_bad_input_gets_one_line(case, small, tmp_path):
    kwargs = dict(weights="none", epochs=1, input_size=32, device="cpu", out_dir=tmp_path / "x")
    data = small
    if case == "single class":
        data = write_shapes(tmp_path / "one", per_class=4)
        for name in CLASSES[1:]:
            for f in (data / name).iterdir():
                f.unlink()
            (data / name).rmdir()
        match = "one class"
    elif case == "too few":
        data = write_shapes(tmp_path / "few", per_class=4)
        for f in list((data / CLASSES[0]).iterdir())[2:]:
            f.unlink()
        match = "at least 3 per class"
    elif case == "stage":
        kwargs["stage"] = "all"
        match = "stage must be one of"
    elif case == "epochs":
        kwargs["epochs"] = 0
        match = "epochs must be at least 1"
    elif case == "other architecture":
        from backbones.zoo.architectures import build_architecture

        ckpt = tmp_path / "r18.pth"
        torch.save(build_architecture("resnet18").state_dict(), ckpt)
        kwargs.update(checkpoint=ckpt)
        match = "r18.pth does not fit this architecture"
    else:
        from torch import nn

        from backbones.transfer.export import save_checkpoint
        from backbones.zoo.architectures import build_architecture

        m = build_architecture("resnet18")
        m.fc = nn.Linear(512, 3)
        ckpt = save_checkpoint(m, CLASSES, tmp_path / "ck", arch="resnet18", weights=None)
        kwargs.update(checkpoint=ckpt)
        data, match = small, "saved from resnet18, not resnet34"
    model = "resnet34" if case in ("wrong head", "other architecture") else "resnet18"
    with pytest.raises((BackboneError, DatasetError, CheckpointError), match=match) as err:
        finetune(data, model, **kwargs)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "x" / "model.safetensors").exists()


def test_cli_json_is_the_result(small, tmp_path, capsys):
    from backbones.cli.runner import main

    out = tmp_path / "cli"
    assert main(["finetune", str(small), "--model", "resnet18", "--weights", "none", "--epochs", "2",
                 "--input-size", "32", "--batch-size", "16", "--out", str(out), "--device", "cpu", "--json"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc == json.loads((out / "run.json").read_text())
    assert {"model", "stage", "classes", "epochs_run", "best_epoch", "best_val_acc", "test_acc", "checkpoint", "log",
            "csv", "stopped"} <= set(doc)
    assert doc["model"] == "resnet18" and doc["classes"] == list(CLASSES)
    progress = [ln for ln in captured.err.splitlines() if ln.startswith("[")]
    assert len(progress) == doc["epochs_run"] and progress[-1].startswith(f"[{doc['epochs_run']}/2] head: epoch")
    with pytest.raises(SystemExit) as exit_:
        main(["finetune", str(small), "--model", "resnet18", "--optimizer", "lion"])
    assert exit_.value.code == 2
    assert main(["finetune", str(small), "--model", "resnet18", "--weights", "none", "--epochs", "-1"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == "error: epochs must be at least 1, got -1"


def test_cancel_before_the_first_epoch_ends_leaves_no_run_folder(small, tmp_path):
    from backbones.errors import CancelledError

    extracted = []
    with pytest.raises(CancelledError, match="nothing was saved") as err:
        finetune(small, "resnet18", weights="none", epochs=3, input_size=32, device="cpu", out_dir=tmp_path / "gone",
                 extract_progress=lambda done, total, _m: extracted.append(done >= total),
                 should_stop=lambda: bool(extracted and extracted[-1]))
    assert "\n" not in str(err.value) and not (tmp_path / "gone").exists()


def test_sgd_with_the_cosine_schedule_lowers_the_loss_from_the_cached_features(head_run, shapes, tmp_path):
    result = finetune(shapes, "resnet18", weights="none", optimizer="sgd", epochs=4, batch_size=8, input_size=64,
                      device="cpu", out_dir=tmp_path / "sgd")
    lrs = [r.lr for r in result.history]
    assert lrs[0] == 1e-2 and lrs == sorted(lrs, reverse=True)  # SGD's default, annealed
    assert result.history[-1].loss < result.history[0].loss


def test_an_interrupted_head_phase_still_saves_its_best_head(small, tmp_path):
    class Interrupted(Exception):
        """What a dashboard rerun raises inside a progress callback."""

    def progress(done, total, record):
        if done == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        finetune(small, "resnet18", weights="none", epochs=5, batch_size=8, input_size=32, device="cpu",
                 out_dir=tmp_path / "i", progress=progress)
    assert load_model(None, checkpoint=tmp_path / "i" / "model.safetensors").categories == CLASSES
