"""Where a model runs: one device setting for every command, the devices this machine has, GPU memory trouble.

    device = resolve_device("auto")          # cuda when PyTorch sees a GPU, else cpu
    resolve_device("cuda:1")                 # DeviceError naming what is available when it is not there
    list_devices()                           # (DeviceInfo("cpu", ...), DeviceInfo("cuda:0", "NVIDIA H100 ...", free_bytes=...))

``--device auto|cpu|cuda|cuda:N|mps`` on ``predict``, ``viz cam``, ``viz features`` and
``eval`` (and ``bench``, whose measurements accept cpu and cuda only) goes through
:func:`resolve_device`; the dashboard's picker lists :func:`list_devices`. A CUDA
out-of-memory error is recognised by :func:`is_out_of_memory` and turned into one line
of advice by :func:`describe_out_of_memory` after :func:`free_device_memory`.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
from torch import nn

from backbones.errors import DeviceError

#: Device types a model can run on.
DEVICE_TYPES = ("cpu", "cuda", "mps")


def _choices(types: tuple[str, ...]) -> str:
    return types[0] if len(types) == 1 else ", ".join(types[:-1]) + " or " + types[-1]


def available_devices() -> list[str]:
    """Names of the devices PyTorch can use here: ``cpu``, then ``cuda:0`` .. ``cuda:N-1``, then ``mps``."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        names.append("mps")
    return names


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(
    device: str | torch.device | None = "auto",
    *,
    types: tuple[str, ...] = DEVICE_TYPES,
    purpose: str = "",
) -> torch.device:
    """``auto`` (cuda when PyTorch sees a GPU, else cpu), ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` as a device.

    ``types`` limits the device types accepted (measurements time cpu and cuda only:
    ``purpose="measurements"`` says so in the message). Raises :class:`DeviceError`, one
    line naming what this machine has, for an unknown or missing device.
    """
    text = str(device if device is not None else "auto").strip().lower()
    if text == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if "cuda" in types and torch.cuda.is_available() \
            else torch.device("cpu")
    try:
        dev = torch.device(text)
    except RuntimeError as exc:
        raise DeviceError(f"unknown device {text!r}; use {_choices(types)}") from exc
    if dev.type not in types:
        where = f" for {purpose}" if purpose else ""
        raise DeviceError(f"device {text!r} is not supported{where}; use {_choices(types)}")
    if dev.type == "cpu":
        return torch.device("cpu")
    if dev.type == "mps":
        if not _mps_available():
            raise DeviceError(f"mps requested but Apple's Metal backend is not available on this machine; "
                              f"available: {', '.join(available_devices())}")
        return torch.device("mps")
    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
        raise DeviceError(
            f"cuda requested but no CUDA GPU is available on this machine (torch {torch.__version__}, "
            f"{build}); use --device cpu"
        )
    index = torch.cuda.current_device() if dev.index is None else dev.index
    if index >= torch.cuda.device_count():
        raise DeviceError(
            f"{text} requested but this machine has {torch.cuda.device_count()} CUDA device(s) "
            f"(available: {', '.join(available_devices())})"
        )
    return torch.device("cuda", index)


@dataclass(frozen=True)
class DeviceInfo:
    """One device for a picker: ``name`` as :func:`resolve_device` takes it, what it is, its memory.

    ``free_bytes``/``total_bytes`` are the GPU's (``torch.cuda.mem_get_info``: other processes
    count too) or the machine's memory for ``cpu``; ``None`` where it cannot be told.
    """

    name: str
    type: str
    description: str
    free_bytes: int | None
    total_bytes: int | None

    @property
    def label(self) -> str:
        """``cuda:0 (NVIDIA H100, 75.2 of 79.1 GiB free)``: what a picker shows."""
        if self.free_bytes is None or self.total_bytes is None:
            return f"{self.name} ({self.description})"
        return (f"{self.name} ({self.description}, {self.free_bytes / 2**30:.1f} of "
                f"{self.total_bytes / 2**30:.1f} GiB free)")

    def to_dict(self) -> dict:
        return {"name": self.name, "type": self.type, "description": self.description,
                "free_bytes": self.free_bytes, "total_bytes": self.total_bytes, "label": self.label}


def _host_memory() -> tuple[int | None, int | None]:
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        return os.sysconf("SC_AVPHYS_PAGES") * page, os.sysconf("SC_PHYS_PAGES") * page
    except (ValueError, OSError, AttributeError):  # not every platform names these
        return None, None


def list_devices() -> tuple[DeviceInfo, ...]:
    """Every device PyTorch can use here, ``cpu`` first, each GPU with its name and free memory."""
    free, total = _host_memory()
    out = [DeviceInfo("cpu", "cpu", f"{os.cpu_count() or 1} CPU cores", free, total)]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            try:
                gpu_free, gpu_total = torch.cuda.mem_get_info(i)
            except RuntimeError:  # a GPU in a bad state still gets listed
                gpu_free = gpu_total = None
            out.append(DeviceInfo(f"cuda:{i}", "cuda", torch.cuda.get_device_name(i), gpu_free, gpu_total))
    if _mps_available():
        out.append(DeviceInfo("mps", "mps", "Apple GPU (Metal)", None, None))
    return tuple(out)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (or buffer); CPU for a model without tensors."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is a device running out of memory (CUDA's own error, or the MPS/cuDNN wording)."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def free_device_memory(device: str | torch.device | None = None) -> None:
    """Return cached blocks to the GPU after the references to its tensors were dropped (e.g. cache eviction)."""
    gc.collect()
    dev = torch.device(device) if device is not None else None
    if torch.cuda.is_available() and (dev is None or dev.type == "cuda"):
        torch.cuda.empty_cache()
    if dev is not None and dev.type == "mps" and _mps_available():
        torch.mps.empty_cache()


def describe_out_of_memory(device: str | torch.device, *, what: str = "this") -> str:
    """One line for a user whose ``what`` did not fit on ``device``: what to try next."""
    return (f"{device} ran out of memory for {what}; try a smaller batch size, fewer models loaded at once, "
            "or --device cpu")
