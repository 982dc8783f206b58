"""Pre-logit features of a labelled dataset: extracted once per backbone and dataset, cached on disk.

    fs = extract_features(read_dataset("flowers/"), "resnet50", progress=print)
    fs.features            # (N, D) float16, memory-mapped from the cache
    fs.labels, fs.split    # (N,) int64 class indices into fs.classes, (N,) int8: 0 train, 1 val, 2 test, -1 none
    extract_features(read_dataset("flowers/"), "resnet50").cached   # True: no model was built or run

The features are what the classifier sees (:func:`pre_logit_module`). Images go through the
Evaluate pipeline (:mod:`backbones.data.loading`: DataLoader workers, batches, pinned memory;
unreadable files skipped and counted; under ``torchrun`` each process extracts its share,
:mod:`backbones.data.distributed`). Rows are streamed to disk batch by batch with plain
sequential writes, never held in memory together and never mapped while written, so memory stays
flat however many images there are. The cache entry is a folder under
``cache_dir()/features/<key>`` built in a hidden temporary folder and renamed into place: a
cancel, a crash or a full disk leaves nothing half-written. Its key digests the model (name and
weights, or the checkpoint's content), the preprocessing, the autocast dtype and the dataset's
content (every file's path, label, split, size and modification time). ``features/`` is pruned
least-recently-used beyond ``$BACKBONES_UPLOAD_QUOTA_MB`` like the other caches
(:mod:`backbones.paths`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from backbones.callbacks import ProgressFn, StopFn
from backbones.data.datasets import Dataset, Skipped
from backbones.errors import BackboneError, CancelledError, DatasetError
from backbones.transfer.npyfile import RowWriter
from backbones.transfer.prelogits import PreLogits, classifier_name, is_timm_model, pre_logit_module

__all__ = [
    "SPLIT_CODES", "FeatureSet", "PreLogits", "classifier_name", "clear_features", "dataset_digest",
    "extract_features", "features_key", "features_root", "file_digest", "is_timm_model", "pre_logit_module",
]

#: Split codes of :attr:`FeatureSet.split`.
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
UNASSIGNED = -1
#: Bump when what is stored (or how features are computed) changes: old entries are then never reused.
FEATURES_VERSION = 1
_DIGEST_CHUNK = 1 << 20


# ----------------------------------------------------------------------------- the result
@dataclass(frozen=True, eq=False)
class FeatureSet:
    """The pre-logit features of one model on one dataset (the readable images, in dataset order).

    ``features`` ``(N, D)`` float16, memory-mapped read-only; ``labels`` ``(N,)`` int64 indices
    into ``classes``; ``split`` ``(N,)`` int8 (:data:`SPLIT_CODES`; -1 when the dataset has no
    ``train/`` ``val/`` ``test/`` folders); ``paths`` the images; ``skipped`` the files and CSV
    rows left out, with reasons. ``images_per_s`` is the extraction's speed (that of the run that
    filled the cache when ``cached``); ``key`` names the cache entry at ``path``.
    """

    features: np.ndarray
    labels: np.ndarray
    split: np.ndarray
    classes: tuple[str, ...]
    paths: tuple[str, ...]
    skipped: tuple[Skipped, ...]
    model: str
    architecture: str
    weights: str
    checkpoint: str | None
    dataset: str
    feature_dim: int
    images_per_s: float
    cached: bool
    key: str
    path: str
    preprocessing: dict

    @property
    def n(self) -> int:
        return int(self.features.shape[0])

    @property
    def n_skipped(self) -> int:
        return len(self.skipped)

    @property
    def has_splits(self) -> bool:
        return bool(self.n) and bool((self.split >= 0).all())

    def to_dict(self) -> dict:
        """Everything but the arrays (``n`` rows of ``feature_dim`` floats)."""
        return {
            "model": self.model, "architecture": self.architecture, "weights": self.weights,
            "checkpoint": self.checkpoint, "dataset": self.dataset, "n": self.n, "feature_dim": self.feature_dim,
            "classes": list(self.classes), "skipped": [s.to_dict() for s in self.skipped],
            "images_per_s": self.images_per_s, "cached": self.cached, "key": self.key,
            "preprocessing": self.preprocessing,
        }


# ----------------------------------------------------------------------------- keys
def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's content (checkpoints are keyed by what they hold, not where they are)."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(_DIGEST_CHUNK), b""):
                h.update(chunk)
    except OSError as exc:
        raise BackboneError(f"{Path(path).name}: cannot read ({exc.strerror or exc})") from exc
    return h.hexdigest()


def dataset_digest(dataset: Dataset) -> str:
    """A digest of the dataset's content: each sample's path, label, split, file size and mtime, in order."""
    h = hashlib.sha256()
    for s in dataset.samples:
        try:
            st = os.stat(s.path)
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:
            size, mtime = -1, -1
        h.update(json.dumps([s.path, s.label, s.split, size, mtime]).encode())
        h.update(b"\n")
    return h.hexdigest()


@dataclass(frozen=True)
class _Source:
    """Who computes the features, known before anything is built: what the key needs, and how to build it."""

    name: str
    architecture: str
    weights: str
    checkpoint: str | None
    identity: dict
    preprocessing: dict
    loaded: object | None  # a LoadedModel when one was given


def _source(model, *, weights, checkpoint) -> _Source:
    from backbones.zoo.catalog import get_entry
    from backbones.zoo.weights import resolve_weights

    if isinstance(model, str):
        entry = get_entry(model)
        if checkpoint is not None:
            path = Path(checkpoint)
            if not path.is_file():
                raise BackboneError(f"{path}: no such checkpoint file")
            prep = entry.preprocessing.to_dict()
            identity = {"arch": entry.name, "checkpoint_sha256": file_digest(path)}
            return _Source(path.stem, entry.name, "checkpoint", str(path), identity, prep, None)
        info = resolve_weights(entry, weights)
        prep = (info.preprocessing if info else entry.preprocessing).to_dict()
        name = info.name if info else "none"
        return _Source(entry.name, entry.name, name, None, {"arch": entry.name, "weights": name}, prep, None)
    inner = getattr(model, "model", None)
    entry = getattr(model, "entry", None)
    if not isinstance(inner, nn.Module) or entry is None:
        raise BackboneError(
            f"model must be a catalog name or a loaded model (load_model / load_checkpoint), got {type(model).__name__}"
        )
    identity = {"arch": entry.name, "weights": model.weights}
    if model.checkpoint:
        identity["checkpoint_sha256"] = file_digest(model.checkpoint)
    return _Source(model.name, entry.name, model.weights, model.checkpoint, identity,
                   model.preprocessing.to_dict(), model)


def features_key(source: _Source, dataset: Dataset, amp: str | None) -> str:
    """The cache key: model identity + preprocessing + autocast dtype + dataset content digest."""
    spec = {"version": FEATURES_VERSION, "model": source.identity, "preprocessing": source.preprocessing,
            "amp": amp, "dataset": dataset_digest(dataset)}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:32]


def features_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where feature caches live: ``cache_dir`` or ``cache_dir()/features``."""
    from backbones.paths import cache_dir as project_cache_dir

    return Path(cache_dir) if cache_dir is not None else project_cache_dir() / "features"


# ----------------------------------------------------------------------------- on disk
def _disk_error(exc: OSError, root: Path) -> DatasetError:
    return DatasetError(f"cannot write the feature cache under {root} ({exc.strerror or exc}); free some space or "
                        "set BACKBONES_CACHE_DIR to a larger disk")


def _open_cached(folder: Path, key: str) -> FeatureSet | None:
    """The complete cache entry in ``folder``, or None (absent, or written by another version)."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("key") != key or meta.get("version") != FEATURES_VERSION:
            return None
        features = np.load(folder / "features.npy", mmap_mode="r")
        labels = np.load(folder / "labels.npy")
        split = np.load(folder / "split.npy")
    except (OSError, ValueError):
        return None
    if features.shape != (len(labels), meta["feature_dim"]) or len(split) != len(labels):
        return None
    from backbones.paths import touch

    touch(folder)  # recently used: pruning takes the oldest first
    return FeatureSet(
        features=features, labels=labels, split=split, classes=tuple(meta["classes"]), paths=tuple(meta["paths"]),
        skipped=tuple(Skipped(s["path"], s["reason"]) for s in meta["skipped"]), model=meta["model"],
        architecture=meta["architecture"], weights=meta["weights"], checkpoint=meta["checkpoint"],
        dataset=meta["dataset"], feature_dim=int(meta["feature_dim"]), images_per_s=float(meta["images_per_s"]),
        cached=True, key=key, path=str(folder), preprocessing=meta["preprocessing"],
    )


# ----------------------------------------------------------------------------- extraction
def _effective_amp(device: torch.device, amp) -> str | None:
    """``None`` means automatic: bf16 on a cuda device that supports it, else full precision."""
    if amp is None:
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return "bf16"
        return None
    if amp is False or str(amp).lower() in ("none", "off", "false", "fp32"):
        return None
    return str(amp)


def _resolve_device(device, loaded) -> torch.device:
    import torch.distributed as dist

    from backbones.data.distributed import device_for_rank, read_launch

    if loaded is not None:
        return loaded.device
    launch = read_launch() if dist.is_available() and dist.is_initialized() else None
    return device_for_rank(device, launch)


def _progress_message(done: int, total: int, elapsed: float, name: str) -> str:
    from backbones.data.evaluation import format_eta

    rate = done / elapsed if elapsed > 0 else 0.0
    speed = f", {rate:.1f} images/s, ETA {format_eta((total - done) / rate)}" if rate > 0 else ""
    return f"{name}: {done}/{total} images{speed}"


def extract_features(
    dataset: Dataset,
    model,
    *,
    weights: str | None = "default",
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device | None = "auto",
    batch_size: int = 32,
    workers: int | None = 0,
    amp: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> FeatureSet:
    """The pre-logit features of ``model`` for every readable image of ``dataset``, from the cache or extracted.

    ``model`` is a catalog name (with ``weights``: ``"default"``, a weights name or ``"none"``; or a
    ``checkpoint`` file of that architecture) or a loaded model (:func:`~backbones.zoo.models.load_model`,
    :func:`~backbones.zoo.models.load_checkpoint`; keyed by its name, weights and checkpoint content, so a
    model changed in memory needs its own ``cache_dir``). A name is only built when the cache misses, on
    ``device`` (``auto``: the GPU when there is one; under torchrun this process's GPU).

    Images are decoded in ``workers`` DataLoader processes (0: in this process; None: from the CPU count)
    and run ``batch_size`` at a time under ``torch.inference_mode``; on cuda with pinned memory,
    channels-last and autocast to ``amp`` (None: bf16 where supported; ``"fp16"``, ``"bf16"``, ``"none"``).
    ``progress(done, total, message)`` after each batch; ``should_stop()`` before each batch raises
    :class:`CancelledError` and leaves no cache entry. Under a ``torch.distributed`` process group each
    process extracts every ``world``-th image; the rows are gathered batch by batch, one process per
    machine writes the entry and every process returns the same :class:`FeatureSet`.

    Raises :class:`DatasetError` for an empty dataset, when no image can be read, or when the cache
    cannot be written (a full disk: nothing is left behind).
    """
    from backbones.data.loading import check_loader_options

    if not isinstance(dataset, Dataset):
        raise DatasetError(f"dataset must be a Dataset (see backbones.data.datasets.read_dataset), got "
                           f"{type(dataset).__name__}")
    if not dataset.samples:
        raise DatasetError(f"{dataset.name}: no images")
    check_loader_options(batch_size, workers)
    source = _source(model, weights=weights, checkpoint=checkpoint)
    dev = _resolve_device(device, source.loaded)
    amp_used = _effective_amp(dev, amp)
    key = features_key(source, dataset, amp_used)
    root = features_root(cache_dir)
    folder = root / key
    found = _open_cached(folder, key)
    if found is None and folder.exists():
        shutil.rmtree(folder, ignore_errors=True)  # left by another version, or damaged by hand
    if found is not None:
        if progress:
            progress(found.n, found.n, f"{source.name}: {found.n} images from the feature cache")
        return found
    return _extract(dataset, source, dev, amp_used, key, root, batch_size=batch_size, workers=workers,
                    progress=progress, should_stop=should_stop)


def _load(source: _Source, device: torch.device):
    if source.loaded is not None:
        return source.loaded
    from backbones.zoo.models import load_model

    if source.checkpoint is not None:
        return load_model(source.architecture, checkpoint=source.checkpoint, device=device)
    return load_model(source.architecture, weights=source.weights, device=device)


def _extract(dataset: Dataset, source: _Source, device: torch.device, amp: str | None, key: str, root: Path, *,
             batch_size: int, workers: int | None, progress: ProgressFn | None,
             should_stop: StopFn | None) -> FeatureSet:
    import torch.distributed as dist

    from backbones.data.distributed import current_shard, gather_to_all, read_launch
    from backbones.data.loading import autocast_for, shard_loader, to_model_input
    from backbones.paths import building_folder, folder_quota_bytes, prune_least_recently_used

    loaded = _load(source, device)
    started = time.perf_counter()  # after loading: a first download is not the extraction's speed
    autocast = autocast_for(device, amp)
    channels_last = device.type == "cuda"
    extractor = pre_logit_module(loaded)
    samples = dataset.samples
    n = len(samples)
    rank, world = current_shard()
    launch = read_launch() if world > 1 else None
    writer = launch is None or launch.local_rank == 0  # one copy per machine
    loader = shard_loader(samples, loaded, device, batch_size=batch_size, workers=workers,
                          channels_last=channels_last, rank=rank, world=world)
    # Every process runs the same number of gather rounds, even when its shard has a batch fewer.
    rounds = math.ceil(math.ceil(n / world) / batch_size)
    class_index = {c: i for i, c in enumerate(dataset.classes)}
    classes = tuple(str(c) for c in dataset.classes)
    kept: list[int] = []
    unreadable: list[Skipped] = []
    folder = root / key
    rows: RowWriter | None = None
    if progress:
        share = f" (this process's share: {world} processes)" if world > 1 else ""
        progress(0, n, f"extracting {loaded.name} features of {dataset.name}: {n} images{share}")
    try:
        with building_folder(folder, prefix=".features-") as tmp:
            batches = iter(loader)
            done = 0
            loop_started = time.perf_counter()
            for _ in range(rounds):
                if should_stop is not None and should_stop():
                    raise CancelledError(f"feature extraction cancelled after {done} of {n} images")
                batch = next(batches, None)
                part: tuple = ((), None, (), 0)
                if batch is not None:
                    feats = None
                    if batch.images is not None:
                        x = to_model_input(batch.images, device, channels_last)
                        with loaded.lock, torch.inference_mode(), autocast:
                            out = extractor(x)
                        feats = out.float().cpu().numpy().astype(np.float16)
                    part = (batch.indices, feats, batch.skipped, batch.size)  # dataset indices (ShardSampler)
                gathered = gather_to_all(part)
                # This round's rows from all processes form one contiguous run of the dataset: write it in order.
                order: list[tuple[int, np.ndarray]] = []
                for indices, feats, skipped, size in gathered:
                    done += size
                    unreadable += [Skipped(samples[i].path, reason) for i, reason in skipped]
                    if feats is not None:
                        order += list(zip(indices, feats))
                order.sort(key=lambda pair: pair[0])
                if order:
                    kept += [i for i, _ in order]
                    if writer:
                        block = np.stack([f for _, f in order])
                        if rows is None:
                            rows = RowWriter(tmp / "features.npy", n, block.shape[1])
                        rows.append(block)
                if progress:
                    progress(min(done, n), n, _progress_message(min(done, n), n, time.perf_counter() - loop_started,
                                                                loaded.name))
            if not kept:
                first = unreadable[-1].reason if unreadable else "no images"
                raise DatasetError(f"{dataset.name}: no image could be read ({first})")
            elapsed = time.perf_counter() - started
            images_per_s = (len(kept) + len(unreadable)) / elapsed if elapsed > 0 else float("nan")
            if not writer:
                raise _NotTheWriter
            rows.finish()
            labels = np.array([class_index[samples[i].label] for i in kept], dtype=np.int64)
            split = np.array([SPLIT_CODES.get(samples[i].split, UNASSIGNED) for i in kept], dtype=np.int8)
            np.save(tmp / "labels.npy", labels)
            np.save(tmp / "split.npy", split)
            meta = {
                "version": FEATURES_VERSION, "key": key, "model": loaded.name, "architecture": source.architecture,
                "weights": source.weights, "checkpoint": source.checkpoint, "dataset": dataset.name,
                "classes": list(classes), "paths": [samples[i].path for i in kept],
                "skipped": [s.to_dict() for s in (*dataset.skipped, *unreadable)],
                "feature_dim": rows.dim, "images_per_s": images_per_s, "preprocessing": source.preprocessing,
                "amp": amp, "identity": source.identity,
            }
            (tmp / "meta.json").write_text(json.dumps(meta))
    except _NotTheWriter:
        pass
    except OSError as exc:
        if not (folder / "meta.json").is_file():  # else another process renamed the same entry first: use it
            raise _disk_error(exc, root) from exc
    finally:
        if rows is not None:
            rows.close()
    if world > 1:
        dist.barrier()  # the writer of this machine has renamed the entry into place
    found = _open_cached(folder, key)
    if found is None:
        raise DatasetError(f"the feature cache {folder} could not be read back after writing it")
    if writer:
        prune_least_recently_used(root, folder_quota_bytes(), keep={folder})
    return replace(found, cached=False)  # computed by this run; read back from the entry just written


class _NotTheWriter(Exception):
    """Raised inside the building folder by processes that do not write, so their empty folder is removed."""


def clear_features(cache_dir: str | os.PathLike | None = None) -> int:
    """Delete every feature cache entry (not those being written); returns how many."""
    root = features_root(cache_dir)
    removed = 0
    for entry in root.iterdir() if root.is_dir() else ():
        if entry.is_dir() and not entry.name.startswith("."):
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
    return removed
