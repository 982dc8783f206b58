"""Compute: multiply-accumulates (MACs) of one forward pass, and the ``counted.json`` tool.

MACs are ``torch.utils.flop_counter`` FLOPs / 2 (it counts 2 FLOPs per multiply-accumulate);
FLOPs = 2 x MACs. Catalog names are counted on the meta device (nothing allocated).

``backbones/data/counted.json`` holds the exact parameters and MACs of the timm and bundled
architectures (torchvision publishes its own); the catalog reads it and a test checks it is
current. Regenerate it after changing the catalog with::

    python -m backbones.measure.compute
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from backbones.measure.common import check_input_size, model_device, unwrap_model

MACS_METHOD = "torch.utils.flop_counter FLOPs / 2 (convolutions, linear layers and matmuls; one image)"


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
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.inference_mode():
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
            net = build_empty(entry)
            with torch.device("meta"):
                flops = _count_flops(net, torch.empty(1, *size))
        except (NotImplementedError, RuntimeError):
            # Some builders (RegNet) compute with real tensors: count on a real CPU model.
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
    """Regenerate ``data/counted.json`` (or ``path``) for the timm and bundled entries; returns the figures."""
    from backbones.zoo.catalog import DATA_DIR, list_models

    figures = {e.name: count_architecture(e.name) for e in list_models() if e.source != "torchvision"}
    target = Path(path) if path is not None else DATA_DIR / "counted.json"
    target.write_text(json.dumps(figures, indent=1, sort_keys=True) + "\n")
    return figures


if __name__ == "__main__":
    written = write_counted_figures()
    print(f"counted {len(written)} architectures")
