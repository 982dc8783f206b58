"""Fine-tune a pretrained backbone on the user's labelled images, the study notes' recipe.

``head``: a new classifier trained on the frozen backbone's pre-logit features (seconds). ``last-stage``: the
head first, then the last stage of the backbone unfrozen (ResNet ``layer4``, the last blocks of
EfficientNet / MobileNet / RegNet / ConvNeXt, timm's last parameter group) at a tenth of the learning rate,
with random resized crops and flips, while the frozen parts' BatchNorm statistics stay as they were::

    result = finetune("flowers/", "resnet50", stage="last-stage", epochs=10)
    result.checkpoint       # .../model.safetensors: loads with its class names on every page and command
    result.log              # "epoch 3, loss 0.2500, train accuracy 0.920, test accuracy 0.880, use time 19.630"

Both phases use AdamW (or SGD with momentum) with a cosine schedule and stop early when the validation
accuracy has not improved for ``patience`` epochs. ``test accuracy`` in the log is the validation split's, as
the notes' logs report the held-out set they watch; the test split is scored once, with the best weights.
``progress(done, total, EpochRecord)`` is called after every epoch; ``should_stop()`` is polled between
batches and keeps the best checkpoint so far. A loss that becomes NaN or infinite stops the run with
:class:`TrainingDivergedError` (one line) and keeps the last good checkpoint.

Under ``torchrun`` every process trains on its share of each batch (DistributedDataParallel: nccl on GPUs,
gloo on the CPU); rank 0 alone writes files.
"""

from __future__ import annotations

import math
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from backbones.callbacks import ProgressFn, StopFn
from backbones.data.distributed import broadcast_object, is_distributed
from backbones.errors import BackboneError, CancelledError, DatasetError
from backbones.transfer.features import SPLIT_CODES, UNASSIGNED, extract_features
from backbones.transfer.prelogits import classifier_name
from backbones.transfer.probes import TEST, TRAIN, VAL, assign_splits, split_sizes
from backbones.transfer.runs import (
    EpochRecord,
    FinetuneResult,
    RunFiles,
    TrainingDivergedError,
    default_run_dir,
    write_result,
)
from backbones.transfer.stages import last_stage_parameters, replace_module
from backbones.transfer.training import Stop, Trainer, state_copy, test_accuracy, train_head, train_last_stage

__all__ = ["EpochRecord", "FinetuneResult", "TrainingDivergedError", "finetune", "last_stage_parameters"]

STAGES = ("head", "last-stage")
OPTIMIZERS = ("adamw", "sgd")
#: Default learning rate of the head per optimizer; the last stage trains at a tenth of it.
DEFAULT_LR = {"adamw": 1e-3, "sgd": 1e-2}


def _read(dataset):
    from backbones.data.datasets import Dataset, read_dataset

    if isinstance(dataset, Dataset):
        return dataset
    path = Path(dataset).expanduser()
    if path.suffix.lower() == ".zip" and path.is_file():
        from backbones.data.archives import unpack_dataset

        return read_dataset(unpack_dataset(path, label=path.name), name=path.stem)
    return read_dataset(path)


def _check_options(stage, epochs, lr, batch_size, optimizer, patience, workers) -> None:
    if stage not in STAGES:
        raise BackboneError(f"stage must be one of {', '.join(STAGES)}, got {stage!r}")
    if optimizer not in OPTIMIZERS:
        raise BackboneError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise BackboneError(f"epochs must be at least 1, got {epochs!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise BackboneError(f"learning rate must be a positive number, got {lr!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise BackboneError(f"batch size must be at least 1, got {batch_size!r}")
    if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
        raise BackboneError(f"patience must be at least 1 epoch, got {patience!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
        raise BackboneError(f"workers must be 0 or more, got {workers!r}")


def finetune(
    dataset,
    model,
    *,
    stage: str = "head",
    epochs: int = 10,
    lr: float | None = None,
    batch_size: int = 32,
    optimizer: str = "adamw",
    weight_decay: float | None = None,
    patience: int = 5,
    weights: str | None = "default",
    checkpoint: str | os.PathLike | None = None,
    input_size: int | None = None,
    workers: int | None = 0,
    device: str | torch.device | None = "auto",
    out_dir: str | os.PathLike | None = None,
    progress: Callable[[int, int, EpochRecord], None] | None = None,
    should_stop: StopFn | None = None,
    extract_progress: ProgressFn | None = None,
    cache_dir: str | os.PathLike | None = None,
    seed: int = 0,
) -> FinetuneResult:
    """Fine-tune ``model`` (a catalog name or a :class:`~backbones.zoo.models.LoadedModel`) on ``dataset``
    (a folder of class folders, a ``.zip`` of one, a ``path,label`` CSV, or a :class:`Dataset`).

    ``epochs`` is per stage (the head, then the last stage); ``lr`` the head's learning rate (default 1e-3
    for AdamW, 1e-2 for SGD), the last stage trains at ``lr / 10``; ``batch_size`` is per process.
    ``input_size`` trains and saves at another square input than the model's own (smaller is faster).
    ``out_dir`` (default: a new folder under :func:`backbones.paths.runs_dir`) receives ``model.safetensors``,
    ``classes.json``, ``train.log``, ``train.csv`` and ``run.json``. ``progress(done, total, record)`` after
    every epoch (``total`` is both stages' planned epochs), ``should_stop()`` between batches. The features
    come from :func:`~backbones.transfer.features.extract_features` (its cache under ``cache_dir``; its
    ``progress(done, total, message)`` is ``extract_progress``). The splits are the probes'
    (:func:`~backbones.transfer.probes.assign_splits`); ``seed`` seeds the head's start and the shuffling.
    """
    from backbones.data.distributed import process_group

    optimizer = str(optimizer).lower()
    if lr is None:
        lr = DEFAULT_LR.get(optimizer, 1e-3)
    _check_options(stage, epochs, lr, batch_size, optimizer, patience, workers)
    ds = _read(dataset)
    started = time.perf_counter()
    with process_group(device) as (dev, launch):
        return _finetune(ds, model, stage=stage, epochs=epochs, lr=float(lr), batch_size=batch_size,
                         optimizer=optimizer, weight_decay=weight_decay, patience=patience, weights=weights,
                         checkpoint=checkpoint, input_size=input_size, workers=workers or 0, device=dev,
                         main=launch is None or launch.is_main, out_dir=out_dir, progress=progress,
                         should_stop=should_stop, extract_progress=extract_progress, seed=seed, started=started,
                         cache_dir=cache_dir)


def _load(model, *, weights, checkpoint, device, input_size):
    from dataclasses import replace

    from backbones.zoo.models import LoadedModel, load_model

    if isinstance(model, LoadedModel):
        loaded = model
        # Training changes the weights: work on a copy, the caller's (maybe cached) model stays as it was.
        import copy

        loaded = replace(loaded, model=copy.deepcopy(loaded.model).to(device), lock=threading.RLock())
    else:
        loaded = load_model(model, weights=weights, checkpoint=checkpoint, device=device)
    if input_size is not None:
        if isinstance(input_size, bool) or not isinstance(input_size, int) or not 16 <= input_size <= 1024:
            raise BackboneError(f"input size must be a whole number of pixels from 16 to 1024, got {input_size!r}")
        prep = loaded.preprocessing
        loaded = replace(loaded, preprocessing=replace(
            prep, crop_size=input_size, resize_size=max(input_size, round(input_size / prep.crop_pct))))
    return loaded


def _finetune(ds, model, *, stage, epochs, lr, batch_size, optimizer, weight_decay, patience, weights, checkpoint,
              input_size, workers, device, main, out_dir, progress, should_stop, extract_progress, seed, started,
              cache_dir):
    from backbones.data.datasets import Sample
    from backbones.transfer.export import save_checkpoint

    torch.manual_seed(seed)
    if not ds.samples:
        raise DatasetError(f"{ds.name}: no labelled images")
    # The split the probes use (same function, same seed): a single class or too few images fail here, at once.
    index = {name: i for i, name in enumerate(sorted({str(s.label) for s in ds.samples}))}
    assign_splits(np.array([index[str(s.label)] for s in ds.samples]),
                  np.array([SPLIT_CODES.get(s.split, UNASSIGNED) for s in ds.samples]), classes=list(index))
    loaded = _load(model, weights=weights, checkpoint=checkpoint, device=device, input_size=input_size)
    arch = loaded.entry.name
    start_weights = loaded.checkpoint if loaded.weights == "checkpoint" else loaded.weights
    net = loaded.model
    head_name = classifier_name(net)
    if not isinstance(net.get_submodule(head_name), nn.Linear):
        raise BackboneError(f"{arch}: its classifier is a {type(net.get_submodule(head_name)).__name__}, not a "
                            "Linear layer; fine-tuning here replaces a Linear classifier")
    if stage == "last-stage":
        last_stage_parameters(net, arch)  # an architecture without a known last stage fails before any work
    run_dir = None
    if main:
        run_dir = Path(out_dir).expanduser() if out_dir is not None else default_run_dir(arch, ds.name, stage)
    run_dir = broadcast_object(run_dir)

    # Features of every readable image, in eval mode, from the feature cache when this model and dataset were
    # seen before (a ranking on the Transfer page fills it): the head trains on them in seconds.
    fs = extract_features(ds, loaded, batch_size=batch_size, workers=workers, cache_dir=cache_dir,
                          progress=extract_progress, should_stop=should_stop)
    classes = tuple(fs.classes)
    y_all = np.asarray(fs.labels, dtype=np.int64)
    codes = assign_splits(y_all, fs.split, classes=classes)
    feats = fs.features  # (N, D) float16, memory-mapped
    samples = [Sample(path, classes[label]) for path, label in zip(fs.paths, y_all)]
    skipped = fs.n_skipped
    split_of = {name: np.flatnonzero(codes == code) for name, code in (("train", TRAIN), ("val", VAL), ("test", TEST))}
    splits = split_sizes(codes)
    new_folder = main and not run_dir.exists()  # removed again when the run ends with nothing saved
    files = RunFiles(run_dir if main else None)
    old_head = net.get_submodule(head_name)
    head = nn.Linear(old_head.in_features, len(classes)).to(device)
    replace_module(net, head_name, head)
    notes = {"stage": stage, "dataset": ds.name, "dataset_path": ds.path, "splits": splits, "optimizer": optimizer,
             "lr": lr, "label": run_dir.name if run_dir is not None else None, "preprocessing": loaded.preprocessing}

    def save() -> str | None:
        """Write ``net`` as it is now (the caller has put the best weights in it); rank 0 only."""
        if not main:
            return None
        return str(save_checkpoint(net, classes, run_dir, arch=arch, weights=start_weights, meta=dict(notes)))

    total = epochs * (2 if stage == "last-stage" else 1)
    trainer = Trainer(device=device, progress=progress, should_stop=should_stop, files=files, total_epochs=total,
                       patience=patience, save=save)
    loss_fn = nn.CrossEntropyLoss()
    stopped, detail = "completed", ""
    try:
        files.heading("head")
        stopped = train_head(trainer, net, head, feats, y_all, split_of, epochs=epochs, lr=lr, batch_size=batch_size,
                              optimizer=optimizer, weight_decay=weight_decay, loss_fn=loss_fn, device=device, seed=seed)
        net.load_state_dict(trainer.best.state, strict=False)
        if is_distributed():  # every process continues from rank 0's head (GPU kernels may round differently)
            for p in head.parameters():
                torch.distributed.broadcast(p.data, src=0)
        trainer.checkpoint = save()
        if stage == "last-stage":
            # The best head's whole model: what the checkpoint holds until the last stage does better.
            trainer.best.state = state_copy(net)
            trainable = last_stage_parameters(net, arch)
            files.heading("last-stage")
            stopped = train_last_stage(trainer, loaded, net, trainable, samples, y_all, split_of, epochs=epochs,
                                        lr=lr / 10, batch_size=batch_size, optimizer=optimizer,
                                        weight_decay=weight_decay, loss_fn=loss_fn, device=device, seed=seed,
                                        workers=workers)
    except Stop as stop:
        stopped, detail = stop.reason, stop.detail
        if trainer.best.state is not None and trainer.checkpoint is None:  # stopped in the head phase
            net.load_state_dict(trainer.best.state, strict=False)
            trainer.checkpoint = save()
    except BaseException:
        # Interrupted another way (Ctrl-C; a dashboard rerun raised inside ``progress``): the best head so far
        # is still saved, as a cancel would keep it; the last stage saves its best at every improvement.
        if trainer.best.state is not None and trainer.checkpoint is None and trainer.best.stage == "head":
            net.load_state_dict(trainer.best.state, strict=False)
            save()
        raise
    if trainer.best.state is None:
        if new_folder:
            shutil.rmtree(run_dir, ignore_errors=True)
        if stopped == "cancelled":
            raise CancelledError("fine-tune cancelled before its first epoch ended; nothing was saved")
        raise TrainingDivergedError(
            f"training diverged in its first epoch (loss {detail or 'nan'}): no checkpoint was saved; "
            f"try a lower learning rate than {lr:g}")
    net.load_state_dict(trainer.best.state, strict=False)
    test_acc = test_accuracy(trainer.best, net, head_name, loaded, feats, y_all, split_of["test"], samples,
                              batch_size=batch_size, workers=workers, device=device)
    message = _message(stopped, trainer, detail, lr)
    result = FinetuneResult(
        model=arch, weights=start_weights, stage=stage, dataset=ds.name, classes=classes, splits=splits,
        epochs_run=len(trainer.history), best_epoch=trainer.best.epoch, best_stage=trainer.best.stage,
        best_val_acc=trainer.best.acc, test_acc=test_acc, checkpoint=trainer.checkpoint,
        log=str(files.log_path) if files.log_path else None, csv=str(files.csv_path) if files.csv_path else None,
        stopped=stopped, message=message, device=str(device), world_size=torch.distributed.get_world_size() if is_distributed() else 1,
        skipped_images=skipped, elapsed_s=time.perf_counter() - started, history=tuple(trainer.history),
    )
    if main and run_dir is not None:
        write_result(run_dir, result)
    if stopped == "diverged":
        raise TrainingDivergedError(message, result)
    return result


def _message(stopped: str, trainer: Trainer, detail: str, lr: float) -> str:
    best = f"{trainer.best.stage} epoch {trainer.best.epoch} (validation accuracy {trainer.best.acc:.3f})"
    if stopped == "diverged":
        last = trainer.history[-1] if trainer.history else None
        where = f"after {last.stage} epoch {last.epoch}" if last else "in its first epoch"
        return (f"training diverged {where} (loss became {detail or 'nan'}); kept the checkpoint of {best} at "
                f"{trainer.checkpoint}; try a lower learning rate than {lr:g}")
    if stopped == "cancelled":
        return f"cancelled; kept the checkpoint of {best}"
    if stopped == "early-stopped":
        return f"stopped early (no better validation accuracy for {trainer.patience} epochs); best: {best}"
    return f"completed; best: {best}"
