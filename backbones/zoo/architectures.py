"""Build catalog architectures (random or meta-device parameters) and fit state dicts into them.

Nothing here reads a file or knows where weights come from (:mod:`backbones.zoo.weights` does)::

    model = build_architecture("resnet50")        # random weights, eval mode, offline
    model = build_empty("vit_h_14")               # parameters on the meta device: shapes only
    fit_state_dict(model, state, label="x.pth")   # adapts the head to the checkpoint's class count
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable

import torch
from torch import nn

from backbones.errors import CheckpointError
from backbones.zoo.catalog import ModelEntry, get_entry

#: Held by every real build: ``build_empty``'s fallback patches ``nn.Module`` process-wide, and a
#: build in another thread meanwhile would get meta parameters.
BUILD_LOCK = threading.RLock()


# Build untrained models as the published ones are: GoogLeNet's figures exclude its auxiliary
# heads (torchvision drops them after loading weights); Inception-v3 keeps them. Explicit
# init_weights also silences torchvision's warning about a future default.
_TORCHVISION_DEFAULTS = {
    "googlenet": {"aux_logits": False, "init_weights": True},
    "inception_v3": {"init_weights": True},
}


def _build_torchvision(entry: ModelEntry, **kwargs) -> nn.Module:
    import torchvision

    defaults = dict(_TORCHVISION_DEFAULTS.get(entry.arch, {}))
    if entry.arch.startswith("vit_"):
        # ViT's position embedding depends on the input size its default weights use (518 for SWAG).
        defaults["image_size"] = entry.input_size[-1]
    return torchvision.models.get_model(entry.arch, weights=None, **{**defaults, **kwargs})


def _build_timm(entry: ModelEntry, **kwargs) -> nn.Module:
    import timm

    return timm.create_model(entry.arch, pretrained=False, **kwargs)


#: Which library builds each source's architectures (the bundled weights fit timm's).
_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "torchvision": _build_torchvision,
    "timm": _build_timm,
    "bundled": _build_timm,
}


def _build(entry: ModelEntry, **kwargs) -> nn.Module:
    return _BUILDERS[entry.source](entry, **kwargs).eval()


def build_architecture(entry: ModelEntry | str, **kwargs) -> nn.Module:
    """The architecture with random weights, in eval mode (no download, no file read)."""
    entry = get_entry(entry) if isinstance(entry, str) else entry
    with BUILD_LOCK:
        return _build(entry, **kwargs)


@contextlib.contextmanager
def _empty_parameters():
    """Make every parameter registered inside the block a meta tensor (no memory, no init)."""
    original = nn.Module.register_parameter

    def register_parameter(module, name, param):
        original(module, name, param)
        if param is not None:
            p = module._parameters[name]
            module._parameters[name] = nn.Parameter(p.to("meta"), requires_grad=p.requires_grad)

    with BUILD_LOCK:
        nn.Module.register_parameter = register_parameter
        try:
            yield
        finally:
            nn.Module.register_parameter = original


def build_empty(entry: ModelEntry | str, **kwargs) -> nn.Module:
    """The architecture with parameters on the meta device: shapes only, built in milliseconds.

    Enough to count parameters of the largest models without allocating them.
    RegNet builders compute with real tensors, so for them only the parameters
    are made meta.
    """
    entry = get_entry(entry) if isinstance(entry, str) else entry
    try:
        with torch.device("meta"):
            return _build(entry, **kwargs)
    except (NotImplementedError, RuntimeError):
        with _empty_parameters():
            return _build(entry, **kwargs)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """``(total, trainable)`` parameter counts (shared tensors counted once)."""
    seen: set[int] = set()
    total = trainable = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return total, trainable


def _set_submodule(model: nn.Module, name: str, module: nn.Module | None) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def _resize_head(module: nn.Module, out: int) -> nn.Module:
    if isinstance(module, nn.Linear):
        return nn.Linear(module.in_features, out, bias=module.bias is not None)
    if isinstance(module, nn.Conv2d):
        return nn.Conv2d(
            module.in_channels,
            out,
            module.kernel_size,
            module.stride,
            module.padding,
            module.dilation,
            module.groups,
            module.bias is not None,
        )
    raise CheckpointError(f"cannot resize a {type(module).__name__} head")


def _fix_legacy_densenet_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # Old DenseNet checkpoints say "norm.1" where the module is now "norm1" (torchvision does the same).
    pattern = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")
    out = {}
    for key, value in state.items():
        m = pattern.match(key)
        out[m.group(1) + m.group(2) if m else key] = value
    return out


def fit_state_dict(model: nn.Module, state: dict[str, torch.Tensor], *, label: str = "checkpoint") -> int:
    """Load ``state`` into ``model``, adapting the classifier to the checkpoint's class count.

    Classification heads (layers producing the architecture's 1000 outputs) are
    replaced to match the checkpoint; auxiliary heads the checkpoint lacks are
    dropped (GoogLeNet, Inception-v3). Anything else that does not fit raises
    :class:`CheckpointError` naming a few missing, unexpected or mismatched keys.
    Returns the number of classes.
    """
    state = _fix_legacy_densenet_keys(state)
    heads = [
        name
        for name, m in model.named_modules()
        if (isinstance(m, nn.Linear) and m.out_features == 1000)
        or (isinstance(m, nn.Conv2d) and m.out_channels == 1000 and m.kernel_size == (1, 1))
    ]
    num_classes = None
    for name in heads:
        w = state.get(f"{name}.weight")
        module = model.get_submodule(name)
        if w is None or tuple(w.shape) == tuple(module.weight.shape):
            continue
        if tuple(w.shape[1:]) != tuple(module.weight.shape[1:]):
            # Not a head of another width: another architecture. The key comparison below
            # names missing / unexpected / mismatched keys, not just this one.
            continue
        _set_submodule(model, name, _resize_head(module, int(w.shape[0])))
        num_classes = int(w.shape[0])
    # Auxiliary classifiers: keep them when the checkpoint has them, drop them when not.
    for aux in ("aux1", "aux2", "AuxLogits"):
        if getattr(model, aux, None) is not None and not any(k.startswith(aux + ".") for k in state):
            setattr(model, aux, None)
            if hasattr(model, "aux_logits"):
                model.aux_logits = False
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
        for k in state
        if k in expected and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        if mismatched:
            parts.append(f"{len(mismatched)} mismatched (e.g. {'; '.join(mismatched[:2])})")
        hint = " (a checkpoint for another architecture?)" if len(missing) + len(mismatched) > 2 else ""
        raise CheckpointError(f"{label} does not fit this architecture{hint}: " + "; ".join(parts))
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise CheckpointError(f"{label}: {str(exc).splitlines()[0]}") from exc
    if num_classes is None:
        num_classes = 1000 if heads else _infer_outputs(model)
    return num_classes


def _infer_outputs(model: nn.Module) -> int:
    last = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return last[-1].out_features if last else 1000


def build_torchvision_trained(arch: str, enum, state: dict[str, torch.Tensor]) -> nn.Module:
    """torchvision's builder for ``arch`` with weights ``enum``, given the tensors of those weights.

    The builder applies its per-model fixes (DenseNet's old key names, Inception's and GoogLeNet's
    transform_input and auxiliary heads, ViT's image size, the class count), but it would read the weights
    file itself with ``torch.load(weights_only=False)``. While it runs, ``enum.get_state_dict()`` returns
    ``state`` (read safely by the caller) and any other weights enum is read with ``weights_only=True``;
    the original method is back afterwards, even on error. Holds :data:`BUILD_LOCK`.
    """
    import torchvision
    from torchvision.models._api import WeightsEnum

    original = WeightsEnum.get_state_dict

    def get_state_dict(self, *args, **kwargs):
        if self is enum:
            return dict(state)
        kwargs["weights_only"] = True
        return original(self, *args, **kwargs)

    with BUILD_LOCK:
        WeightsEnum.get_state_dict = get_state_dict
        try:
            return torchvision.models.get_model(arch, weights=enum)
        finally:
            WeightsEnum.get_state_dict = original
