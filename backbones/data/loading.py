"""Feeding labelled images to a model: decoding and preprocessing in DataLoader workers, in batches.

    loader = make_loader(samples, loaded.preprocessing, batch_size=64, workers=8, pin_memory=True)
    for batch in loader:              # DecodedBatch: images (B, 3, H, W), the samples' indices, the unreadable ones
        ...

Workers decode with :func:`backbones.inference.images.load_image` and apply the
model's preprocessing, as timm's ``validate.py`` does; an unreadable file becomes a
sentinel that :func:`collate_decoded` sets aside, so it is counted, never fatal.
Batches come in sample order. :class:`ShardSampler` gives one process of several its
share of the samples, every sample exactly once (no padding duplicates, unlike
``DistributedSampler``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import torch
from torch.utils.data import DataLoader, Sampler
from torch.utils.data import Dataset as TorchDataset

from backbones.data.datasets import Sample
from backbones.errors import BackboneError, DatasetError, DeviceError, ImageError
from backbones.inference.images import load_image
from backbones.inference.preprocessing import Preprocessing

#: Most workers :func:`default_workers` picks: decoding rarely scales further on one GPU.
MAX_DEFAULT_WORKERS = 8
#: ``amp`` choices: the autocast dtype's name in torch.
AMP_DTYPES = {"bf16": "bfloat16", "fp16": "float16"}


def default_workers() -> int:
    """Decoding workers for this machine: one core is left to the process that runs the model."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        cores = os.cpu_count() or 1
    return max(1, min(MAX_DEFAULT_WORKERS, cores - 1))


class DecodedSamples(TorchDataset):
    """``samples[i]`` decoded and preprocessed: ``(i, tensor (3, H, W), None)`` or ``(i, None, reason)``."""

    def __init__(self, samples: Sequence[Sample], preprocessing: Preprocessing):
        self.samples = tuple(samples)
        self.preprocessing = preprocessing

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, str | None]:
        try:
            return index, self.preprocessing(load_image(self.samples[index].path)), None
        except ImageError as exc:
            return index, None, str(exc)


@dataclass(frozen=True)
class DecodedBatch:
    """One batch: ``images`` ``(B, 3, H, W)`` (None when none was readable) of the samples at ``indices``,
    ``skipped`` ``(index, reason)`` pairs, ``size`` the samples it covers (readable or not)."""

    indices: tuple[int, ...]
    images: torch.Tensor | None
    skipped: tuple[tuple[int, str], ...]
    size: int

    def pin_memory(self) -> DecodedBatch:
        """DataLoader's ``pin_memory=True`` calls this: page-locked images copy to a GPU asynchronously."""
        return self if self.images is None else replace(self, images=self.images.pin_memory())


def collate_decoded(items: list[tuple[int, torch.Tensor | None, str | None]]) -> DecodedBatch:
    """Stack the readable images of ``items``, set the unreadable ones aside (their sentinels)."""
    kept = [(i, t) for i, t, _ in items if t is not None]
    return DecodedBatch(
        indices=tuple(i for i, _ in kept),
        images=torch.stack([t for _, t in kept]) if kept else None,
        skipped=tuple((i, reason) for i, t, reason in items if t is None),
        size=len(items),
    )


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world, ...`` below ``n``: each of ``world`` processes gets every ``world``-th
    sample, so together they see each sample exactly once (shards differ in length by at most one)."""

    def __init__(self, n: int, rank: int = 0, world: int = 1):
        if world < 1 or not 0 <= rank < world:
            raise ValueError(f"rank {rank} is not one of {world} processes")
        self.n, self.rank, self.world = n, rank, world

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.n, self.world))

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world))


def make_loader(
    samples: Sequence[Sample],
    preprocessing: Preprocessing,
    *,
    batch_size: int,
    workers: int,
    pin_memory: bool = False,
    rank: int = 0,
    world: int = 1,
) -> DataLoader:
    """Batches of :class:`DecodedBatch` over this process's shard of ``samples``, in order.

    ``workers`` 0 decodes in the calling process (no worker start-up: best for a batch or two).
    """
    return DataLoader(
        DecodedSamples(samples, preprocessing),
        batch_size=batch_size,
        sampler=ShardSampler(len(samples), rank, world),
        num_workers=workers,
        collate_fn=collate_decoded,
        pin_memory=pin_memory,
    )


def shard_loader(samples: Sequence[Sample], loaded, device: torch.device, *, batch_size: int, workers: int | None,
                 channels_last: bool, rank: int = 0, world: int = 1) -> DataLoader:
    """This process's batches of ``samples`` for the :class:`~backbones.zoo.models.LoadedModel` ``loaded`` on
    ``device`` (what Evaluate and feature extraction share).

    ``workers=None`` picks :func:`default_workers` unless the shard is a batch or less (worker start-up would
    cost more than it saves); memory is pinned for cuda; ``channels_last`` switches the model to that memory
    format, under its lock.
    """
    if workers is None:
        workers = default_workers() if len(range(rank, len(samples), world)) > batch_size else 0
    if channels_last:
        with loaded.lock:
            loaded.model.to(memory_format=torch.channels_last)
    return make_loader(samples, loaded.preprocessing, batch_size=batch_size, workers=workers,
                       pin_memory=device.type == "cuda", rank=rank, world=world)


def check_loader_options(batch_size, workers) -> None:
    """Refuse a batch size below 1 or a negative / non-integer worker count (one-line DatasetError)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise DatasetError(f"batch size must be at least 1, got {batch_size!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
        raise DatasetError(f"workers must be 0 or more, got {workers!r}")


def autocast_for(device: torch.device, amp: str | None):
    """Autocast to ``amp`` (bf16/fp16) on cuda; a no-op context without ``amp``."""
    if amp is None:
        return contextlib.nullcontext()
    if amp not in AMP_DTYPES:
        raise BackboneError(f"amp must be one of {', '.join(AMP_DTYPES)}, got {amp!r}")
    if device.type != "cuda":
        raise DeviceError(
            f"mixed precision (amp) runs on cuda only, not {device}: on a CPU it is slower than float32 on most "
            "processors; drop --amp or use --device cuda"
        )
    return torch.autocast("cuda", dtype=getattr(torch, AMP_DTYPES[amp]))


def to_model_input(images: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    """A decoded batch on the model's device (non-blocking from pinned memory), channels-last when asked."""
    x = images.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x
