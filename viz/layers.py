"""Which layers of a model can be explained, and which one to use by default.

Layers are named by their dotted module path (``layer4``, ``blocks.6.0.conv_pwl``)
and looked up with ``model.get_submodule``. A layer can be explained with a
Grad-CAM-style method when its output lies over the image on a grid with
``H * W > 1``: a CNN's ``(N, C, H, W)`` map, a Swin stage's channels-last
``(N, H, W, C)`` or a ViT's tokens ``(N, 1 + T, C)`` whose patch tokens are laid
out on their grid (:mod:`backbones.layouts`, one adapter for all three).
:func:`spatial_layers` lists those, in the order the forward pass produces them,
and :func:`default_layer` picks the last one before global pooling (``layer4``
for ResNet, ``features`` for VGG, ``bn2`` for EfficientNet-Lite, ``norm`` for
Swin, ``blocks.3`` for MaxViT, the last encoder block's ``ln_1`` for ViT).

A ViT's classifier reads only the class token, so after the last attention
layer the patch tokens no longer reach the class score: their gradient is zero
and a CAM there is empty. Such layers are listed with that reason
(:attr:`LayerInfo.note`) and are not offered.

Shapes come from one forward pass of a zero image at the model's input size on a
private view of the model (:func:`private_view`), so the shared model never sees
a hook; the result is cached per model object.
"""

from __future__ import annotations

import dataclasses
import difflib
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from backbones.errors import LayerError
from backbones.layouts import ActivationLayout, detect_layout, first_tensor, patch_size_of
from backbones.private_view import private_view

#: Default layers that a generic rule would get wrong or that users know by name.
#: Keys are architecture-name prefixes (torchvision or timm builder names).
DEFAULT_LAYER_OVERRIDES: dict[str, str] = {
    "squeezenet": "features",  # the generic rule would pick the 1000-channel classifier conv
    "vgg": "features",
    "alexnet": "features",
    "googlenet": "inception5b",
    "inception_v3": "Mixed_7c",
    "densenet": "features",
    "shufflenet": "conv5",
    "regnet_": "trunk_output",
    "convnext": "features",
    "swin": "norm",  # the generic rule would pick `permute`, the same map transposed for the pooling
}

#: ``LayerInfo.order`` of a module that does not run in the forward pass (eval mode).
NOT_RUN = 10**9

# Modules whose output merely repeats or pools their input: never a default.
_POOLING = (
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.AvgPool2d,
    nn.MaxPool2d,
    nn.Identity,
    nn.Dropout,
    nn.Flatten,
)

#: Why a token layer after a ViT's last attention cannot be explained.
AFTER_LAST_ATTENTION = (
    "after the last attention layer only the class token reaches the classifier, so the patch tokens "
    "get no gradient here and the map is empty; use {layer} or an earlier block"
)


@dataclass(frozen=True)
class LayerInfo:
    """One module and the shape of its output for a single image.

    ``output_shape`` is what the module returns, batch dimension dropped
    (``(C, H, W)`` for a CNN layer, ``(197, 768)`` for a ViT block); ``None``
    when the module does not run in eval mode (auxiliary heads). ``layout``
    says how that output lies over the image (``None``: it does not, a vector);
    ``note`` why a layer with a grid still cannot be explained.
    """

    name: str
    type: str
    output_shape: tuple[int, ...] | None
    order: int  # position in the forward pass (completion order)
    layout: ActivationLayout | None = None
    note: str | None = None

    @property
    def spatial(self) -> bool:
        """Whether the output lies on a grid of more than one position (and can be explained)."""
        return self.layout is not None and self.layout.positions > 1 and self.note is None

    @property
    def map_shape(self) -> tuple[int, int, int] | None:
        """``(C, h, w)`` of the output laid out as a map, or ``None``."""
        if self.layout is None:
            return None
        return (self.layout.channels, *self.layout.grid)

    @property
    def depth(self) -> int:
        return self.name.count(".") + 1

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "type": self.type,
            "output_shape": None if self.output_shape is None else list(self.output_shape),
            "spatial": self.spatial,
            "layout": None if self.layout is None else self.layout.to_dict(),
            "note": self.note,
        }


_SHAPES: weakref.WeakKeyDictionary[nn.Module, dict[tuple, tuple[LayerInfo, ...]]] = weakref.WeakKeyDictionary()
_SHAPES_LOCK = threading.Lock()


def _input_size_of(target) -> tuple[int, int, int]:
    pre = getattr(target, "preprocessing", None)
    if pre is not None:
        return tuple(pre.input_size)
    entry = getattr(target, "entry", None)
    if entry is not None:
        return tuple(entry.input_size)
    return (3, 224, 224)


def _model_of(target) -> nn.Module:
    return target.model if hasattr(target, "model") and isinstance(target.model, nn.Module) else target




def describe_layers(target, *, input_size: Sequence[int] | None = None) -> tuple[LayerInfo, ...]:
    """Every named module of a model with its output shape, in forward order.

    ``target`` is a :class:`~backbones.zoo.models.LoadedModel` or an ``nn.Module``;
    ``input_size`` is ``(3, H, W)`` (default: the model's preprocessing).
    Costs one forward pass of a zero image the first time, then is cached.
    """
    model = _model_of(target)
    size = tuple(input_size) if input_size is not None else _input_size_of(target)
    with _SHAPES_LOCK:
        cached = _SHAPES.get(model, {}).get(size)
    if cached is not None:
        return cached
    view = private_view(model)
    names = {id(m): n for n, m in view.named_modules() if n}
    seen: dict[str, tuple[tuple[int, ...] | None, int]] = {}
    counter = [0]

    def hook(module, _inputs, output):
        tensor = first_tensor(output)
        counter[0] += 1
        name = names[id(module)]
        seen[name] = (None if tensor is None else tuple(tensor.shape[1:]), counter[0])

    for module in view.modules():
        if id(module) in names:
            module.register_forward_hook(hook)
    try:
        param = next(iter(model.parameters()), None)
        dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
        device = param.device if param is not None else torch.device("cpu")
        with torch.inference_mode():
            view(torch.zeros((1, *size), dtype=dtype, device=device))
    except Exception as exc:  # a model that cannot run at this size: say which
        raise LayerError(f"cannot run the model on a {size} input to list its layers: {str(exc).splitlines()[0][:160]}") from exc
    infos = []
    hw = (int(size[1]), int(size[2]))
    patch = patch_size_of(model)
    for name, module in model.named_modules():
        if not name:
            continue
        shape, order = seen.get(name, (None, NOT_RUN))
        layout = None if shape is None else detect_layout(shape, hw, patch_size=patch)
        infos.append(LayerInfo(name=name, type=type(module).__name__, output_shape=shape, order=order, layout=layout))
    infos.sort(key=lambda i: i.order)
    result = _mark_dead_tokens(infos, dict(model.named_modules()))
    with _SHAPES_LOCK:
        _SHAPES.setdefault(model, {})[size] = result
    return result


def is_attention(module: nn.Module) -> bool:
    """torch's ``nn.MultiheadAttention`` or a module class named ``...Attention`` (timm, Swin)."""
    return isinstance(module, nn.MultiheadAttention) or type(module).__name__.endswith("Attention")


def _mark_dead_tokens(infos: list[LayerInfo], modules: dict[str, nn.Module]) -> tuple[LayerInfo, ...]:
    """Token layers with a class token that complete after the last attention: a note saying why they are empty."""
    attention = [i.order for i in infos if i.order < NOT_RUN and is_attention(modules[i.name])]
    if not attention:
        return tuple(infos)
    last = max(attention)
    before = [i for i in infos if i.order < last and i.layout is not None and i.layout.kind == "tokens"]
    hint = before[-1].name if before else "an earlier layer"
    return tuple(
        dataclasses.replace(i, note=AFTER_LAST_ATTENTION.format(layer=hint))
        if i.layout is not None and i.layout.kind == "tokens" and i.layout.prefix > 0 and i.order >= last
        else i
        for i in infos
    )



def spatial_layers(target, *, input_size: Sequence[int] | None = None, max_depth: int | None = None) -> list[LayerInfo]:
    """Layers whose output lies on a grid of more than one position, in forward order: valid choices for a CAM.

    CNN maps, channels-last maps and token grids alike (:attr:`LayerInfo.layout`);
    token layers a CAM cannot use (:attr:`LayerInfo.note`) are left out.
    ``max_depth`` keeps names with at most that many dotted parts (1: ``layer4``;
    2: ``layer4.1``), for a short picker.
    """
    layers = [i for i in describe_layers(target, input_size=input_size) if i.spatial]
    if max_depth is not None:
        layers = [i for i in layers if i.depth <= max_depth]
    return layers


def find_layer(target, name: str, *, input_size: Sequence[int] | None = None) -> LayerInfo:
    """The :class:`LayerInfo` of an explainable layer (validated with :func:`resolve_layer`)."""
    name = resolve_layer(target, name, input_size=input_size)
    return next(i for i in describe_layers(target, input_size=input_size) if i.name == name)


def _arch_of(target) -> str:
    entry = getattr(target, "entry", None)
    return entry.arch if entry is not None else ""


def _never_default(module: nn.Module) -> bool:
    # Pooling, identity and torchvision's Permute only repeat or rearrange their input's map.
    return isinstance(module, _POOLING) or type(module).__name__ == "Permute"


def default_layer(target, *, input_size: Sequence[int] | None = None) -> str:
    """The layer a CAM uses when none is named: the last spatial layer before global pooling.

    A small table (:data:`DEFAULT_LAYER_OVERRIDES`) names the classic choices;
    otherwise the last module, in forward order, whose output lies on a grid
    (:func:`spatial_layers`) and which is not a pooling, dropout, identity or
    permute module. For a ViT that is the last encoder block's ``ln_1``: the
    normalised tokens the last attention reads (later layers reach the class
    score through the class token only). Raises :class:`LayerError` for models
    without such a layer.
    """
    model = _model_of(target)
    arch = _arch_of(target)
    for prefix, name in DEFAULT_LAYER_OVERRIDES.items():
        if arch.startswith(prefix):
            try:
                model.get_submodule(name)
                return name
            except AttributeError:
                break  # a user's variant without the usual name: fall back to the rule
    layers = describe_layers(target, input_size=input_size)
    modules = dict(model.named_modules())
    candidates = [i for i in layers if i.spatial and not _never_default(modules[i.name])]
    if not candidates:
        raise LayerError("this model has no layer whose output lies on a grid over the image: Grad-CAM needs one")
    return candidates[-1].name


def resolve_layer(target, name: str | None, *, input_size: Sequence[int] | None = None) -> str:
    """Validate a dotted layer name (``None``: the default) and return it.

    Raises :class:`LayerError` naming the closest valid (spatial) layers when the
    name does not exist, and saying why when the layer has no spatial output.
    """
    if name is None or not str(name).strip():
        return default_layer(target, input_size=input_size)
    name = str(name).strip()
    model = _model_of(target)
    layers = describe_layers(target, input_size=input_size)
    by_name = {i.name: i for i in layers}
    info = by_name.get(name)
    if info is None:
        modules = dict(model.named_modules())
        valid = [i.name for i in layers if i.spatial and not isinstance(modules[i.name], _POOLING)]
        close = difflib.get_close_matches(name, valid, n=4, cutoff=0.5)
        rest = [n for n in _short_list(valid) if n not in close]
        listing = ", ".join((close + rest)[:10])
        raise LayerError(
            f"no layer named {name!r} in this model; {len(valid)} layers have a spatial output, e.g. {listing} "
            "(all: python -m viz layers --model M)"
        )
    if info.output_shape is None:
        kind = "is not used in the forward pass (eval mode)" if info.order >= NOT_RUN else "has no tensor output"
        raise LayerError(f"layer {name!r} ({info.type}) {kind}; pick one with a spatial output, e.g. {default_layer(target)}")
    if info.note is not None:
        raise LayerError(f"layer {name!r} ({info.type}): {info.note}")
    if not info.spatial:
        shape = "x".join(map(str, info.output_shape))
        if len(info.output_shape) == 3:
            why = "a 1x1 map (after global pooling)"
        elif len(info.output_shape) == 2:
            why = f"a {shape} output whose rows do not fill a grid of patches"
        else:
            why = f"a {len(info.output_shape) + 1}-D output ({shape})"
        raise LayerError(
            f"layer {name!r} ({info.type}) has {why}, not a map over the image; "
            f"try {default_layer(target)}"
        )
    return name


def _short_list(names: list[str]) -> list[str]:
    # The shallowest names first: the stages users recognise (layer1..layer4, features, blocks.6).
    return sorted(names, key=lambda n: (n.count("."), names.index(n)))
