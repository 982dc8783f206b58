"""Evaluating with several processes under ``torchrun``: the launch, the process group, gathering results.

    torchrun --nproc_per_node 4 -m backbones eval imagenet/val --model resnet50 --json

``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (:func:`read_launch`);
:func:`process_group` then starts ``torch.distributed`` (nccl on GPUs, gloo on the CPU),
puts each process on its own GPU (``cuda:LOCAL_RANK`` unless one was named) and
destroys the group afterwards. While a group is up, :func:`current_shard` tells
:func:`backbones.data.evaluation.evaluate_dataset` which share of the images is this
process's, and :func:`gather_to_all` hands every process everyone's outcomes, so each
computes the same result a single process would.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist

from backbones.errors import DeviceError
from backbones.inference.device import resolve_device


@dataclass(frozen=True)
class Launch:
    """This process's place among ``world_size`` processes that ``torchrun`` started."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        """Rank 0 prints and stores; the others stay silent."""
        return self.rank == 0

    def to_dict(self) -> dict:
        return {"rank": self.rank, "world_size": self.world_size, "local_rank": self.local_rank}


def read_launch(environ: Mapping[str, str] | None = None) -> Launch | None:
    """The torchrun launch from the environment, or None for a plain process (or ``--nproc_per_node 1``)."""
    env = os.environ if environ is None else environ
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return None
    try:
        launch = Launch(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", env["RANK"])))
    except ValueError as exc:
        raise DeviceError(f"RANK/WORLD_SIZE/LOCAL_RANK must be integers (set by torchrun), got {exc}") from exc
    return launch if launch.world_size > 1 else None


def device_for_rank(device: str | torch.device | None, launch: Launch | None) -> torch.device:
    """:func:`resolve_device` of ``device``; under torchrun ``auto``/``cuda`` mean this process's GPU."""
    text = str(device if device is not None else "auto").strip().lower()
    if launch is not None and text in ("auto", "cuda") and torch.cuda.is_available():
        text = f"cuda:{launch.local_rank}"
    return resolve_device(text)


@contextlib.contextmanager
def process_group(device: str | torch.device | None = "auto") -> Iterator[tuple[torch.device, Launch | None]]:
    """``(device, launch)`` for this process; under torchrun with a process group up until the block ends."""
    launch = read_launch()
    dev = device_for_rank(device, launch)
    if launch is None:
        yield dev, None
        return
    if dev.type == "cuda":
        torch.cuda.set_device(dev)  # nccl's collectives and all_gather_object use the current device
    dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    try:
        yield dev, launch
    finally:
        dist.destroy_process_group()


def current_shard() -> tuple[int, int]:
    """``(rank, world_size)`` of this process while a process group is up, else ``(0, 1)``."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_to_all(obj) -> list:
    """Every process's ``obj``, in rank order, on every process (``[obj]`` without a process group)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def is_distributed() -> bool:
    """Whether a process group of more than one process is up."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_sum(values, device: torch.device) -> list[float]:
    """``values`` (floats) summed over every process; unchanged in a single process. On ``device``: nccl
    reduces tensors on the GPU only."""
    if not is_distributed():
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def broadcast_object(obj):
    """Rank 0's ``obj`` (picklable) on every process; ``obj`` itself in a single process."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
