"""Feature extraction: what the classifier sees, cached on disk (no forward the second time), all or nothing,
and the same rows under ``torchrun --nproc_per_node 2`` (gloo) as in one process."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

from backbones.data.datasets import read_dataset
from backbones.errors import BackboneError, CancelledError, DatasetError
from backbones.measure.common import torch_threads
from backbones.samples import write_sample_dataset
from backbones.transfer.features import classifier_name, extract_features, features_key, pre_logit_module
from backbones.zoo.models import load_model

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    return write_sample_dataset(tmp_path_factory.mktemp("features") / "samples", per_class=3, broken=True)


def _entries(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_a_second_run_reads_the_cache_and_runs_no_forward(lite0, dataset_dir, tmp_path):
    calls = []
    # The stem: timm's features path calls forward_features, not the model's own forward.
    handle = lite0.model.conv_stem.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        ds = read_dataset(dataset_dir)
        first = extract_features(ds, lite0, batch_size=4, cache_dir=tmp_path)
        forwards = len(calls)
        second = extract_features(ds, lite0, batch_size=4, cache_dir=tmp_path)
    finally:
        handle.remove()
    assert forwards == 3 and len(calls) == forwards  # 10 images in batches of 4; none the second time
    assert (first.cached, second.cached) == (False, True) and first.key == second.key
    assert isinstance(second.features, np.memmap) and second.features.dtype == np.float16
    assert second.features.shape == (9, 1280) and second.feature_dim == 1280
    np.testing.assert_array_equal(first.features, second.features)
    assert second.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2] and (second.split == -1).all()
    assert second.classes == ("daisy", "military_uniform", "palace")
    assert second.n_skipped == 1 and second.skipped[0].path.endswith("broken.jpg")
    assert _entries(tmp_path) == [first.key]  # no temporary folder left beside it


def test_a_changed_file_changes_the_key(dataset_dir, tmp_path):
    from backbones.transfer.features import _source

    copy = Path(shutil.copytree(dataset_dir, tmp_path / "copy"))
    source = _source("efficientnet_lite0", weights="default", checkpoint=None)
    before = features_key(source, read_dataset(copy), None)
    os.utime(copy / "daisy" / "00000.jpg", ns=(0, 0))
    assert features_key(source, read_dataset(copy), None) != before
    assert features_key(source, read_dataset(copy), "bf16") != features_key(source, read_dataset(copy), None)


def test_features_are_what_the_classifier_sees(lite0):
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    mobilenet = load_model("mobilenet_v3_small", weights="none").model
    with torch.inference_mode():
        assert torch.allclose(lite0.model.classifier(pre_logit_module(lite0)(x)), lite0.model(x), atol=1e-4)
        features = pre_logit_module(mobilenet)(x)
        assert classifier_name(mobilenet) == "classifier.3" and features.shape == (2, 1024)
        assert torch.allclose(mobilenet.classifier[3](features), mobilenet(x), atol=1e-5)
    assert not mobilenet.classifier[3]._forward_pre_hooks  # the hook lives only during a call


def test_split_folders_are_the_splits(lite0, dataset_dir, tmp_path):
    for split, files in (("train", ("00000.jpg", "00001.jpg")), ("val", ("00002.jpg",)), ("test", ("00002.jpg",))):
        for cls in ("daisy", "palace"):
            (tmp_path / "ds" / split / cls).mkdir(parents=True)
            for f in files:
                shutil.copy(dataset_dir / cls / f, tmp_path / "ds" / split / cls / f)
    ds = read_dataset(tmp_path / "ds")
    assert ds.classes == ("daisy", "palace") and ds.split_counts() == {"train": 4, "val": 2, "test": 2}
    fs = extract_features(ds, lite0, batch_size=8, cache_dir=tmp_path / "cache")
    assert fs.split.tolist() == [0, 0, 0, 0, 1, 1, 2, 2] and fs.labels.tolist() == [0, 0, 1, 1, 0, 1, 0, 1]


def test_cancel_leaves_nothing(lite0, dataset_dir, tmp_path):
    calls = []
    with pytest.raises(CancelledError, match="after 4 of 10 images"):
        extract_features(read_dataset(dataset_dir), lite0, batch_size=4, cache_dir=tmp_path,
                         progress=lambda d, t, m: calls.append(d), should_stop=lambda: len(calls) >= 2)
    assert _entries(tmp_path) == []


def test_a_full_disk_is_one_line_and_leaves_nothing(lite0, dataset_dir, tmp_path, monkeypatch):
    def full(*_args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full, raising=False)
    with pytest.raises(DatasetError, match=r"^cannot write the feature cache under .*\(No space left on device\); "
                                           r"free some space or set BACKBONES_CACHE_DIR") as info:
        extract_features(read_dataset(dataset_dir), lite0, batch_size=4, cache_dir=tmp_path)
    assert "\n" not in str(info.value) and _entries(tmp_path) == []


def test_bad_model_arguments_are_one_line(dataset_dir, tmp_path):
    ds = read_dataset(dataset_dir)
    with pytest.raises(BackboneError, match="model must be a catalog name or a loaded model"):
        extract_features(ds, object(), cache_dir=tmp_path)
    with pytest.raises(BackboneError, match="no such checkpoint file"):
        extract_features(ds, "resnet18", checkpoint=tmp_path / "missing.pth", cache_dir=tmp_path)
    with pytest.raises(DatasetError, match="batch size must be at least 1"):
        extract_features(ds, "resnet18", batch_size=0, cache_dir=tmp_path)


@pytest.mark.skipif(not dist.is_available(), reason="this torch has no torch.distributed")
def test_torchrun_two_processes_give_the_single_process_features(dataset_dir, tmp_path):
    with torch_threads(1):
        single = extract_features(read_dataset(dataset_dir), "efficientnet_lite0", device="cpu", batch_size=2,
                                  cache_dir=tmp_path / "single")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "tests.unit.transfer.torchrun_features", str(dataset_dir), str(tmp_path / "out.npz"),
         str(tmp_path / "parallel")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "this process's share: 2 processes" in proc.stderr
    out = np.load(tmp_path / "out.npz")
    assert out["paths"].tolist() == list(single.paths) and out["skipped"].tolist() == [single.skipped[0].path]
    np.testing.assert_array_equal(out["labels"], single.labels)
    # Same threads and batch size in every process: the same float16 rows.
    np.testing.assert_allclose(out["features"].astype(np.float32), np.asarray(single.features, np.float32),
                               atol=2e-3, rtol=0)
    assert len(_entries(tmp_path / "parallel")) == 1  # one writer on this machine


def test_a_csv_split_column_gives_the_splits(dataset_dir, tmp_path):
    rows = ["file,class,split", "daisy/00000.jpg,daisy,train", "palace/00000.jpg,palace,Train",
            "daisy/00001.jpg,daisy,valid", "palace/00001.jpg,palace,test", "daisy/00002.jpg,daisy,holdout"]
    (dataset_dir / "list.csv").write_text("\n".join(rows) + "\n")
    try:
        ds = read_dataset(dataset_dir / "list.csv")
    finally:
        (dataset_dir / "list.csv").unlink()
    assert [s.split for s in ds.samples] == ["train", "train", "val", "test"]
    assert [s.reason for s in ds.skipped] == ["line 6: the split must be train, val or test"]
