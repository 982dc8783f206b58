"""Which layers of a model can be explained, and which one to use by default.

Layers are named by their dotted module path (``layer4``, ``blocks.6.0.conv_pwl``)
and looked up with ``model.get_submodule``. A layer can be explained with a
Grad-CAM-style method when its output is a spatial ``(N, C, H, W)`` map with
``H * W > 1``; :func:`spatial_layers` lists those, in the order the forward
pass produces them, and :func:`default_layer` picks the last one before global
pooling (``layer4`` for ResNet, ``features`` for VGG, ``bn2`` for EfficientNet-Lite).

Shapes come from one forward pass of a zero image at the model's input size on a
private view of the model (:func:`private_view`), so the shared model never sees
a hook; the result is cached per model object.
"""

from __future__ import annotations

import difflib
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from backbones.errors import LayerError

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

# Hook and state dictionaries of nn.Module that must not be shared with a view.
_PRIVATE_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_state_dict_pre_hooks",
    "_load_state_dict_pre_hooks",
    "_load_state_dict_post_hooks",
)


def private_view(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """A structural copy of ``model`` that shares its parameters and buffers.

    Every module is copied shallowly (microseconds each, no tensor copied) with
    empty hook dictionaries, so hooks, ``train``/``eval`` and ``inplace`` flags
    set on the view never reach the shared model and another thread's forward
    pass on the shared model never runs a hook of ours. The view is in eval mode
    and, unless ``inplace`` is true, every ``inplace`` flag (ReLU, ReLU6, SiLU, ...)
    is off, as captum's backward hooks need. Parameters keep their
    ``requires_grad``; gradients are taken with ``torch.autograd.grad``, so no
    ``.grad`` is ever written.
    """
    memo: dict[int, nn.Module] = {}

    def copy_module(module: nn.Module) -> nn.Module:
        done = memo.get(id(module))
        if done is not None:  # a module used twice stays one module in the view
            return done
        clone = module.__class__.__new__(module.__class__)
        state = dict(module.__dict__)
        for key in _PRIVATE_DICTS:
            if key in state:
                state[key] = type(state[key])()
        state["_parameters"] = dict(module._parameters)
        state["_buffers"] = dict(module._buffers)
        state["training"] = False
        if not inplace and isinstance(state.get("inplace"), bool):
            state["inplace"] = False
        clone.__dict__ = state
        memo[id(module)] = clone
        state["_modules"] = {k: None if v is None else copy_module(v) for k, v in module._modules.items()}
        return clone

    return copy_module(model)


@dataclass(frozen=True)
class LayerInfo:
    """One module and the shape of its output for a single image.

    ``output_shape`` is ``(C, H, W)`` for spatial layers (batch dimension
    dropped), or whatever the module returns; ``None`` when the module does not
    run in eval mode (auxiliary heads).
    """

    name: str
    type: str
    output_shape: tuple[int, ...] | None
    order: int  # position in the forward pass (completion order)

    @property
    def spatial(self) -> bool:
        s = self.output_shape
        return s is not None and len(s) == 3 and s[1] * s[2] > 1

    @property
    def depth(self) -> int:
        return self.name.count(".") + 1

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "type": self.type,
            "output_shape": None if self.output_shape is None else list(self.output_shape),
            "spatial": self.spatial,
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


def _first_tensor(out):
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    return None


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
        tensor = _first_tensor(output)
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
    for name, module in model.named_modules():
        if not name:
            continue
        shape, order = seen.get(name, (None, NOT_RUN))
        infos.append(LayerInfo(name=name, type=type(module).__name__, output_shape=shape, order=order))
    infos.sort(key=lambda i: i.order)
    result = tuple(infos)
    with _SHAPES_LOCK:
        _SHAPES.setdefault(model, {})[size] = result
    return result


def spatial_layers(target, *, input_size: Sequence[int] | None = None, max_depth: int | None = None) -> list[LayerInfo]:
    """Layers with a ``(C, H, W)`` output, ``H * W > 1``, in forward order: valid choices for a CAM.

    ``max_depth`` keeps names with at most that many dotted parts (1: ``layer4``;
    2: ``layer4.1``), for a short picker.
    """
    layers = [i for i in describe_layers(target, input_size=input_size) if i.spatial]
    if max_depth is not None:
        layers = [i for i in layers if i.depth <= max_depth]
    return layers


def _arch_of(target) -> str:
    entry = getattr(target, "entry", None)
    return entry.arch if entry is not None else ""


def _is_transformer(target) -> bool:
    entry = getattr(target, "entry", None)
    return bool(entry is not None and entry.is_transformer)


def default_layer(target, *, input_size: Sequence[int] | None = None) -> str:
    """The layer a CAM uses when none is named: the last spatial layer before global pooling.

    A small table (:data:`DEFAULT_LAYER_OVERRIDES`) names the classic choices;
    otherwise the last module, in forward order, whose output is a spatial map and
    which is not a pooling, dropout or identity module (with its outermost
    container when that produces the same map). Raises :class:`LayerError` for
    transformers and models without a spatial layer.
    """
    model = _model_of(target)
    if _is_transformer(target):
        raise LayerError(
            f"{target.name} is a transformer: Grad-CAM needs a convolutional layer with a spatial "
            "(N, C, H, W) output; use saliency, integrated-gradients or occlusion"
        )
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
    candidates = [i for i in layers if i.spatial and not isinstance(modules[i.name], _POOLING)]
    if not candidates:
        raise LayerError("this model has no layer with a spatial (N, C, H, W) output: Grad-CAM needs one")
    return candidates[-1].name


def resolve_layer(target, name: str | None, *, input_size: Sequence[int] | None = None) -> str:
    """Validate a dotted layer name (``None``: the default) and return it.

    Raises :class:`LayerError` naming the closest valid (spatial) layers when the
    name does not exist, and saying why when the layer has no spatial output.
    """
    if name is None or not str(name).strip():
        return default_layer(target, input_size=input_size)
    name = str(name).strip()
    if _is_transformer(target):
        raise LayerError(
            f"{target.name} is a transformer: its layers have no spatial (N, C, H, W) output for Grad-CAM; "
            "use saliency, integrated-gradients or occlusion"
        )
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
    if not info.spatial:
        shape = "x".join(map(str, info.output_shape))
        why = "a 1x1 map (after global pooling)" if len(info.output_shape) == 3 else f"a {len(info.output_shape) + 1}-D output ({shape})"
        raise LayerError(
            f"layer {name!r} ({info.type}) has {why}, not a spatial (N, C, H, W) map; "
            f"try {default_layer(target)}"
        )
    return name


def _short_list(names: list[str]) -> list[str]:
    # The shallowest names first: the stages users recognise (layer1..layer4, features, blocks.6).
    return sorted(names, key=lambda n: (n.count("."), names.index(n)))
