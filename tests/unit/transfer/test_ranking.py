"""Ranking on the built-in transfer sample: the bundled model beats its untrained architecture, the CLI prints
the issue's JSON, rows reach Compare, probes save as checkpoints, and bad input is one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from backbones.cli import build_parser, run
from backbones.data.datasets import read_dataset
from backbones.data.sample import TRANSFER_SAMPLE_NAME, transfer_sample_dataset
from backbones.inference.images import load_image
from backbones.results.comparison import comparison_rows
from backbones.results.store import ResultsStore
from backbones.transfer.features import extract_features
from backbones.transfer.ranking import rank_backbones, save_probe, save_transfer

MODULES = ("backbones.cli.transfer",)


@pytest.fixture(scope="module")
def sample():
    return read_dataset(transfer_sample_dataset(), name=TRANSFER_SAMPLE_NAME)


@pytest.fixture(scope="module")
def report(sample):
    # The default feature cache (the test session's): the CLI test below then reads it back.
    return rank_backbones(sample, ["efficientnet_lite0", "efficientnet_lite0@none"], device="cpu", save=False)


def test_the_sample_has_no_imagenet_class_and_enough_images(sample):
    from backbones.zoo.catalog import imagenet_categories

    assert set(sample.classes) == {"architecture", "blossom", "portrait", "medical scan", "terrain"}
    assert not set(sample.classes) & set(imagenet_categories())
    assert set(sample.counts().values()) == {15}


def test_the_bundled_model_beats_its_untrained_architecture_on_every_score(report):
    trained, untrained = report.rows
    assert (trained.weights, untrained.weights) == ("bundled", "none")
    assert trained.linear.top1 > untrained.linear.top1
    assert trained.linear.mean_class > untrained.linear.mean_class
    assert trained.knn.top1 > untrained.knn.top1
    assert trained.logme > untrained.logme
    assert trained.linear.top1 >= 0.9 and trained.feature_dim == 1280
    assert report.splits == {"train": 45, "val": 15, "test": 15}
    assert report.best("logme") is trained and report.pareto_front("feature_dim", "linear") == [0]


def test_cli_json_is_the_issues_document_from_the_cache(report, capsys):
    code = run(build_parser(modules=MODULES), ["transfer", TRANSFER_SAMPLE_NAME, "--models", "efficientnet_lite0",
                                               "--device", "cpu", "--no-store", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and set(out) == {"dataset", "classes", "splits", "results"}
    row = out["results"][0]
    assert set(row) == {"model", "weights", "feature_dim", "linear", "knn", "logme", "extract_images_per_s", "cached"}
    assert set(row["linear"]) == {"top1", "top1_ci", "top5", "mean_class", "C"} and set(row["knn"]) == {"top1", "k"}
    assert row["linear"]["top5"] is None  # 5 classes: no top-5
    first = json.loads(json.dumps(report.rows[0].to_dict()))
    assert row.pop("cached") is True and isinstance(first.pop("cached"), bool)  # the fixture filled the cache
    assert row.pop("extract_images_per_s") == first.pop("extract_images_per_s")  # the run that filled it
    assert row == first  # the library's to_dict, number for number


def test_rows_reach_compare_as_top1_on_the_dataset(report, tmp_path):
    store = ResultsStore(tmp_path / "results.sqlite")
    ids = save_transfer(report, store=store)
    assert len(ids) == 1  # the untrained row is not stored
    (row,) = [r for r in comparison_rows(["efficientnet_lite0"], store=store)]
    assert row.accuracy_on == {"sample-transfer (linear probe)": report.rows[0].linear.top1}
    (stored,) = store.query(kind="transfer")
    assert stored.payload["metric"] == "top-1 on sample-transfer (linear probe)"
    assert set(stored.payload["per_class"]) == set(report.classes)


def test_a_saved_probe_is_a_checkpoint_with_the_class_names(report, sample, tmp_path):
    from backbones.zoo.models import load_model

    path = save_probe(report.rows[0], tmp_path / "probe", dataset=report.dataset)
    loaded = load_model(None, checkpoint=path)
    assert loaded.categories == report.classes
    fs = extract_features(sample, "efficientnet_lite0", device="cpu")
    i = fs.paths.index(next(p for p in fs.paths if "/terrain/" in p))
    x = loaded.preprocessing(load_image(fs.paths[i]))[None]
    with torch.inference_mode():
        logits = loaded.model(x)[0].numpy()
    expected = report.rows[0].linear.probe.predict_logits(np.asarray(fs.features[i : i + 1], np.float32))[0]
    np.testing.assert_allclose(logits, expected, atol=0.05)  # float16 features vs float32 on the fly
    assert loaded.categories[int(logits.argmax())] == "terrain"


def _classes(root, counts: dict[str, int]):
    from PIL import Image

    for name, n in counts.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (8, 8), (i * 20 % 255, 0, 0)).save(root / name / f"{i}.png")
    return root


@pytest.mark.parametrize(
    ("counts", "extra", "message"),
    [
        ({"roses": 5}, [], "error: only one class ('roses'): a probe needs images of at least two classes"),
        ({"roses": 5, "tulips": 2}, [],
         "error: class 'tulips' has 2 image(s) in all; the probes need at least 3 per class (1 train, 1 per split "
         "drawn for validation and test)"),
        ({"roses": 3, "tulips": 3}, ["--probes", "linear,svm"],
         "error: unknown probe 'svm' (choose from linear, knn, logme)"),
        ({"roses": 3, "tulips": 3}, ["--models", "resnet18", "resnet18"], "error: resnet18@IMAGENET1K_V1 is listed twice"),
    ],
)
def test_bad_input_is_one_line_before_any_model_runs(tmp_path, capsys, counts, extra, message):
    root = _classes(tmp_path / "ds", counts)
    argv = ["transfer", str(root), "--models", "resnet18", "--no-store", *extra]
    assert run(build_parser(modules=MODULES), argv) == 2
    assert capsys.readouterr().err.strip() == message
