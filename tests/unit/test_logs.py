"""Training logs: the seed notes' own runs, CSV and TensorBoard logs, malformed input, the ``logs`` CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from backbones.data.logs import Epoch, Run, classify_metric, parse_text_log, read_log, read_logs, read_tensorboard
from backbones.data.logs.demo import DEMO_FOLDER
from backbones.errors import LogFormatError

DATA = Path(__file__).resolve().parents[1] / "data" / "logs"
SEED = DEMO_FOLDER / "seed_003_group_meeting.md"  # /work/shared/seeds/003_ca817109490b3cd2.txt, verbatim
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def seed_runs() -> dict[str, Run]:
    return {r.name: r for r in read_log(SEED)}


def _epoch(run: Run, n: int) -> Epoch:
    return next(e for e in run.epochs if e.epoch == n)


# --------------------------------------------------------------------------- the seed notes


def test_seed_notes_split_into_their_runs(seed_runs):
    assert list(seed_runs) == [
        "动物数据集",
        "Vgg19 / 初始结构",
        "NIN",
        "googLeNet / 使用trunc_normal截断正太分布初始化以及增加BN层后",
        "googLeNet / 对训练数据进行缩放裁剪、更改亮度等预处理",
        "googLeNet / 改用预训练模型",
        "ResNet",
        "ResNet (2)",
        "ResNet (3)",
    ]
    spans = {name: (r.first_epoch, r.last.epoch, len(r.epochs)) for name, r in seed_runs.items()}
    assert spans["Vgg19 / 初始结构"] == (83, 99, 17)
    assert spans["NIN"] == (86, 99, 14)
    # Two code blocks with nothing but a fence between them are one run (epochs 40-49, then 92-99).
    assert spans["googLeNet / 对训练数据进行缩放裁剪、更改亮度等预处理"] == (40, 99, 18)
    assert spans["ResNet (2)"] == (43, 50, 8)
    assert all(r.format == "text" and r.skipped_lines == 0 for r in seed_runs.values())
    assert seed_runs["NIN"].source == f"{SEED}:109"  # the line the run starts on


def test_seed_vgg19_epoch_values(seed_runs):
    vgg = seed_runs["Vgg19 / 初始结构"]
    assert _epoch(vgg, 83) == Epoch(83, loss=0.1116, train_acc=0.970, test_acc=0.822, time_s=62.638)
    assert _epoch(vgg, 99) == Epoch(99, loss=0.0958, train_acc=0.974, test_acc=0.811, time_s=63.388)
    assert [e.epoch for e in vgg.epochs] == list(range(83, 100))
    best = vgg.best
    assert (best.epoch, best.metric, best.test_acc) == (83, "test_acc", 0.822)
    assert vgg.gap_at_best == pytest.approx(0.970 - 0.822)
    assert vgg.gap_at_last == pytest.approx(0.974 - 0.811)


def test_seed_nin_best_and_times(seed_runs):
    nin = seed_runs["NIN"]
    assert (nin.best.epoch, nin.best.test_acc, nin.best.train_acc) == (97, 0.825, 1.000)
    assert nin.best.gap == pytest.approx(0.175)
    times = [115.214, 113.128, 113.502, 112.787, 113.546, 113.985, 111.756, 114.458, 113.487,
             115.391, 114.441, 112.666, 115.159, 112.755]
    assert nin.mean_epoch_time == pytest.approx(sum(times) / 14)
    assert nin.total_time == pytest.approx(sum(times))
    assert nin.series("test_acc")[0] == tuple(range(86, 100))


def test_seed_tab_separated_lines_and_ties(seed_runs):
    # The first block is tab-separated; ties on the best value keep the earliest epoch.
    animals = seed_runs["动物数据集"]
    assert _epoch(animals, 80) == Epoch(80, loss=0.0250, train_acc=0.992, test_acc=0.766, time_s=19.630)
    assert animals.best.epoch == 85
    resnet3 = seed_runs["ResNet (3)"]
    assert (resnet3.best.epoch, resnet3.best.test_acc) == (41, 0.952)  # 0.952 at 41 and 42
    pretrained = seed_runs["googLeNet / 改用预训练模型"]
    assert (pretrained.best.epoch, pretrained.best.test_acc) == (25, 0.944)


def test_run_to_dict_fields(seed_runs):
    d = seed_runs["NIN"].to_dict()
    assert {"name", "source", "epochs", "best"} <= set(d)
    assert set(d["epochs"][0]) >= {"epoch", "loss", "train_acc", "test_acc", "time_s"}
    assert d["epochs"][11] == {"epoch": 97, "loss": 0.0037, "train_acc": 1.0, "test_acc": 0.825,
                               "time_s": 112.666, "test_loss": None}
    assert d["best"]["epoch"] == 97 and d["best"]["test_acc"] == 0.825
    json.dumps(d)


def test_rename_runs():
    (run,) = read_log(DATA / "vgg19_noisy.txt", name="VGG19 baseline")
    assert run.name == "VGG19 baseline"
    assert run.renamed("  GoogLeNet +  BN ").name == "GoogLeNet + BN"
    with pytest.raises(LogFormatError):
        run.renamed("  ")
    several = read_log(SEED, name="group meeting")
    assert several[2].name == "group meeting (NIN)"
    runs = read_logs([DATA / "vgg19_noisy.txt", DATA / "keras_training.csv"], names=["A", None])
    assert [r.name for r in runs] == ["A", "keras_training"]


# --------------------------------------------------------------------------- other text forms


def test_noisy_plain_log_keeps_valid_lines_and_counts_the_rest():
    (run,) = read_log(DATA / "vgg19_noisy.txt")
    assert run.name == "vgg19_noisy"  # a plain log's stray lines are not names
    assert [e.epoch for e in run.epochs] == [83, 84, 85, 86, 87]
    assert run.epochs[0] == Epoch(83, loss=0.1116, train_acc=0.970, test_acc=0.822, time_s=62.638)
    assert run.epochs[1].time_s == 62.341  # the extra "lr" field is ignored
    assert run.epochs[3].loss is None and run.epochs[3].test_acc == 0.821  # "loss n/a"
    assert run.epochs[4] == Epoch(87, loss=0.1049)  # cut off mid-line
    assert run.skipped_lines == 2  # "loss n/a" and "epoch 88 (interrupted)"


def test_percentages_become_fractions():
    text = "epoch 1, loss 0.9, train acc 55.0, test acc 50.5\nepoch 2, loss 0.6, train acc 71.25, test acc 64.0\n"
    (run,) = parse_text_log(text)
    assert run.epochs[1].train_acc == pytest.approx(0.7125)
    assert run.epochs[0].test_acc == pytest.approx(0.505)
    assert "percent" in run.notes[0]
    (run,) = parse_text_log("Epoch: 3 | Loss: 0.25 | Train Acc: 91.5% | Val Acc: 88% | time: 12.5s")
    assert run.epochs[0] == Epoch(3, loss=0.25, train_acc=pytest.approx(0.915), test_acc=pytest.approx(0.88), time_s=12.5)


def test_keras_progress_lines_and_split_train_test_lines():
    text = (
        "Epoch 1/2\n"
        "100/100 [==============================] - 5s 48ms/step - loss: 0.6931 - accuracy: 0.5100 "
        "- val_loss: 0.6500 - val_accuracy: 0.6200\n"
        "Epoch 2/2\n"
        "100/100 [==============================] - 4s 41ms/step - loss: 0.5012 - accuracy: 0.7700 "
        "- val_loss: 0.5800 - val_accuracy: 0.7000\n"
    )
    (run,) = parse_text_log(text, source="keras.log")
    assert run.epochs == (
        Epoch(1, loss=0.6931, train_acc=0.51, test_acc=0.62, test_loss=0.65),
        Epoch(2, loss=0.5012, train_acc=0.77, test_acc=0.70, test_loss=0.58),
    )
    # One epoch reported on two lines (training, then evaluation) is one epoch.
    (run,) = parse_text_log("epoch 1 loss=0.5 train_acc=0.8\nepoch 1 test_acc=0.7 epoch_time=3.5\n")
    assert run.epochs == (Epoch(1, loss=0.5, train_acc=0.8, test_acc=0.7, time_s=3.5),)


def test_very_long_lines():
    # A progress bar thousands of characters wide is one token; the figures after it still count.
    (run,) = parse_text_log("epoch 1 [" + "=" * 3000 + "] loss: 0.25, val_acc: 0.5\n" + "epoch 2 " + "z" * 200_000 + "\n")
    assert run.epochs == (Epoch(1, loss=0.25, test_acc=0.5),)
    assert run.skipped_lines == 1


def test_per_iteration_lines_keep_the_last_value():
    text = "Epoch [1][10/20] lr: 1.0e-03, loss: 0.9\nEpoch [1][20/20] lr: 1.0e-03, loss: 0.7\nEpoch [2][10/20] loss: 0.5\n"
    (run,) = parse_text_log(text)
    assert run.epochs == (Epoch(1, loss=0.7), Epoch(2, loss=0.5))


def test_plain_log_splits_when_epochs_restart():
    text = "\n".join(
        [f"epoch {i}, loss {1 / i:.3f}, test accuracy 0.{i}" for i in range(1, 4)]
        + ["epoch 1, loss 0.9, test accuracy 0.2", "epoch 2, loss 0.8, test accuracy 0.6"]
    )
    runs = parse_text_log(text, source="two.log")
    assert [r.name for r in runs] == ["two", "two (2)"]
    assert [len(r.epochs) for r in runs] == [3, 2]
    assert runs[1].best.epoch == 2 and runs[1].best.test_acc == 0.6


def test_best_without_test_accuracy_uses_loss():
    (run,) = parse_text_log("epoch 1, loss 0.9\nepoch 2, loss 0.4\nepoch 3, loss 0.5\n")
    assert (run.best.metric, run.best.epoch, run.best.value) == ("loss", 2, 0.4)
    assert run.gap_at_best is None and run.mean_epoch_time is None


def test_metric_names():
    assert classify_metric("train accuracy") == "train_acc"
    assert classify_metric("val_accuracy") == "test_acc"
    assert classify_metric("Accuracy/test") == "test_acc"
    assert classify_metric("loss/train") == "loss"
    assert classify_metric("eval_loss") == "test_loss"
    assert classify_metric("use time") == "time_s"
    assert classify_metric("eval_top1") == "test_acc"
    assert classify_metric("eval_top5") is None
    assert classify_metric("lr") is None
    assert classify_metric("train_loss_step") is None


def test_gbk_encoded_document(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes("```\nNIN\n```\n".encode("gbk") + SEED.read_text(encoding="utf-8").split("NIN\n", 1)[1][:1200].encode("gbk"))
    runs = read_log(path)
    assert runs[0].best.epoch == 97


# --------------------------------------------------------------------------- CSV


def test_keras_csv_logger():
    (run,) = read_log(DATA / "keras_training.csv")
    assert (run.name, run.format) == ("keras_training", "csv")
    assert run.epochs[2] == Epoch(2, loss=0.5960, train_acc=0.8047, test_acc=0.74, test_loss=0.7411)
    assert run.best.epoch == 2
    assert run.gap_at_last == pytest.approx(0.8594 - 0.7325)


def test_lightning_metrics_csv_merges_rows_and_converts_percent():
    (run,) = read_log(DATA / "lightning_metrics.csv")
    assert run.epochs == (
        Epoch(0, loss=0.88, train_acc=pytest.approx(0.715), test_acc=pytest.approx(0.7625), time_s=31.2, test_loss=0.75),
        Epoch(1, loss=0.58, train_acc=pytest.approx(0.82), test_acc=pytest.approx(0.805), time_s=30.8, test_loss=0.66),
    )
    assert run.skipped_lines == 0
    assert any("percent" in n for n in run.notes)


def test_csv_flexible_headers_and_bad_rows(tmp_path):
    path = tmp_path / "run.csv"
    path.write_text(
        "Epoch;Train Loss;Train Acc;Test Acc;Time\n1;0.5;0.8;0.7;10\nbad;0.4;0.9;0.8;10\n2;0.4;0.85;0.75;11\n"
        "1;0.6;0.7;0.6;9\n"
    )
    first, second = read_log(path)
    assert [e.epoch for e in first.epochs] == [1, 2] and first.skipped_lines == 1
    assert first.epochs[1] == Epoch(2, loss=0.4, train_acc=0.85, test_acc=0.75, time_s=11.0)
    assert [e.epoch for e in second.epochs] == [1]  # the epoch went back: a second run
    assert (first.name, second.name) == ("run (1)", "run (2)")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("step,loss,acc\n1,0.5,0.8\n", "no epoch column"),
        ("epoch,lr\n1,0.1\n", "no loss, accuracy or time columns"),
        ("epoch,loss\nx,y\n", "no rows"),
    ],
)
def test_malformed_csv(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(LogFormatError, match=message):
        read_log(path)


# --------------------------------------------------------------------------- TensorBoard


def _write_events(logdir: Path, scalars: dict[str, list[float]], *, start: int = 0) -> None:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(logdir))
    for tag, values in scalars.items():
        for i, v in enumerate(values):
            writer.add_scalar(tag, v, start + i)
    writer.close()


def test_tensorboard_logdir_with_two_runs(tmp_path):
    _write_events(tmp_path / "vgg", {"loss/train": [1.0, 0.5, 0.25], "accuracy/train": [0.5, 0.75, 0.875],
                                      "accuracy/test": [0.5, 0.625, 0.75], "time/epoch": [10.0, 10.5, 11.0]})
    _write_events(tmp_path / "nin", {"train_loss": [2.0, 1.0], "val_acc": [40.0, 62.5]}, start=1)
    runs = {r.name: r for r in read_log(tmp_path)}
    assert set(runs) == {"vgg", "nin"}
    vgg = runs["vgg"]
    assert vgg.format == "tensorboard"
    assert vgg.epochs == (
        Epoch(0, loss=1.0, train_acc=0.5, test_acc=0.5, time_s=10.0),
        Epoch(1, loss=0.5, train_acc=0.75, test_acc=0.625, time_s=10.5),
        Epoch(2, loss=0.25, train_acc=0.875, test_acc=0.75, time_s=11.0),
    )
    nin = runs["nin"]
    assert [e.epoch for e in nin.epochs] == [1, 2]
    assert nin.epochs[1].test_acc == pytest.approx(0.625)  # percent, converted
    assert nin.epochs[1].time_s is not None and "wall times" in nin.notes[-1]


def test_tensorboard_keras_layout_and_epoch_scalar(tmp_path):
    _write_events(tmp_path / "fit" / "train", {"epoch_loss": [0.9, 0.6], "epoch_accuracy": [0.6, 0.8]})
    _write_events(tmp_path / "fit" / "validation", {"epoch_loss": [0.95, 0.7], "epoch_accuracy": [0.55, 0.7]})
    (run,) = read_tensorboard(tmp_path / "fit")
    assert run.name == "fit"
    assert run.epochs == (
        Epoch(0, loss=pytest.approx(0.9), train_acc=pytest.approx(0.6), test_acc=pytest.approx(0.55),
              time_s=None, test_loss=pytest.approx(0.95)),
        Epoch(1, loss=pytest.approx(0.6), train_acc=pytest.approx(0.8), test_acc=pytest.approx(0.7),
              time_s=run.epochs[1].time_s, test_loss=pytest.approx(0.7)),
    )
    # Lightning logs against the global step, with an "epoch" scalar to translate it.
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path / "lightning"))
    for epoch, step in enumerate((99, 199)):
        writer.add_scalar("epoch", epoch, step)
        writer.add_scalar("val_acc", 0.5 + epoch / 4, step)
        writer.add_scalar("train_loss_epoch", 1.0 - epoch / 2, step)
    writer.close()
    (run,) = read_log(tmp_path / "lightning", name="resnet18 lightning")
    assert run.name == "resnet18 lightning"
    assert [(e.epoch, e.test_acc, e.loss) for e in run.epochs] == [(0, 0.5, 1.0), (1, 0.75, 0.5)]


def test_tensorboard_event_file_and_upload_bytes(tmp_path):
    _write_events(tmp_path / "run", {"Loss/train": [0.5, 0.25], "Accuracy/val": [0.5, 0.75]})
    (event_file,) = (tmp_path / "run").glob("events.out.tfevents.*")
    (run,) = read_log(event_file)
    assert run.best.epoch == 1 and run.best.test_acc == 0.75
    (uploaded,) = read_log(event_file.read_bytes(), filename=event_file.name, name="uploaded run")
    assert uploaded.name == "uploaded run"
    assert uploaded.epochs == run.epochs


def test_tensorboard_without_scalars(tmp_path):
    _write_events(tmp_path / "lr_only", {"lr": [0.1, 0.01]})
    with pytest.raises(LogFormatError, match="no loss or accuracy scalars"):
        read_log(tmp_path / "lr_only")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LogFormatError, match="no TensorBoard event files"):
        read_log(tmp_path / "empty")


# --------------------------------------------------------------------------- malformed input


def test_malformed_logs(tmp_path):
    junk = tmp_path / "junk.log"
    junk.write_bytes(bytes(range(256)) * 20)
    with pytest.raises(LogFormatError, match="binary data"):
        read_log(junk)
    fake_events = tmp_path / "events.out.tfevents.123.host"
    fake_events.write_bytes(b"\x00\x01garbage" * 50)
    with pytest.raises(LogFormatError):
        read_log(fake_events)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(LogFormatError, match="empty"):
        read_log(empty)
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n\t\n")
    with pytest.raises(LogFormatError, match="empty"):
        read_log(blank)
    prose = tmp_path / "notes.md"
    prose.write_text("# GoogLeNet\n\nfor epoch in range(EPOCH):\n    train(net)\n\nepoch 5 was the best one\n")
    with pytest.raises(LogFormatError, match="no epoch lines"):
        read_log(prose)
    with pytest.raises(LogFormatError, match="no such file"):
        read_log(tmp_path / "missing.txt")
    with pytest.raises(LogFormatError, match="empty"):
        read_log(b"", filename="upload.txt")
    with pytest.raises(LogFormatError, match="binary data"):
        read_log(os.urandom(64) + b"\x00" * 8, filename="upload.bin")


def test_error_messages_are_one_line(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("nothing\nhere\n")
    with pytest.raises(LogFormatError) as info:
        read_log(path)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- command line


def test_cli_logs_json(capsys):
    from backbones.cli import build_parser, run

    parser = build_parser(modules=("backbones.cli.data",))
    code = run(parser, ["logs", str(SEED), str(DATA / "keras_training.csv"), "--name", "meeting", "Keras", "--json"])
    assert code == 0
    runs = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in runs][:3] == ["meeting (动物数据集)", "meeting (Vgg19 / 初始结构)", "meeting (NIN)"]
    assert runs[-1]["name"] == "Keras"
    vgg = runs[1]
    assert vgg["epochs"][0] == {"epoch": 83, "loss": 0.1116, "train_acc": 0.97, "test_acc": 0.822,
                                "time_s": 62.638, "test_loss": None}
    assert runs[2]["best"]["epoch"] == 97


def test_cli_logs_table_and_errors(capsys):
    from backbones.cli import build_parser, run

    parser = build_parser(modules=("backbones.cli.data",))
    assert run(parser, ["logs", str(SEED)]) == 0
    out = capsys.readouterr().out
    assert "NIN" in out and "82.5%" in out and "97" in out
    assert run(parser, ["logs", str(DATA / "missing.txt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_cli_logs_subprocess():
    out = subprocess.run(
        [sys.executable, "-m", "backbones", "logs", str(DATA / "vgg19_noisy.txt"), "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=True,
    )
    (run,) = json.loads(out.stdout)
    assert run["name"] == "vgg19_noisy" and run["skipped_lines"] == 2
    assert run["best"] == {"epoch": 83, "metric": "test_acc", "value": 0.822, "loss": 0.1116,
                           "train_acc": 0.97, "test_acc": 0.822, "gap": pytest.approx(0.148)}
