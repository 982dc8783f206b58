"""Compute: multiply-accumulates (MACs) of one forward pass, and the ``counted.json`` tool.

MACs are ``torch.utils.flop_counter`` FLOPs / 2 (it counts 2 FLOPs per multiply-accumulate);
FLOPs = 2 x MACs. Every MAC figure of the project comes from :class:`MacCounter`: the layer
summary (per module call) and :func:`count_macs` (one total) both count with it, so the CLI,
Architecture, Compare and Models agree. It sees every matrix product: a ``Linear`` on an
``(N, H, W, C)`` tensor once per position, attention's ``q @ k^T`` and ``attn @ v`` (the unfused
``nn.MultiheadAttention`` path is forced while counting, and PyTorch's CPU flash-attention kernel is
given the formula of the other fused kernels). Catalog names are counted on the meta device
(nothing allocated).

``backbones/data/counted.json`` holds the exact parameters and MACs of every catalog architecture
at its input size, so pages read them without building a model (or importing torch); the catalog
reads it and a test checks it is current. Regenerate it after changing the catalog with::

    python -m backbones.measure.compute
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from backbones.measure.common import check_input_size, model_device, unwrap_model

MACS_METHOD = "torch.utils.flop_counter FLOPs / 2 (convolutions, linear layers, matmuls and attention; one image)"

# Fused kernels whose work FlopCounterMode cannot see: a module that runs one gets a note instead of 0.
_FUSED_HINTS = ("attention", "transformer_encoder", "_transformer_decoder")


def _cpu_flash_attention(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    # The same count as flop_counter's formula for the CUDA flash / efficient / cuDNN kernels.
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _extra_formulas() -> dict:
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    return {op: _cpu_flash_attention} if op is not None else {}


class MacCounter(FlopCounterMode):
    """``FlopCounterMode`` that also remembers fused ops it has no formula for.

    ``macs`` is the running total (FLOPs / 2); ``missed`` lists, in order, the fused kernels
    (``_native_multi_head_attention``, ...) that ran without being counted.
    """

    def __init__(self) -> None:
        super().__init__(display=False, custom_mapping=_extra_formulas())
        self.missed: list[str] = []

    @property
    def macs(self) -> int:
        return self.get_total_flops() // 2

    def _count_flops(self, func_packet, out, args, kwargs):
        if func_packet not in self.flop_registry:
            name = str(getattr(func_packet, "__name__", func_packet))
            if any(hint in name for hint in _FUSED_HINTS):
                self.missed.append(name)
        return super()._count_flops(func_packet, out, args, kwargs)


_FASTPATH_LOCK = threading.Lock()
_FASTPATH_USERS = [0, True]  # counts running, the setting to restore


@contextlib.contextmanager
def unfused_attention() -> Iterator[None]:
    """``nn.MultiheadAttention`` takes its slow, countable path inside the block (every thread).

    Its fused inference kernel (eval mode, no grad) computes attention in one op no counter sees.
    The switch is process-wide; the slow path gives the same outputs, only a little slower, and
    the setting is restored when the last counting block ends.
    """
    from torch.backends import mha

    with _FASTPATH_LOCK:
        if _FASTPATH_USERS[0] == 0:
            _FASTPATH_USERS[1] = mha.get_fastpath_enabled()
            mha.set_fastpath_enabled(False)
        _FASTPATH_USERS[0] += 1
    try:
        yield
    finally:
        with _FASTPATH_LOCK:
            _FASTPATH_USERS[0] -= 1
            if _FASTPATH_USERS[0] == 0:
                mha.set_fastpath_enabled(_FASTPATH_USERS[1])


@dataclass(frozen=True)
class ComputeReport:
    """Multiply-accumulates of one forward pass of one image (``(1, C, H, W)``)."""

    macs: int | None
    input_size: tuple[int, int, int]
    method: str

    @property
    def flops(self) -> int | None:
        return None if self.macs is None else 2 * self.macs

    def to_dict(self) -> dict:
        return {"macs": self.macs, "flops": self.flops, "input_size": list(self.input_size), "method": self.method}


def _count_flops(model: nn.Module, x: torch.Tensor) -> int:
    with MacCounter() as counter, unfused_attention(), torch.no_grad():
        model(x)
    return int(counter.get_total_flops())


def count_macs(model, *, input_size: Sequence[int] | None = None) -> ComputeReport:
    """MACs of one forward pass of one image ``(1, *input_size)``.

    ``model`` is a catalog name (counted on the meta device: nothing is allocated, large
    models take milliseconds), an ``nn.Module`` or a LoadedModel (one real forward pass on
    its device, or a meta pass if its parameters are meta tensors). ``input_size`` defaults to
    the catalog entry's. ``macs`` is ``None`` when the model cannot be counted.
    """
    from backbones.zoo.catalog import get_entry
    from backbones.zoo.models import build_architecture, build_empty

    if isinstance(model, str):
        entry = get_entry(model)
        size = check_input_size(input_size or entry.input_size)
        try:
            # build_empty makes RegNet's parameters meta but not its buffers: move everything.
            flops = _count_flops(build_empty(entry).to("meta"), torch.empty(1, *size, device="meta"))
        except (NotImplementedError, RuntimeError):
            net = build_architecture(entry)
            flops = _count_flops(net, torch.zeros(1, *size))
        return ComputeReport(macs=flops // 2, input_size=size, method=MACS_METHOD)

    module, model_lock = unwrap_model(model)
    entry = getattr(model, "entry", None)
    size = check_input_size(input_size or (entry.input_size if entry is not None else (3, 224, 224)))
    dev = model_device(module)
    with model_lock:
        was_training = module.training
        module.eval()
        try:
            flops = _count_flops(module, torch.zeros(1, *size, device=dev))
        except (NotImplementedError, RuntimeError) as exc:
            return ComputeReport(macs=None, input_size=size, method=f"{MACS_METHOD}; failed: {str(exc)[:120]}")
        finally:
            module.train(was_training)
    return ComputeReport(macs=flops // 2, input_size=size, method=MACS_METHOD)


def count_architecture(name: str) -> dict[str, int]:
    """Exact parameters and MACs (one image at the entry's input size) of a catalog architecture.

    Both are counted without real weights: parameters on the meta device, MACs by :func:`count_macs`.
    """
    from backbones.zoo.catalog import get_entry
    from backbones.zoo.models import build_empty, count_parameters

    entry = get_entry(name)
    params, _ = count_parameters(build_empty(entry))
    return {"params": params, "macs": count_macs(entry.name).macs}


def write_counted_figures(path: str | Path | None = None) -> dict:
    """Regenerate ``data/counted.json`` (or ``path``) for every catalog entry; returns the figures."""
    from backbones.zoo.catalog import DATA_DIR, list_models

    torch.set_num_threads(1)
    figures = {e.name: count_architecture(e.name) for e in list_models()}
    target = Path(path) if path is not None else DATA_DIR / "counted.json"
    target.write_text(json.dumps(figures, indent=1, sort_keys=True) + "\n")
    return figures


if __name__ == "__main__":
    from backbones.zoo.catalog import write_snapshot

    written = write_counted_figures()
    print(f"counted {len(written)} architectures; catalog.json holds {write_snapshot()} entries")
