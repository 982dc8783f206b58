"""Evaluation as a real evaluator: DataLoader workers, shards, torchrun with gloo on the CPU.

The dataset is written from the sample photos (:func:`backbones.samples.write_sample_dataset`):
three classes of flips and crops plus one unreadable file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from backbones.data.datasets import read_dataset
from backbones.data.distributed import gather_to_all, read_launch
from backbones.data.evaluation import evaluate_dataset
from backbones.data.loading import ShardSampler, collate_decoded
from backbones.errors import CancelledError, DatasetError, DeviceError, ImageError
from backbones.inference.images import load_image
from backbones.inference.logits import logits_of
from backbones.measure.common import torch_threads
from backbones.samples import write_sample_dataset

ROOT = Path(__file__).resolve().parents[2]
#: The two timing fields, the only ones allowed to differ between runs.
TIMING = ('  "elapsed_s": ', '  "images_per_second": ')


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_sample_dataset(tmp_path_factory.mktemp("eval") / "samples", per_class=3, broken=True)


def _old_loop(loaded, root: Path, batch_size: int) -> dict:
    """What evaluation did before DataLoaders: decode in this thread, batch, run, count."""
    ds = read_dataset(root)
    categories = loaded.categories
    confusion, misclassified, skipped, seen, top1, top5 = {}, [], [], 0, 0, 0
    for start in range(0, len(ds.samples), batch_size):
        images, kept = [], []
        for s in ds.samples[start : start + batch_size]:
            try:
                images.append(load_image(s.path))
                kept.append(s)
            except ImageError as exc:
                skipped.append((s.path, str(exc)))
        if not images:
            continue
        with torch.inference_mode():
            probs = torch.softmax(logits_of(loaded.model(loaded.preprocessing.batch(images))).float(), dim=1)
        values, indices = probs.topk(5, dim=1)
        for s, vals, idxs in zip(kept, values.tolist(), indices.tolist()):
            truth = categories.index(s.label.replace("_", " "))
            seen += 1
            top1 += idxs[0] == truth
            top5 += truth in idxs
            predicted = categories[idxs[0]]
            column = predicted.replace(" ", "_") if predicted.replace(" ", "_") in ds.classes else "other"
            confusion[(s.label, column)] = confusion.get((s.label, column), 0) + 1
            if idxs[0] != truth:
                misclassified.append((s.path, predicted, vals))
    return {"n": seen, "top1": top1 / seen, "top5": top5 / seen, "confusion": confusion,
            "misclassified": misclassified, "skipped": skipped}


def _summary(result) -> dict:
    confusion = {(label, col): count for label, row in zip(result.labels, result.confusion)
                 for col, count in zip(result.confusion_columns, row) if count}
    return {"n": result.n, "top1": result.top1, "top5": result.top5, "confusion": confusion,
            "misclassified": [(m.path, m.predicted, [g.prob for g in m.top5]) for m in result.misclassified],
            "skipped": [(s.path, s.reason) for s in result.skipped_files]}


def test_dataloader_workers_equal_the_old_loop(lite0, dataset):
    calls = []
    result = evaluate_dataset(lite0, dataset, batch_size=4, workers=2, progress=lambda d, t, m: calls.append((d, t, m)))
    assert _summary(result) == _old_loop(lite0, dataset, batch_size=4)
    # The unreadable file was decoded (and refused) in a worker, then counted.
    assert result.skipped == 1 and result.skipped_files[0].path.endswith("broken.jpg")
    assert "JPEG" in result.skipped_files[0].reason or "truncated" in result.skipped_files[0].reason
    assert [(d, t) for d, t, _ in calls] == [(0, 10), (4, 10), (8, 10), (10, 10)]
    assert "images/s, ETA " in calls[1][2] and "top-1 so far" in calls[1][2]


def test_cancel_with_workers(lite0, dataset):
    calls = []
    with pytest.raises(CancelledError, match="after 4 of 10"):
        evaluate_dataset(lite0, dataset, batch_size=4, workers=2, progress=lambda d, t, m: calls.append(d),
                         should_stop=lambda: len(calls) >= 2)


def test_bad_options(lite0, dataset):
    with pytest.raises(DeviceError, match="amp.*cuda only.*--device cuda"):
        evaluate_dataset(lite0, dataset, amp="bf16")  # lite0 is on the CPU
    with pytest.raises(DatasetError, match="workers must be 0 or more"):
        evaluate_dataset(lite0, dataset, workers=-1)


def test_shard_sampler_takes_every_index_once():
    for n in range(0, 12):
        for world in range(1, 5):
            shards = [list(ShardSampler(n, rank, world)) for rank in range(world)]
            assert sorted(i for s in shards for i in s) == list(range(n))
            assert [len(ShardSampler(n, rank, world)) for rank in range(world)] == [len(s) for s in shards]
    with pytest.raises(ValueError):
        ShardSampler(3, 2, 2)


def test_collate_sets_unreadable_images_aside():
    batch = collate_decoded([(0, torch.zeros(3, 2, 2), None), (1, None, "broken"), (2, torch.ones(3, 2, 2), None)])
    assert batch.indices == (0, 2) and batch.skipped == ((1, "broken"),) and batch.size == 3
    assert batch.images.shape == (2, 3, 2, 2)
    assert collate_decoded([(5, None, "x")]).images is None


def test_launch_from_the_environment():
    assert read_launch({}) is None
    assert read_launch({"RANK": "0", "WORLD_SIZE": "1"}) is None  # torchrun --nproc_per_node 1: one process
    launch = read_launch({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
    assert (launch.rank, launch.world_size, launch.local_rank, launch.is_main) == (1, 2, 1, False)
    with pytest.raises(DeviceError, match="integers"):
        read_launch({"RANK": "x", "WORLD_SIZE": "2"})
    assert gather_to_all({"a": 1}) == [{"a": 1}]


def _without_timing(text: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith(TIMING))


@pytest.mark.skipif(not dist.is_available(), reason="this torch has no torch.distributed")
def test_torchrun_two_processes_give_the_single_process_json(dataset, tmp_path, monkeypatch, capsys):
    from backbones.cli import build_parser, run

    argv = ["eval", str(dataset), "--model", "efficientnet_lite0", "--device", "cpu", "--batch-size", "4",
            "--json", "--no-store"]
    # Floats are bit-identical when every process computes with the same number of threads.
    with torch_threads(1):
        assert run(build_parser(modules=("backbones.cli.data",)), [*argv, "--workers", "0"]) == 0
    single = capsys.readouterr().out
    env = {**os.environ, "OMP_NUM_THREADS": "1", "BACKBONES_RESULTS_DB": str(tmp_path / "unused.sqlite")}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "backbones", *argv, "--workers", "1"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _without_timing(proc.stdout) == _without_timing(single)  # rank 1 printed nothing on stdout
    out = json.loads(proc.stdout)
    assert out["n"] == 9 and out["skipped"] == 1 and sum(map(sum, out["confusion"])) == 9
    assert "this process's share: 2 processes" in proc.stderr
