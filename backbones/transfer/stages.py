"""Which layers a fine-tune trains: the classifier to replace, the last stage to unfreeze, their train mode.

    classifier_name(model)                  # "fc", "classifier.3", "head.fc"
    last_stage_parameters(model, "resnet50")  # layer4.* and fc.*

The last stage is ResNet's ``layer4``, RegNet's last trunk block, ViT's last encoder layer, the last two
blocks with parameters of a ``features`` sequence (EfficientNet, MobileNet, ConvNeXt, DenseNet, VGG, Swin),
and timm's last coarse parameter group before the head (its ``group_matcher``).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from backbones.errors import CheckpointError
from backbones.transfer.prelogits import classifier_name


def _last_stage_prefix(model: nn.Module) -> str:
    """The dotted name of the first module of the last stage."""
    group_matcher = getattr(model, "group_matcher", None)
    if callable(group_matcher):  # timm: its own coarse parameter groups, the last one before the head
        from timm.models import group_parameters

        groups = group_parameters(model, group_matcher(coarse=True))
        head = classifier_name(model)
        body = [g for g in sorted(groups) if not all(n.startswith(head + ".") for n in groups[g])]
        if body:
            return groups[body[-1]][0].rsplit(".", 1)[0]
    names = dict(model.named_children())
    if "layer4" in names:  # ResNet, ResNeXt, Wide ResNet
        return "layer4"
    trunk = names.get("trunk_output")  # RegNet
    if isinstance(trunk, nn.Sequential) and len(trunk):
        return f"trunk_output.{list(trunk.named_children())[-1][0]}"
    encoder = names.get("encoder")  # ViT
    if encoder is not None and isinstance(getattr(encoder, "layers", None), nn.Sequential):
        return f"encoder.layers.{len(encoder.layers) - 1}"
    features = names.get("features")
    if isinstance(features, nn.Sequential) and len(features):
        # EfficientNet, MobileNet, ConvNeXt, DenseNet, VGG, Swin: the last two blocks that hold parameters
        # (the last stage and the final 1x1 convolution or norm; ConvNeXt's downsampling and its last stage).
        with_params = [n for n, m in features.named_children() if any(True for _ in m.parameters())]
        if with_params:
            return f"features.{with_params[-2] if len(with_params) > 1 else with_params[-1]}"
    raise CheckpointError(f"{type(model).__name__}: its last stage is not known here; fine-tune with stage 'head'")


def last_stage_parameters(model: nn.Module, arch: str | None = None) -> list[tuple[str, nn.Parameter]]:
    """``(name, parameter)`` of the last stage and everything after it (final norm, classifier), in order.

    ``arch`` (a catalog name) only names the model in errors. Parameters are registered in forward order in
    these architectures, so "from the last stage's first parameter on" is the last stage plus the head.
    """
    prefix = _last_stage_prefix(model)
    params = list(model.named_parameters())
    start = next((i for i, (n, _) in enumerate(params) if n == prefix or n.startswith(prefix + ".")), None)
    if start is None:
        raise CheckpointError(f"{arch or type(model).__name__}: its last stage {prefix!r} has no parameters")
    return params[start:]


def replace_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def set_trainable_mode(model: nn.Module, trainable_roots: Sequence[nn.Module]) -> None:
    """Eval mode everywhere (frozen BatchNorm keeps its statistics, frozen dropout is off), train mode in the
    parts being trained. Call it after ``model.train()``."""
    model.eval()
    for m in trainable_roots:
        m.train()


def trainable_roots(model: nn.Module) -> list[nn.Module]:
    """The modules all of whose parameters train (the last stage, the head, with their dropout)."""
    return [m for _, m in model.named_modules()
            if any(True for _ in m.parameters()) and all(p.requires_grad for p in m.parameters())]
