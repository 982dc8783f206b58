"""The fine-tune runs unchanged under ``torchrun --nproc_per_node 2`` (gloo on the CPU): one JSON document from
rank 0, a checkpoint that loads. About 25 s on 2 busy cores (two processes start torch): marked slow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from backbones.zoo.models import load_model
from tests.unit.transfer.shapes import CLASSES, write_shapes

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_two_processes_fine_tune_the_last_stage(tmp_path):
    data = write_shapes(tmp_path / "shapes")
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "BACKBONES_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "backbones", "finetune", str(data), "--model", "resnet18", "--weights", "none", "--stage", "last-stage",
         "--epochs", "1", "--input-size", "32", "--batch-size", "4", "--out", str(out), "--device", "cpu", "--json"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)  # rank 1 printed nothing: the output is one document
    assert doc["world_size"] == 2 and doc["epochs_run"] == 2 and doc["stopped"] == "completed"
    assert doc == json.loads((out / "run.json").read_text())
    assert [ln.split("]")[0] for ln in proc.stderr.splitlines() if ln.startswith("[")] == ["[1/2", "[2/2"]
    assert load_model(None, checkpoint=doc["checkpoint"]).categories == CLASSES
