"""The built-in labelled sample: real photos from installed packages, built once, atomically, and scored by Lite0."""

from __future__ import annotations

from pathlib import Path

import pytest

from backbones.data import sample as sample_module
from backbones.data.datasets import Dataset, read_dataset
from backbones.data.evaluation import evaluate_dataset
from backbones.data.sample import SAMPLE_VERSION, sample_dataset
from backbones.errors import DatasetError


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sample-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BACKBONES_CACHE_DIR", str(root))
        yield root


@pytest.fixture(scope="module")
def sample(cache) -> Path:
    return sample_dataset()


def test_sample_is_a_dataset_of_real_photos(sample, cache):
    assert sample == cache / "datasets" / f"sample-{SAMPLE_VERSION}"
    ds = read_dataset(sample, name="built-in sample")
    assert isinstance(ds, Dataset) and ds.name == "built-in sample" and ds.kind == "folder"
    counts = ds.counts()
    assert len(counts) >= 3 and min(counts.values()) >= 4, counts
    assert {"military uniform", "palace", "daisy"} <= set(counts)
    assert not ds.skipped
    # Nothing half-written is left beside it.
    assert [p.name for p in (cache / "datasets").iterdir()] == [sample.name]


def test_sample_is_built_once(sample):
    first = sorted((p, p.stat().st_mtime_ns) for p in sample.rglob("*.jpg"))
    assert sample_dataset() == sample
    assert sorted((p, p.stat().st_mtime_ns) for p in sample.rglob("*.jpg")) == first


def test_a_failed_build_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("BACKBONES_CACHE_DIR", str(tmp_path))

    def full_disk(folder, photos):
        (folder / "daisy").mkdir()
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sample_module, "_write_sample", full_disk)
    with pytest.raises(DatasetError, match="cannot build the built-in sample .No space left on device"):
        sample_dataset()
    assert list((tmp_path / "datasets").iterdir()) == []


def test_another_session_finishing_first_is_fine(tmp_path, monkeypatch):
    monkeypatch.setenv("BACKBONES_CACHE_DIR", str(tmp_path))
    real = sample_module._write_sample

    def racing(folder, photos):
        real(folder, photos)
        real_target = tmp_path / "datasets" / f"sample-{SAMPLE_VERSION}"
        real_target.mkdir()
        real(real_target, photos)  # the other session renames its copy into place first

    monkeypatch.setattr(sample_module, "_write_sample", racing)
    path = sample_dataset()
    assert len(read_dataset(path).samples) >= 12
    assert [p.name for p in (tmp_path / "datasets").iterdir()] == [path.name]


def test_lite0_gives_a_full_result_on_the_sample(lite0, sample):
    result = evaluate_dataset(lite0, read_dataset(sample, name="built-in sample"), batch_size=8)
    assert result.top5 > 0.5
    assert result.excluded == 0 and {m.how for m in result.matches} == {"exact"}
    assert set(dict(result.per_class)) == {"daisy", "military uniform", "palace"}
    assert len(result.confusion) == 3
    assert result.misclassified  # something to show under "misclassified"
