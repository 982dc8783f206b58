"""The training loops of a fine-tune: the head on frozen features, then the last stage on augmented images.

:class:`Trainer` runs the epochs of one stage, keeps the best weights by validation accuracy (ties: lower
validation loss), stops early after ``patience`` epochs without a better one, and polls between batches for a
cancel or a loss that is no number, in every process at once (so DistributedDataParallel never waits on a
process that left).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from backbones.data.distributed import all_sum, current_shard, is_distributed
from backbones.transfer.runs import EpochRecord
from backbones.transfer.stages import set_trainable_mode, trainable_roots

DEFAULT_WEIGHT_DECAY = {"adamw": 1e-2, "sgd": 1e-4}


class TrainTransform:
    """Random resized crop and horizontal flip at the model's input size, then its normalisation."""

    def __init__(self, preprocessing):
        from torchvision.transforms import v2

        self.transform = v2.Compose([
            v2.RandomResizedCrop(preprocessing.crop_size, interpolation=preprocessing.interpolation_mode, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(preprocessing.mean), list(preprocessing.std)),
        ])

    def __call__(self, image) -> torch.Tensor:
        return self.transform(image)


class Stop(Exception):
    """Internal: leave the phase (``reason`` cancelled / diverged)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason)
        self.reason, self.detail = reason, detail


@dataclass
class Best:
    acc: float = -1.0
    loss: float = math.inf
    stage: str | None = None
    epoch: int | None = None
    state: dict | None = None  # CPU copy of the whole model's state at the best epoch

    def beaten_by(self, acc: float, loss: float) -> bool:
        return acc > self.acc or (acc == self.acc and loss < self.loss)


def make_optimizer(name: str, params, lr: float, weight_decay: float | None):
    wd = DEFAULT_WEIGHT_DECAY[name] if weight_decay is None else weight_decay
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=wd)
    return torch.optim.AdamW(params, lr=lr, weight_decay=wd)


class Trainer:
    def __init__(self, *, device, progress, should_stop, files, total_epochs, patience, save):
        self.device = device
        self.progress = progress
        self.should_stop = should_stop
        self.files = files
        self.total_epochs = total_epochs
        self.patience = patience
        self.save = save  # save() writes the model as it is now (rank 0) and returns the checkpoint's path
        self.history: list[EpochRecord] = []
        self.best = Best()
        self.checkpoint: str | None = None

    def poll(self, loss: torch.Tensor | None) -> None:
        """Between batches: stop when asked or when the loss is no number, in every process at once."""
        stop = bool(self.should_stop and self.should_stop())
        bad = loss is not None and not bool(torch.isfinite(loss.detach()).all())
        stop, bad = all_sum([stop, bad], self.device)
        if bad:
            raise Stop("diverged", "nan" if loss is not None and torch.isnan(loss).any() else "non-finite")
        if stop:
            raise Stop("cancelled")

    def run_phase(self, stage: str, epochs: int, train_epoch: Callable[[], tuple[float, float]],
                  evaluate: Callable[[], tuple[float, float]], snapshot: Callable[[], dict],
                  scheduler, save_each: bool) -> str:
        """Epochs of one stage; returns how it ended (``completed`` / ``early-stopped``)."""
        waited = 0
        for epoch in range(1, epochs + 1):
            started = time.perf_counter()
            lr = scheduler.get_last_lr()[0]
            loss, train_acc = train_epoch()
            val_loss, val_acc = evaluate()
            if not (math.isfinite(loss) and math.isfinite(val_loss)):
                raise Stop("diverged", "non-finite")
            scheduler.step()
            improved = self.best.beaten_by(val_acc, val_loss)
            if improved:
                self.best = Best(val_acc, val_loss, stage, epoch, snapshot())
                if save_each:
                    self.checkpoint = self.save()
            record = EpochRecord(stage, epoch, loss, train_acc, val_loss, val_acc, lr,
                                 time.perf_counter() - started, improved)
            self.history.append(record)
            self.files.epoch(record)
            if self.progress is not None:
                self.progress(len(self.history), self.total_epochs, record)
            waited = 0 if improved else waited + 1
            if waited >= self.patience and epoch < epochs:
                return "early-stopped"
        return "completed"


def state_copy(model: nn.Module) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def train_head(trainer: Trainer, net, head: nn.Linear, feats, y_all, split_of, *, epochs, lr, batch_size, optimizer,
                weight_decay, loss_fn, device, seed) -> str:
    """The new classifier on frozen features; every process trains the same head on all the features."""
    x_tr = torch.from_numpy(np.asarray(feats[split_of["train"]], dtype=np.float32)).to(device)
    y_tr = torch.from_numpy(y_all[split_of["train"]]).to(device)
    x_va = torch.from_numpy(np.asarray(feats[split_of["val"]], dtype=np.float32)).to(device)
    y_va = torch.from_numpy(y_all[split_of["val"]]).to(device)
    opt = make_optimizer(optimizer, head.parameters(), lr, weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    gen = torch.Generator().manual_seed(seed)

    def train_epoch():
        head.train()
        order = torch.randperm(len(x_tr), generator=gen).to(device)
        total_loss = correct = 0.0
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            logits = head(x_tr[idx])
            loss = loss_fn(logits, y_tr[idx])
            trainer.poll(loss)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total_loss += float(loss.detach()) * len(idx)
            correct += float((logits.argmax(1) == y_tr[idx]).sum())
        if not all(torch.isfinite(p).all() for p in head.parameters()):
            raise Stop("diverged", "inf")
        return total_loss / len(x_tr), correct / len(x_tr)

    def evaluate():
        head.eval()
        with torch.no_grad():
            logits = head(x_va)
            # Counts, not a float32 mean: accuracies of both stages compare exactly (ties go to the lower loss).
            return float(loss_fn(logits, y_va)), int((logits.argmax(1) == y_va).sum()) / len(y_va)

    # Only the head changes in this phase: its copy is the snapshot (loaded with strict=False).
    prefix = next(n for n, m in net.named_modules() if m is head)
    stopped = trainer.run_phase("head", epochs, train_epoch, evaluate,
                                lambda: {f"{prefix}.{k}": v for k, v in state_copy(head).items()}, sched,
                                save_each=False)
    return stopped


def train_last_stage(trainer: Trainer, loaded, net, trainable, samples, y_all, split_of, *, epochs, lr, batch_size,
                      optimizer, weight_decay, loss_fn, device, seed, workers) -> str:
    """The last stage and the head, end to end on augmented images; the rest frozen, its BatchNorm in eval."""
    from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

    from backbones.data.loading import DecodedSamples, collate_decoded, make_loader

    names = {n for n, _ in trainable}
    for n, p in net.named_parameters():
        p.requires_grad_(n in names)
    # Only the trained parts switch to train mode: the frozen parts' BatchNorm keeps its running statistics.
    roots = trainable_roots(net)
    rank, world = current_shard()
    model = net
    if is_distributed():
        model = nn.parallel.DistributedDataParallel(net, device_ids=[device] if device.type == "cuda" else None)
    train_samples = [samples[i] for i in split_of["train"]]
    train_y = torch.from_numpy(y_all[split_of["train"]])
    data = DecodedSamples(train_samples, TrainTransform(loaded.preprocessing))
    if world > 1:
        sampler = DistributedSampler(data, num_replicas=world, rank=rank, shuffle=True, seed=seed)
    else:
        sampler = RandomSampler(data, generator=torch.Generator().manual_seed(seed))
    per_rank = math.ceil(len(data) / world)
    loader = DataLoader(data, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=collate_decoded,
                        drop_last=per_rank > batch_size, pin_memory=device.type == "cuda")
    val_samples = [samples[i] for i in split_of["val"]]
    val_y = torch.from_numpy(y_all[split_of["val"]])
    opt = make_optimizer(optimizer, [p for _, p in trainable], lr, weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    epoch_box = [0]

    def train_epoch():
        epoch_box[0] += 1
        if isinstance(sampler, DistributedSampler):
            sampler.set_epoch(epoch_box[0])
        model.train()
        set_trainable_mode(net, roots)
        total_loss = correct = seen = 0.0
        for batch in loader:
            if batch.images is None:
                continue
            x = batch.images.to(device, non_blocking=True)
            y = train_y[list(batch.indices)].to(device)
            logits = model(x)
            loss = loss_fn(logits, y)
            trainer.poll(loss)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total_loss += float(loss.detach()) * len(y)
            correct += float((logits.argmax(1) == y).sum())
            seen += len(y)
        total_loss, correct, seen = all_sum([total_loss, correct, seen], device)
        if not all(torch.isfinite(p).all() for _, p in trainable):
            raise Stop("diverged", "inf")
        return total_loss / max(seen, 1), correct / max(seen, 1)

    def evaluate():
        net.eval()
        total_loss, correct, seen = _score(net, loaded.preprocessing, val_samples, val_y, loss_fn, batch_size=batch_size,
                                           workers=workers, device=device, rank=rank, world=world,
                                           make_loader=make_loader)
        return total_loss / max(seen, 1), correct / max(seen, 1)

    try:
        return trainer.run_phase("last-stage", epochs, train_epoch, evaluate, lambda: state_copy(net), sched,
                                 save_each=True)
    finally:
        net.eval()
        for p in net.parameters():
            p.requires_grad_(True)


def _score(net, preprocessing, samples, y, loss_fn, *, batch_size, workers, device, rank, world, make_loader):
    """Summed loss, correct count and count over ``samples`` (this process's shard, then summed)."""
    total_loss = correct = seen = 0.0
    if samples:
        loader = make_loader(samples, preprocessing, batch_size=batch_size, workers=workers, rank=rank, world=world)
        with torch.no_grad():
            for batch in loader:
                if batch.images is None:
                    continue
                yy = y[list(batch.indices)].to(device)
                logits = net(batch.images.to(device))
                total_loss += float(loss_fn(logits, yy)) * len(yy)
                correct += float((logits.argmax(1) == yy).sum())
                seen += len(yy)
    return all_sum([total_loss, correct, seen], device)


def test_accuracy(best: Best, net, head_name, loaded, feats, y_all, test_idx, samples, *, batch_size, workers,
                   device) -> float | None:
    """Accuracy of the best weights on the test split: from the features when only the head changed."""
    from backbones.data.loading import make_loader

    if not len(test_idx):
        return None
    if best.stage == "head":
        head = net.get_submodule(head_name)
        with torch.no_grad():
            logits = head(torch.from_numpy(np.asarray(feats[test_idx], dtype=np.float32)).to(device))
        return int((logits.argmax(1).cpu() == torch.from_numpy(y_all[test_idx])).sum()) / len(test_idx)
    rank, world = current_shard()
    net.eval()
    _, correct, seen = _score(net, loaded.preprocessing, [samples[i] for i in test_idx],
                              torch.from_numpy(y_all[test_idx]), nn.CrossEntropyLoss(), batch_size=batch_size,
                              workers=workers, device=device, rank=rank, world=world, make_loader=make_loader)
    return correct / max(seen, 1)
