"""Builders of results rows and export files for the results tests (valid ones, and ways to spoil them)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

ENV = {"machine": "gpu-box", "hostname": "gpu-box", "device_name": "NVIDIA H100", "threads": 8,
       "time": "2024-05-01T00:00:00+00:00"}


def latency_payload(model: str = "resnet18", median_ms: float = 10.0, **changes) -> dict:
    """What ``BenchmarkResult.to_record()`` stores, with made-up numbers."""
    payload = {
        "model": model, "device": "cpu", "batch_size": 1, "threads": 1, "input_size": [3, 224, 224],
        "median_ms": median_ms, "p10_ms": median_ms * 0.9, "p90_ms": median_ms * 1.1, "mean_ms": median_ms,
        "std_ms": 0.5, "runs": 9, "throughput_ips": 1000.0 / median_ms, "params": 11689512,
        "macs": 1814073344, "size_mib": 44.7, "env": dict(ENV),
        "details": {"latency": {"samples_ms": [median_ms] * 9}, "size": None, "compute": None},
    }
    payload.update(changes)
    return payload


def evaluation_payload(top1: float = 0.8, **changes) -> dict:
    """What ``EvaluationResult.to_store_payload()`` stores, with made-up numbers."""
    payload = {
        "model": "resnet18", "dataset": "flowers", "n": 10, "skipped": 0, "top1": top1, "top5": 0.95,
        "per_class": {"daisy": 1.0, "rose": 0.5}, "confusion": [[3, 0, 0], [1, 2, 0]],
        "labels": ["daisy", "rose"], "top1_error": 0.2, "top5_error": 0.05, "topk": 5,
        "dataset_path": "/data/flowers", "architecture": "resnet18", "weights": "IMAGENET1K_V1",
        "checkpoint": None, "per_class_n": {"daisy": 3, "rose": 3}, "confusion_columns": ["daisy", "rose", "other"],
        "matches": [{"dataset_class": "daisy", "model_class": "daisy"}], "unmatched": [], "excluded": 0,
        "elapsed_s": 1.5, "images_per_second": 6.7, "notes": [], "misclassified_count": 1,
        "metric": "accuracy on flowers",
    }
    payload.update(changes)
    return payload


def row(i: int, kind: str = "latency", model: str = "resnet18", **changes) -> dict:
    """Row ``i`` of an export: a unique uid, an increasing time."""
    payload = latency_payload(model, 10.0 + i) if kind == "latency" else evaluation_payload()
    item = {"kind": kind, "model": model, "created": f"2024-05-01T00:{i // 60 % 60:02d}:{i % 60:02d}+00:00",
            "source": "here", "env": dict(ENV), "payload": payload, "uid": f"row{i:06d}"}
    item.update(changes)
    return item


def export(rows: list[dict], machine: str = "gpu-box") -> dict:
    return {"format": "backbone-lens-results", "version": 1, "exported": "2024-05-02T00:00:00+00:00",
            "machine": machine, "results": rows}


def spoiled(n_rows: int, bad_row: int, path: str, value) -> dict:
    """An export of ``n_rows`` good rows where row ``bad_row`` (counted from 1) has ``value`` at ``path``.

    ``path`` is dotted (``payload.details.latency``); ``[i]`` indexes a list.
    """
    rows = [row(i) for i in range(n_rows)]
    target = rows[bad_row - 1] = copy.deepcopy(rows[bad_row - 1])
    *parents, last = path.replace("[", ".[").split(".")
    for part in parents:
        target = target[int(part[1:-1])] if part.startswith("[") else target[part]
    if last.startswith("["):
        target[int(last[1:-1])] = value
    else:
        target[last] = value
    return export(rows)


def write(path: Path, document) -> Path:
    # allow_nan: the hostile files hold NaN and Infinity, which Python's json writes as bare words.
    path.write_text(json.dumps(document, allow_nan=True), encoding="utf-8")
    return path
