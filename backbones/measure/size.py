"""Size: parameters, stored bytes and the activation memory of one forward pass.

``_bytes`` are bytes, ``_mib`` MiB (2**20 bytes). The stored size is exact (the bytes
``torch.save(model.state_dict())`` writes); activation memory is estimated on CPU and
measured on CUDA (see :func:`measure_size`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from backbones.measure.common import (
    MEASURED_DEVICE_TYPES,
    MEASUREMENT_LOCK,
    check_input_size,
    check_positive,
    example_input,
    prepare_model,
    resolve_device,
    unwrap_model,
)

ACTIVATION_METHOD_CPU = (
    "estimate: bytes of every leaf module's output in one forward pass "
    "(outputs that alias an input, e.g. in-place ReLU or views, counted once)"
)
ACTIVATION_METHOD_CUDA = "torch.cuda.max_memory_allocated during one forward pass, minus memory allocated before it"
STATE_DICT_METHOD = "exact byte count of torch.save(model.state_dict())"

MIB = 1 << 20


@dataclass(frozen=True)
class SizeReport:
    """How big a model is: parameters, stored bytes and the memory one forward pass needs."""

    params: int
    trainable_params: int
    param_bytes: int
    buffer_bytes: int
    state_dict_bytes: int  # exact size of torch.save(state_dict()), i.e. of a .pth file
    activation_bytes: int | None
    activation_method: str | None
    activation_batch_size: int | None

    @property
    def state_dict_mib(self) -> float:
        return self.state_dict_bytes / MIB

    def to_dict(self) -> dict:
        d = asdict(self)
        d["state_dict_mib"] = self.state_dict_mib
        d["state_dict_method"] = STATE_DICT_METHOD
        return d


class _CountingWriter:
    """A write-only file that counts bytes, so that serialization allocates nothing."""

    def __init__(self):
        self.size = 0

    def write(self, data) -> int:
        n = len(memoryview(data).cast("B"))
        self.size += n
        return n

    def flush(self) -> None:
        pass


def serialized_size(model: nn.Module) -> int:
    """Exact byte size of ``torch.save(model.state_dict())`` (what a .pth file of it takes)."""
    writer = _CountingWriter()
    torch.save(model.state_dict(), writer)
    return writer.size


def _tensor_bytes(tensors) -> int:
    seen: set[int] = set()
    total = 0
    for t in tensors:
        if id(t) in seen:
            continue
        seen.add(id(t))
        total += t.numel() * t.element_size()
    return total


def _storage_ptr(t: torch.Tensor) -> int:
    try:
        return t.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):
        return -1


def _tensors_in(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _tensors_in(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _tensors_in(item)


def estimate_activation_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes of every leaf module's output over one forward pass of ``x`` (``(N, C, H, W)``).

    An output sharing storage with the module's input (in-place ReLU, views such as
    Flatten) is not counted again. Functional ops inside ``forward`` (additions,
    ``F.relu``) are not seen, and under inference most outputs are freed early, so this
    is an estimate of the activation traffic, not the peak resident memory.
    """
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        inside = {_storage_ptr(t) for t in _tensors_in(inputs)}
        for t in _tensors_in(output):
            if _storage_ptr(t) not in inside:
                total += t.numel() * t.element_size()

    handles = [m.register_forward_hook(hook) for m in model.modules() if not any(True for _ in m.children())]
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return total


def _cuda_activation_bytes(model: nn.Module, x: torch.Tensor, dev: torch.device) -> int:
    torch.cuda.synchronize(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    before = torch.cuda.memory_allocated(dev)
    with torch.inference_mode():
        model(x)
    torch.cuda.synchronize(dev)
    return int(torch.cuda.max_memory_allocated(dev) - before)


def measure_size(
    model,
    *,
    input_size: Sequence[int] | None = (3, 224, 224),
    batch_size: int = 1,
    device: str | torch.device = "cpu",
) -> SizeReport:
    """Parameters, bytes of parameters and buffers, serialized size and activation memory.

    Activation memory is measured for one forward pass of ``(batch_size, *input_size)``:
    estimated from module outputs on CPU, ``torch.cuda.max_memory_allocated`` on CUDA.
    ``input_size=None`` skips it.
    """
    from backbones.zoo.models import count_parameters

    module, model_lock = unwrap_model(model)
    with model_lock:
        total, trainable = count_parameters(module)
        param_bytes = _tensor_bytes(module.parameters())
        buffer_bytes = _tensor_bytes(module.buffers())
        stored = serialized_size(module)
        activation = method = None
        if input_size is not None:
            dev = resolve_device(device, types=MEASURED_DEVICE_TYPES, purpose="measurements")
            size = check_input_size(input_size)
            check_positive("batch size", batch_size)
            with MEASUREMENT_LOCK:
                was_training = module.training
                module.eval()
                try:
                    net = prepare_model(module, dev, False)
                    x = example_input(batch_size, size, dev, False)
                    if dev.type == "cuda":
                        activation, method = _cuda_activation_bytes(net, x, dev), ACTIVATION_METHOD_CUDA
                    else:
                        activation, method = estimate_activation_bytes(net, x), ACTIVATION_METHOD_CPU
                finally:
                    module.train(was_training)
    return SizeReport(
        params=total,
        trainable_params=trainable,
        param_bytes=param_bytes,
        buffer_bytes=buffer_bytes,
        state_dict_bytes=stored,
        activation_bytes=activation,
        activation_method=method,
        activation_batch_size=batch_size if activation is not None else None,
    )
