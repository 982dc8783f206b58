"""Layer-by-layer summaries: shapes, parameters, MACs, receptive fields and worked derivations.

The seed notes print torchinfo tables and then work out by hand, per layer, the
output size ``N = (W - F + 2P) / S + 1``, the parameters (weights + bias), the
"neurons" (elements of the output feature map) and the receptive field
``F(i) = (F(i+1) - 1) x stride + ksize``. :func:`summarize_model` does all of
that at once and returns an immutable :class:`ModelSummary` the dashboard can
expand, search and step through::

    s = summarize_model("alexnet")                 # cached per (model, input size)
    s.find("features.0").derivation
    # 'Conv2d 3->64, k11 s4 p2: 64*(3*11*11)+64 = 23,296 params; out 55 = (224-11+2*2)/4+1;
    #  55x55x64 = 193,600 neurons'
    s.find("features.2").receptive_field, s.find("features.2").jump   # (19, 8)
    s.to_dict(depth=2)                             # the ``summary --json`` document

Rows, totals and mult-adds come from ``torchinfo.summary`` (one row per module
call, in execution order, like its printed table), so totals equal torchinfo's.
Catalog models are summarised on the meta device (shapes only: VGG19 in well
under a second instead of seconds); a model that cannot run there is built for
real.

Receptive fields follow the data, not the module order: during the same
forward pass a torch function mode tags every tensor with the receptive field
and jump (effective stride, in input pixels) of its elements, per image axis:

* convolution and pooling with kernel ``k``, stride ``s``, dilation ``d``:
  ``rf_out = rf_in + d*(k-1)*jump_in`` and ``jump_out = jump_in*s``;
* where paths merge (residual add, Inception / DenseNet concat) the largest wins;
* global pooling, spatial means and flatten make every element see the whole
  input: the receptive field becomes the full extent ``rf + (H-1)*jump`` and the
  row says ``whole_input``; linear layers after that keep it;
* squeeze-and-excitation gates (a 1x1 map broadcast over the feature map) are
  left out of the merge, as papers do, or every SE network would "see the whole
  image" after its first block;
* element-wise ops, padding and normalisation keep the field (normalisation
  statistics are not counted as spatial context).

Anything the tracer does not understand (upsampling, transposed convolution,
scripted modules) leaves the receptive field null with a note rather than a
wrong number; transformers (ViT, Swin, MaxViT) report null: attention mixes
every position, so a receptive field does not apply.
"""

from __future__ import annotations

import difflib
import math
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils.weak import WeakIdKeyDictionary

from backbones.errors import BackboneError, CancelledError, LayerError

if TYPE_CHECKING:
    from backbones.zoo.models import LoadedModel

Progress = Callable[[int, int, str], None]
ShouldStop = Callable[[], bool]

#: Largest accepted input side: summaries of real models run a real forward pass.
MAX_INPUT_SIDE = 2048

TRANSFORMER_NOTE = "does not apply: self-attention mixes every position (transformer)"
WHOLE_NOTE = "whole input: every element sees the entire image (global pooling or flatten)"
APPROX_NOTE = "approximate: adaptive pooling with uneven windows"


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class LayerRow:
    """One module call: a row of the summary tree.

    ``name`` is the dotted module path (``model.get_submodule(name)``); the root
    row's name is ``""`` and its type the model's class. Shapes include the
    batch dimension of 1, ``(1, C, H, W)``. ``params`` counts parameters not
    already shown in a child row (so the rows add up to the total);
    ``params_total`` everything under the node. ``mult_adds`` is torchinfo's
    count for a leaf and the sum over the leaves below for a container.
    ``receptive_field`` / ``jump`` are in input pixels, the larger of the two
    image axes (``receptive_field_hw`` / ``jump_hw`` give both); ``jump`` is null
    where the output is not a 4-D feature map. ``call`` > 0 marks a module run
    again in the same forward pass (a reused ReLU): its parameters count once.
    """

    name: str
    type: str
    depth: int
    parent: str | None
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    params: int
    params_total: int
    trainable_params: int
    trainable: bool | None
    mult_adds: int
    kernel_size: tuple[int, ...] | None
    stride: tuple[int, ...] | None
    padding: tuple[int, ...] | str | None
    dilation: tuple[int, ...] | None
    groups: int | None
    neurons: int | None
    receptive_field: int | None
    jump: int | None
    receptive_field_hw: tuple[int, int] | None
    jump_hw: tuple[int, int] | None
    whole_input: bool
    rf_note: str | None
    rf_derivation: str | None
    derivation: str | None
    is_leaf: bool
    call: int = 0
    layout: str | None = None

    @property
    def short_name(self) -> str:
        """The last part of the dotted name (the class name for the root)."""
        return self.name.rpartition(".")[2] if self.name else self.type

    @property
    def is_spatial(self) -> bool:
        """Whether the output is a 4-D ``(N, C, H, W)`` feature map (not a channels-last ``(N, H, W, C)`` one)."""
        return len(self.output_shape) == 4 and self.layout != "NHWC"

    def to_dict(self) -> dict:
        def seq(v):
            return list(v) if isinstance(v, tuple) else v

        return {
            "name": self.name,
            "type": self.type,
            "depth": self.depth,
            "parent": self.parent,
            "input_shape": list(self.input_shape) or None,
            "output_shape": list(self.output_shape) or None,
            "params": self.params,
            "params_total": self.params_total,
            "trainable_params": self.trainable_params,
            "mult_adds": self.mult_adds,
            "trainable": self.trainable,
            "kernel_size": seq(self.kernel_size),
            "stride": seq(self.stride),
            "padding": seq(self.padding),
            "dilation": seq(self.dilation),
            "groups": self.groups,
            "neurons": self.neurons,
            "receptive_field": self.receptive_field,
            "jump": self.jump,
            "receptive_field_hw": seq(self.receptive_field_hw),
            "jump_hw": seq(self.jump_hw),
            "whole_input": self.whole_input,
            "rf_note": self.rf_note,
            "rf_derivation": self.rf_derivation,
            "derivation": self.derivation,
            "is_leaf": self.is_leaf,
            "call": self.call,
            "layout": self.layout,
        }


@dataclass(frozen=True)
class ModelSummary:
    """A model's layer tree for one input size. Immutable (cached and shared).

    ``layers`` are in execution order, each container before its children
    (like torchinfo's table); ``input_size`` is ``(C, H, W)``.
    """

    model: str
    input_size: tuple[int, int, int]
    total_params: int
    trainable_params: int
    total_mult_adds: int
    layers: tuple[LayerRow, ...]
    architecture: str = ""
    receptive_fields: bool = True
    notes: tuple[str, ...] = ()

    @property
    def max_depth(self) -> int:
        return max((r.depth for r in self.layers), default=0)

    @property
    def names(self) -> tuple[str, ...]:
        """Every module name with a row, once, in execution order."""
        return tuple(dict.fromkeys(r.name for r in self.layers))

    def find(self, name: str, *, call: int = 0) -> LayerRow:
        """The row of ``name`` (its ``call``-th run); :class:`LayerError` names close matches."""
        for row in self.layers:
            if row.name == name and row.call == call:
                return row
        close = difflib.get_close_matches(name, [n for n in self.names if n], n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; {len(self.names) - 1} layers, e.g. {', '.join(self.names[1:4])}"
        raise LayerError(f"{self.model} has no layer {name!r}{hint}")

    def index(self, name: str, *, call: int = 0) -> int:
        """Position of ``name`` in :attr:`layers` (for stepping to the next / previous row)."""
        for i, row in enumerate(self.layers):
            if row.name == name and row.call == call:
                return i
        self.find(name, call=call)  # raises with suggestions
        raise LayerError(name)  # unreachable

    def children(self, name: str = "") -> tuple[LayerRow, ...]:
        """Direct children of ``name`` (``""`` = the model), first calls only."""
        if name:
            self.find(name)
        return tuple(r for r in self.layers if r.parent == name and r.call == 0)

    def rows(self, max_depth: int | None = None) -> tuple[LayerRow, ...]:
        """Rows with ``depth <= max_depth`` (all rows for ``None``): the tree expanded to a depth."""
        if max_depth is None:
            return self.layers
        return tuple(r for r in self.layers if r.depth <= max_depth)

    def blocks(self, depth: int = 1) -> tuple[LayerRow, ...]:
        """First-call rows at exactly ``depth``: the bars of a params / MACs per block chart.

        Their ``params_total`` and ``mult_adds`` cover everything below them.
        """
        return tuple(r for r in self.layers if r.depth == depth and r.call == 0)

    def leaves(self) -> tuple[LayerRow, ...]:
        """Leaf rows (conv, norm, activation, ...): stepping through the network one layer at a time."""
        return tuple(r for r in self.layers if r.is_leaf)

    def search(self, text: str) -> tuple[LayerRow, ...]:
        """Rows whose name or type contains ``text`` (case-insensitive)."""
        needle = text.strip().lower()
        if not needle:
            return self.layers
        return tuple(r for r in self.layers if needle in r.name.lower() or needle in r.type.lower())

    def spatial_layers(self) -> tuple[str, ...]:
        """Names of layers whose output is a 4-D feature map: choices for a CAM / feature-map layer picker.

        In execution order, each name once; the model itself, 1x1 maps (after global
        pooling, inside SE gates), channels-last outputs and maps where attention has
        mixed every position (transformers after their patch embedding) are left out.
        """
        traced = any(r.layout is not None for r in self.layers)
        return tuple(
            dict.fromkeys(
                r.name
                for r in self.layers
                if r.name
                and (r.layout == "NCHW" if traced else r.is_spatial)
                and r.output_shape[2] * r.output_shape[3] > 1
            )
        )

    def to_dict(self, depth: int | None = None) -> dict:
        """The ``summary --json`` document; ``depth`` keeps rows with ``depth <= depth``."""
        return {
            "model": self.model,
            "architecture": self.architecture,
            "input_size": list(self.input_size),
            "total_params": self.total_params,
            "trainable_params": self.trainable_params,
            "non_trainable_params": self.total_params - self.trainable_params,
            "total_mult_adds": self.total_mult_adds,
            "receptive_fields": self.receptive_fields,
            "notes": list(self.notes),
            "layers": [r.to_dict() for r in self.rows(depth)],
        }


# --------------------------------------------------------------------------- receptive-field tracing


class _Field(NamedTuple):
    """Receptive field and jump of a tensor's elements, per image axis (H, W), in input pixels.

    ``axes`` are the tensor dimensions holding H and W: ``(2, 3)`` for NCHW,
    ``(1, 2)`` once permuted to NHWC (ConvNeXt blocks, Swin).
    """

    rf: tuple[int, int]
    jump: tuple[int, int]
    whole: bool = False
    approx: bool = False
    axes: tuple[int, int] = (2, 3)


_INPUT_FIELD = _Field((1, 1), (1, 1))


class _Untraced(NamedTuple):
    reason: str


# Torch functions that never produce a tensor we care about: skipped before any work.
_IGNORED = frozenset(
    {
        "size", "dim", "numel", "element_size", "untyped_storage", "_set_grad_enabled", "_assert",
        "is_floating_point", "is_complex", "data_ptr", "stride", "storage_offset", "is_contiguous",
        "__len__", "__bool__", "__int__", "__float__", "item", "tolist", "__format__", "__repr__",
        "get_device", "__hash__", "_is_view",
    }
)
_CONV = frozenset({"conv2d"})
_POOL = frozenset({"max_pool2d", "max_pool2d_with_indices", "_max_pool2d", "avg_pool2d", "lp_pool2d"})
_ADAPTIVE = frozenset(
    {"adaptive_avg_pool2d", "adaptive_max_pool2d", "adaptive_max_pool2d_with_indices", "_adaptive_max_pool2d"}
)
_PERMUTES = frozenset({"permute", "transpose", "swapaxes", "swapdims"})
_REDUCTIONS = frozenset(
    {"mean", "sum", "amax", "amin", "max", "min", "std", "var", "nanmean", "nansum", "logsumexp", "std_mean", "var_mean"}
)
_RESHAPES = frozenset({"view", "reshape", "flatten", "_unsafe_view", "view_as", "reshape_as"})
# Spatial resampling the arithmetic above does not cover: say so instead of guessing.
_UNSUPPORTED = frozenset(
    {
        "interpolate", "upsample", "upsample_nearest", "upsample_bilinear", "grid_sample", "pixel_shuffle",
        "pixel_unshuffle", "unfold", "fold", "roll", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
        "conv3d", "max_pool3d", "avg_pool3d", "max_unpool2d", "fractional_max_pool2d", "affine_grid",
    }
)
_ONE_D = frozenset({"conv1d", "max_pool1d", "avg_pool1d", "adaptive_avg_pool1d", "adaptive_max_pool1d"})


def _pair(value) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    value = tuple(int(v) for v in value)
    return (value[0], value[0]) if len(value) == 1 else (value[0], value[1])


def _arg(args, kwargs, index: int, key: str, default=None):
    if len(args) > index:
        return args[index]
    return kwargs.get(key, default)


def _tensors(obj, depth: int = 0) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if depth < 3 and isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _tensors(o, depth + 1)]
    if depth < 3 and isinstance(obj, dict):
        return [t for o in obj.values() for t in _tensors(o, depth + 1)]
    return []


def _merge(fields: Sequence[_Field], axes: tuple[int, int] | None = None) -> _Field:
    """Paths meeting (add, concat, multiply): the largest field wins, per axis."""
    return _Field(
        (max(f.rf[0] for f in fields), max(f.rf[1] for f in fields)),
        (max(f.jump[0] for f in fields), max(f.jump[1] for f in fields)),
        any(f.whole for f in fields),
        any(f.approx for f in fields),
        fields[0].axes if axes is None else axes,
    )


def _window(f: _Field, kernel, stride, dilation) -> _Field:
    """A sliding window: ``rf + d*(k-1)*jump``, ``jump*s`` per axis."""
    k, s, d = _pair(kernel), _pair(stride), _pair(dilation)
    rf = tuple(r + dd * (kk - 1) * j for r, kk, dd, j in zip(f.rf, k, d, f.jump))
    jump = tuple(j * ss for j, ss in zip(f.jump, s))
    return _Field(rf, jump, f.whole, f.approx, (2, 3))  # type: ignore[arg-type]


def _full_extent(f: _Field, size_hw: Sequence[int], which: Iterable[int] = (0, 1), axes=(2, 3)) -> _Field:
    """The field after a reduction over whole image axes: a kernel as large as the map."""
    rf, jump = list(f.rf), list(f.jump)
    which = tuple(which)
    for a in which:
        rf[a] = f.rf[a] + (int(size_hw[a]) - 1) * f.jump[a]
        jump[a] = f.jump[a] * int(size_hw[a])
    return _Field((rf[0], rf[1]), (jump[0], jump[1]), f.whole or len(which) == 2, f.approx, axes)


def _adaptive(f: _Field, size_in: Sequence[int], size_out: Sequence[int]) -> _Field:
    rf, jump, approx, global_axes = list(f.rf), list(f.jump), f.approx, 0
    for a in (0, 1):
        n, o = int(size_in[a]), int(size_out[a])
        if o == 1:
            k, s = n, n
            global_axes += 1
        elif n % o == 0:
            k = s = n // o
        elif n < o:  # windows of one element, repeated: the field stays, the step shrinks
            k, s, approx = 1, max(1, n // o), True
        else:
            k = max(math.ceil((i + 1) * n / o) - (i * n) // o for i in range(o))
            s, approx = n // o, True
        rf[a] = f.rf[a] + (k - 1) * f.jump[a]
        jump[a] = f.jump[a] * s
    return _Field((rf[0], rf[1]), (jump[0], jump[1]), f.whole or global_axes == 2, approx, (2, 3))


class _Tracer(TorchFunctionMode):
    """Tags tensors with their receptive field during one forward pass and records each module call."""

    def __init__(self, model: nn.Module, *, progress: Progress | None, should_stop: ShouldStop | None):
        super().__init__()
        self.fields = WeakIdKeyDictionary()
        self.failure: str | None = None
        # Parameters some torch function read: tells heads that never ran from weights a parent
        # uses directly (nn.MultiheadAttention's out_proj).
        self.used_params: set[int] = set()
        # id(module) -> [[input field, output field], ...] in call order
        self.calls: dict[int, list[list[Any]]] = {}
        self._open: dict[int, list[int]] = {}
        self._handles: list[Any] = []
        self._model = model
        self._progress = progress
        self._should_stop = should_stop
        self._names = {id(m): n for n, m in model.named_modules()}
        self._total = max(1, len(self._names))
        self._done = 0
        self._step = max(1, self._total // 50)

    # ---- module hooks
    def attach(self) -> None:
        for module in self._model.modules():
            self._handles.append(module.register_forward_pre_hook(self._pre))
            self._handles.append(module.register_forward_hook(self._post))

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def field_of(self, obj) -> _Field | _Untraced | None:
        found = [self.fields.get(t) for t in _tensors(obj)]
        found = [f for f in found if f is not None]
        if not found:
            return None
        for f in found:
            if isinstance(f, _Untraced):
                return f
        return _merge(found)

    def _pre(self, module, args):
        if self._should_stop is not None and self._should_stop():
            raise CancelledError("summary cancelled")
        slots = self.calls.setdefault(id(module), [])
        slots.append([self.field_of(args), None])
        self._open.setdefault(id(module), []).append(len(slots) - 1)

    def _post(self, module, args, output):
        key = id(module)
        self.calls[key][self._open[key].pop()][1] = self.field_of(output)
        self._done += 1
        if self._progress is not None and self._done % self._step == 0:
            self._progress(min(self._done, self._total), self._total, self._names.get(key, ""))

    # ---- tensor tagging
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        try:
            self._propagate(func, args, kwargs, out)
        except Exception as exc:  # the trace must never break the summary: degrade to null fields
            if self.failure is None:
                self.failure = f"{getattr(func, '__name__', func)}: {type(exc).__name__}: {exc}"
        return out

    def _propagate(self, func, args, kwargs, out) -> None:
        name = getattr(func, "__name__", "")
        if name in _IGNORED:
            return
        outs = _tensors(out)
        if name == "__setitem__" and args and isinstance(args[0], torch.Tensor):
            outs = [args[0]]
        if not outs:
            return
        inputs = _tensors((args, kwargs))
        if name != "__get__":  # reading a property (requires_grad, shape) is not using the weights
            for t in inputs:
                if isinstance(t, nn.Parameter):
                    self.used_params.add(id(t))
        if self.failure is not None:
            return
        ins = [(t, f) for t in inputs if (f := self.fields.get(t)) is not None]
        if not ins:
            return
        field = self._rule(name, args, kwargs, ins, outs)
        for t in outs:
            self.fields[t] = field

    def _rule(self, name: str, args, kwargs, ins, outs) -> _Field | _Untraced:
        for _, f in ins:
            if isinstance(f, _Untraced):
                return f
        x, fx = ins[0]
        out = outs[0]
        if name in _CONV or name in _POOL or name in _ADAPTIVE:
            if x.dim() not in (3, 4) or fx.axes != (x.dim() - 2, x.dim() - 1):
                return _Untraced(f"{name} on a {x.dim()}-D tensor laid out as {fx.axes}")
        if name in _CONV:
            weight = _arg(args, kwargs, 1, "weight")
            stride, dilation = _arg(args, kwargs, 3, "stride", 1), _arg(args, kwargs, 5, "dilation", 1)
            return _window(fx, tuple(weight.shape[-2:]), stride, dilation)
        if name in _POOL:
            if name == "lp_pool2d":
                kernel, stride, dilation = _arg(args, kwargs, 2, "kernel_size"), _arg(args, kwargs, 3, "stride"), 1
            else:
                kernel, stride = _arg(args, kwargs, 1, "kernel_size"), _arg(args, kwargs, 2, "stride")
                dilation = 1 if name == "avg_pool2d" else _arg(args, kwargs, 4, "dilation", 1)
            if stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0):
                stride = kernel
            return _window(fx, kernel, stride, dilation)
        if name in _ADAPTIVE:
            return _adaptive(fx, tuple(x.shape[-2:]), tuple(out.shape[-2:]))
        if name in _PERMUTES:
            return self._permute(name, x, fx, args, kwargs)
        if name in _REDUCTIONS and not (len(args) > 1 and isinstance(args[1], torch.Tensor)):
            return self._reduction(x, fx, args, kwargs)
        if name in _RESHAPES:
            return self._reshape(x, fx, out)
        if name in _UNSUPPORTED:
            return _Untraced(f"{name} is not supported")
        if name in _ONE_D:
            return fx if fx.whole else _Untraced(f"{name} on a feature map is not supported")
        return self._elementwise(ins, outs)

    @staticmethod
    def _spatial(x, fx: _Field) -> tuple[int, int] | None:
        """Sizes of the H and W dimensions of ``x``, if ``fx.axes`` point inside it."""
        if max(fx.axes) >= x.dim():
            return None
        return int(x.shape[fx.axes[0]]), int(x.shape[fx.axes[1]])

    @staticmethod
    def _permute(name: str, x, fx: _Field, args, kwargs) -> _Field:
        n = x.dim()
        order = list(range(n))
        if name == "permute":
            dims = args[1:] if len(args) > 1 and isinstance(args[1], int) else _arg(args, kwargs, 1, "dims")
            order = [int(d) % n for d in dims]
        else:
            a, b = int(_arg(args, kwargs, 1, "dim0")) % n, int(_arg(args, kwargs, 2, "dim1")) % n
            order[a], order[b] = order[b], order[a]
        if max(fx.axes) >= n:
            return fx
        return fx._replace(axes=(order.index(fx.axes[0]), order.index(fx.axes[1])))

    def _reduction(self, x, fx: _Field, args, kwargs) -> _Field:
        hw = self._spatial(x, fx)
        if hw is None:
            return fx
        dims = _arg(args, kwargs, 1, "dim")
        if dims is None:  # everything reduced
            return _full_extent(fx, hw)
        dims = {int(d) % x.dim() for d in ((dims,) if isinstance(dims, int) else dims)}
        which = [i for i, a in enumerate(fx.axes) if a in dims]
        if not which:
            return fx
        keepdim = bool(_arg(args, kwargs, 2, "keepdim", False))
        axes = fx.axes if keepdim else (max(0, x.dim() - len(dims) - 2), max(1, x.dim() - len(dims) - 1))
        return _full_extent(fx, hw, which, axes)

    def _reshape(self, x, fx: _Field, out) -> _Field:
        hw = self._spatial(x, fx)
        if hw is None or hw[0] * hw[1] <= 1:
            return fx._replace(axes=(max(0, out.dim() - 2), max(1, out.dim() - 1))) if hw is None else fx
        h_axis, w_axis = fx.axes
        trailing = x.dim() - 1 - w_axis  # dims after W (C for NHWC)
        if w_axis == h_axis + 1 and out.dim() >= 2 + trailing:
            end = out.dim() - trailing
            if tuple(out.shape[end - 2 : end]) == hw:  # H and W survive as they were (ShuffleNet's 5-D view)
                return fx._replace(axes=(end - 2, end - 1))
        return _full_extent(fx, hw, axes=(max(0, out.dim() - 2), max(1, out.dim() - 1)))

    @staticmethod
    def _elementwise(ins, outs) -> _Field:
        out = outs[0]
        fields = [f for _, f in ins]
        x, fx = ins[0]
        if out.dim() == 4 and out.shape[-2] * out.shape[-1] > 1:
            # An SE / attention gate: a 1x1 map broadcast over the feature map. Papers leave it out.
            kept = [f for t, f in ins if not (t.dim() == 4 and t.shape[-2] == 1 and t.shape[-1] == 1)]
            fields = kept or fields
        axes = fx.axes if out.dim() == x.dim() else (max(0, out.dim() - 2), max(1, out.dim() - 1))
        return _merge(fields, axes)


# --------------------------------------------------------------------------- derivations


def _fmt(n: int) -> str:
    return f"{n:,}"


def _axis(values: tuple) -> str:
    return f"{values[0]}" if values[0] == values[1] else f"{values[0]}x{values[1]}"


def _out_expr(n: int, k: int, s: int, p: int, d: int, *, ceil: bool = False) -> tuple[int, str]:
    """PyTorch's output size along one axis and the worked expression ``(W-F+2P)/S+1``.

    PyTorch computes ``floor((n + 2p - d*(k-1) - 1) / s) + 1`` (``ceil`` in ceil_mode),
    which for ``d = 1`` is the classic ``(W - F + 2P) / S + 1`` rounded down.
    """
    span = f"{n}-{k}" if d == 1 else f"{n}-{d}*({k}-1)-1"
    num = n + 2 * p - d * (k - 1) - 1
    expr = f"({span}+2*{p})/{s}+1"
    if not ceil:
        if num % s:
            expr += f" ({num}/{s} floored to {num // s}, as PyTorch does)"
        return num // s + 1, expr
    up = -(-num // s)
    if num % s:
        expr += f" ({num}/{s} rounded up to {up}: ceil_mode)"
    out = up + 1
    if (out - 1) * s >= n + p:  # PyTorch drops a last window that would start in the padding
        out -= 1
        expr += " -1 (the last window would start in the padding)"
    return out, expr


def _size_part(in_hw, out_hw, kernel, stride, padding, dilation, *, ceil: bool = False, dynamic: bool = False) -> str:
    """``out 55 = (224-11+2*2)/4+1`` (one expression when both axes agree)."""
    oh, ow = int(out_hw[0]), int(out_hw[1])
    if isinstance(padding, str) or dynamic:
        s = _pair(stride)
        if all(int(o) == -(-int(n) // ss) for o, n, ss in zip(out_hw, in_hw, s)):
            how = "ceil(" + _axis(tuple(int(n) for n in in_hw)) + f"/{_axis(s)})"
            return f"out {_axis((oh, ow))} = {how} ('same' padding, added at run time)"
        return f"out {_axis((oh, ow))} (padding {padding!r})"
    k, s, p, d = _pair(kernel), _pair(stride), _pair(padding), _pair(dilation)
    parts = [_out_expr(int(n), kk, ss, pp, dd, ceil=ceil) for n, kk, ss, pp, dd in zip(in_hw, k, s, p, d)]
    if (parts[0][0], parts[1][0]) != (oh, ow):
        return f"out {_axis((oh, ow))} (padding added at run time)"
    if parts[0][1] == parts[1][1]:
        return f"out {oh} = {parts[0][1]}"
    return f"out {oh}x{ow}: H {oh} = {parts[0][1]}, W {ow} = {parts[1][1]}"


def _neurons_part(output_shape: tuple[int, ...]) -> str:
    if len(output_shape) == 4:
        _, c, h, w = output_shape
        return f"{h}x{w}x{c} = {_fmt(h * w * c)} neurons"
    return ""


def _derive(module: nn.Module, kind: str, input_shape, output_shape, own_params: int) -> str | None:
    try:
        if isinstance(module, nn.Conv2d) and len(input_shape) == 4 and len(output_shape) == 4:
            return _derive_conv(module, kind, input_shape, output_shape, own_params)
        if isinstance(module, nn.Linear):
            n_in, n_out = module.in_features, module.out_features
            expr = f"{n_out}*{n_in}" + (f"+{n_out}" if module.bias is not None else "")
            count = n_out * n_in + (n_out if module.bias is not None else 0)
            if count != own_params:
                return f"{kind} {n_in}->{n_out}: {_fmt(own_params)} params"
            tail = "" if module.bias is not None else " (no bias)"
            return f"{kind} {n_in}->{n_out}: {expr} = {_fmt(count)} params{tail}"
        if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)) and len(input_shape) == 4 and len(output_shape) == 4:
            k, s = _pair(module.kernel_size), _pair(module.stride if module.stride is not None else module.kernel_size)
            p = _pair(module.padding)
            d = _pair(getattr(module, "dilation", 1))
            head = f"{kind} k{_axis(k)} s{_axis(s)}" + (f" p{_axis(p)}" if any(p) else "") + (
                f" d{_axis(d)}" if d != (1, 1) else ""
            )
            dynamic = type(module).__name__.endswith("Same")
            size = _size_part(input_shape[-2:], output_shape[-2:], k, s, p, d, ceil=module.ceil_mode, dynamic=dynamic)
            return f"{head}: {size}"
        if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)) and len(input_shape) == 4:
            (h, w), (oh, ow) = input_shape[-2:], output_shape[-2:]
            what = "average" if isinstance(module, nn.AdaptiveAvgPool2d) else "maximum"
            head = f"{kind} {h}x{w} -> {oh}x{ow}"
            if (oh, ow) == (1, 1):
                return f"{head}: one {what} over each whole {h}x{w} map"
            if (oh, ow) == (h, w):
                return f"{head}: identity (windows k1 s1)"
            if h % oh == 0 and w % ow == 0:
                return f"{head}: windows k{_axis((h // oh, w // ow))} s{_axis((h // oh, w // ow))}"
            return f"{head}: uneven windows (start floor(i*{h}/{oh}), end ceil((i+1)*{h}/{oh}))"
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.affine:
            c = module.num_features
            if own_params == 2 * c:
                return f"{kind} {c}: 2*{c} = {_fmt(2 * c)} params (scale and shift; running stats are buffers)"
    except (TypeError, ValueError, IndexError, AttributeError):
        return None
    return None


def _derive_conv(module: nn.Conv2d, kind: str, input_shape, output_shape, own_params: int) -> str:
    c_in, c_out, g = module.in_channels, module.out_channels, module.groups
    k, s, d = _pair(module.kernel_size), _pair(module.stride), _pair(module.dilation)
    padding = module.padding if isinstance(module.padding, str) else _pair(module.padding)
    if padding == "valid":
        padding = (0, 0)
    head = f"{kind} {c_in}->{c_out}"
    if g > 1:
        head += " depthwise" if g == c_in == c_out else f" groups {g}"
    dynamic = type(module).__name__.endswith("Same")  # timm's TF-style 'same' padding, added in forward
    if dynamic or isinstance(padding, str):
        pad_text = f" p {padding if isinstance(padding, str) else 'same'}"
    else:
        pad_text = f" p{_axis(padding)}"
    head += f", k{_axis(k)} s{_axis(s)}{pad_text}" + (f" d{_axis(d)}" if d != (1, 1) else "")
    ch = f"{c_in}" if g == 1 else f"{c_in}/{g}"
    bias = module.bias is not None
    count = c_out * (c_in // g) * k[0] * k[1] + (c_out if bias else 0)
    if count == own_params:
        params = f"{c_out}*({ch}*{k[0]}*{k[1]})" + (f"+{c_out}" if bias else "") + f" = {_fmt(count)} params"
        if not bias:
            params += " (no bias)"
    else:
        params = f"{_fmt(own_params)} params"
    size = _size_part(input_shape[-2:], output_shape[-2:], k, s, padding, d, dynamic=dynamic)
    parts = [f"{head}: {params}", size, _neurons_part(tuple(output_shape))]
    return "; ".join(p for p in parts if p)


def _rf_derivation(module: nn.Module, f_in, f_out) -> str | None:
    """``rf 19 = 11+(3-1)*4; jump 8 = 4*2`` for a conv / pool row whose input field is known."""
    if not isinstance(f_in, _Field) or not isinstance(f_out, _Field) or f_in.whole:
        return None
    if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        k = _pair(module.kernel_size)
        stride = module.stride if module.stride is not None else module.kernel_size
        s = _pair(stride)
        d = _pair(getattr(module, "dilation", 1))
        if _window(f_in, k, s, d)[:2] != f_out[:2]:
            return None
        terms = [
            f"{r}+({kk}-1)*{j}" if dd == 1 else f"{r}+{dd}*({kk}-1)*{j}"
            for r, kk, dd, j in zip(f_in.rf, k, d, f_in.jump)
        ]
        jumps = [f"{j}*{ss}" for j, ss in zip(f_in.jump, s)]
        if terms[0] == terms[1] and jumps[0] == jumps[1]:
            return f"rf {f_out.rf[0]} = {terms[0]}; jump {f_out.jump[0]} = {jumps[0]}"
        return (
            f"rf {f_out.rf[0]}x{f_out.rf[1]}: H {terms[0]}, W {terms[1]}; "
            f"jump {_axis(f_out.jump)} = {_axis(tuple(jumps))}"
        )
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)) and f_out.whole:
        return f"global: rf {f_out.rf[0]} = {f_in.rf[0]}+(H-1)*{f_in.jump[0]} (the whole map)"
    return None


# --------------------------------------------------------------------------- building the tree


def _looks_like_transformer(model: nn.Module) -> bool:
    return any(
        isinstance(m, nn.MultiheadAttention) or type(m).__name__.endswith("Attention") for m in model.modules()
    )


def _unwrap(exc: BaseException) -> BaseException:
    seen = exc
    while seen is not None:
        if isinstance(seen, BackboneError):
            return seen
        seen = seen.__cause__
    return exc


def _deepest_message(exc: BaseException) -> str:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _run_torchinfo(model: nn.Module, x: torch.Tensor, tracer: _Tracer | None):
    import torchinfo
    from torchinfo.torchinfo import clear_cached_forward_pass

    columns = ("input_size", "output_size", "num_params", "kernel_size", "mult_adds", "trainable")
    try:
        if tracer is None:
            return torchinfo.summary(model, input_data=[x], verbose=0, depth=1000, col_names=columns, mode="eval")
        tracer.fields[x] = _INPUT_FIELD
        tracer.attach()
        try:
            with tracer:
                return torchinfo.summary(model, input_data=[x], verbose=0, depth=1000, col_names=columns, mode="eval")
        finally:
            tracer.detach()
    finally:
        # torchinfo keeps the last layer list of every model class, and with it the model.
        clear_cached_forward_pass()


def _summarize_module(
    model: nn.Module,
    *,
    name: str,
    architecture: str,
    input_size: tuple[int, int, int],
    transformer: bool,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
) -> ModelSummary:
    if should_stop is not None and should_stop():
        raise CancelledError("summary cancelled")
    try:
        param = next(model.parameters())
        device, dtype = param.device, param.dtype
    except StopIteration:
        device, dtype = torch.device("cpu"), torch.float32
    if device.type == "meta":
        x = torch.empty(1, *input_size, device=device, dtype=dtype)
    else:
        x = torch.zeros(1, *input_size, device=device, dtype=dtype)
    tracer = _Tracer(model, progress=progress, should_stop=should_stop)
    stats = _run_torchinfo(model, x, tracer)
    summary = _build(
        stats, model, name=name, architecture=architecture, input_size=input_size, tracer=tracer, transformer=transformer
    )
    if progress is not None:
        progress(1, 1, f"{name}: {len(summary.layers)} rows")
    return summary


def _build(
    stats, model: nn.Module, *, name: str, architecture: str, input_size, tracer: _Tracer, transformer: bool
) -> ModelSummary:
    infos = stats.summary_list
    notes: list[str] = []
    if transformer:
        rf_state, rf_note = False, TRANSFORMER_NOTE
        notes.append("receptive fields do not apply: self-attention mixes every position (transformer)")
        notes.append(
            "mult-adds are torchinfo's, which counts layers with weights only: attention's matrix "
            "products are left out, so transformers show far fewer than their real MACs"
        )
    elif tracer.failure:
        rf_state, rf_note = False, f"could not be traced ({tracer.failure})"
        notes.append(f"receptive fields {rf_note}")
    else:
        rf_state, rf_note = True, None

    def path(info) -> str:
        parts = []
        while info is not None and info.depth > 0:
            parts.append(info.var_name)
            info = info.parent_info
        return ".".join(reversed(parts))

    seen_calls: dict[int, int] = {}
    name_calls: dict[str, int] = {}
    rows: list[dict] = []
    untraced_reasons: set[str] = set()
    for info in infos:
        module = info.module
        row_name = path(info)
        call = name_calls.get(row_name, 0)
        name_calls[row_name] = call + 1
        f_in = f_out = None
        if info.executed:
            k = seen_calls.get(info.layer_id, 0)
            seen_calls[info.layer_id] = k + 1
            slots = tracer.calls.get(info.layer_id, [])
            if k < len(slots):
                f_in, f_out = slots[k]
        own = 0 if info.is_recursive else (info.num_params if info.is_leaf_layer else max(info.leftover_params(), 0))
        input_shape = tuple(int(v) for v in info.input_size) if info.executed else ()
        output_shape = tuple(int(v) for v in info.output_size) if info.executed else ()
        if info.num_params == 0:
            trainable = None
        elif info.trainable_params == info.num_params:
            trainable = True
        elif info.trainable_params == 0:
            trainable = False
        else:
            trainable = None
        geometry = _geometry(module)
        rows.append(
            {
                "name": row_name,
                "type": info.class_name,
                "depth": info.depth,
                "parent": None if info.depth == 0 else path(info.parent_info),
                "input_shape": input_shape,
                "output_shape": output_shape,
                "params": own,
                "params_total": info.num_params,
                "trainable_params": info.trainable_params,
                "trainable": trainable,
                "mult_adds": info.macs if info.is_leaf_layer else 0,
                **geometry,
                "is_leaf": info.is_leaf_layer,
                "call": call,
                "_module": module,
                "_f_in": f_in,
                "_f_out": f_out,
                "_executed": info.executed,
            }
        )

    # Containers: MACs of the leaves below; a container never called itself (a ModuleList)
    # shows the shape and field of its last descendant.
    for i, row in enumerate(rows):
        if row["is_leaf"]:
            continue
        j, total, last = i + 1, 0, None
        while j < len(rows) and rows[j]["depth"] > row["depth"]:
            if rows[j]["is_leaf"]:
                total += rows[j]["mult_adds"]
            if rows[j]["_executed"]:
                last = rows[j]
            j += 1
        row["mult_adds"] = total
        if not row["_executed"] and last is not None:
            row["output_shape"] = last["output_shape"]
            row["_f_out"] = last["_f_out"]

    layers = []
    for row in rows:
        module, f_in, f_out = row.pop("_module"), row.pop("_f_in"), row.pop("_f_out")
        row.pop("_executed")
        out_shape = row["output_shape"]
        row["neurons"] = math.prod(out_shape[1:]) if len(out_shape) >= 2 else None
        own = row["params_total"] if row["is_leaf"] else row["params"]
        row["derivation"] = _derive(module, row["type"], row["input_shape"], out_shape, own)
        rf = jump = rf_hw = jump_hw = None
        whole, note, rf_derivation = False, rf_note, None
        layout = None
        if len(out_shape) == 4 and isinstance(f_out, _Field) and not f_out.whole:
            layout = {(2, 3): "NCHW", (1, 2): "NHWC"}.get(f_out.axes)
        if rf_state:
            if isinstance(f_out, _Field):
                rf_hw, whole = f_out.rf, f_out.whole
                rf = max(rf_hw)
                if len(out_shape) == 4:
                    jump_hw = f_out.jump
                    jump = max(jump_hw)
                note = WHOLE_NOTE if whole else (APPROX_NOTE if f_out.approx else None)
                if row["is_leaf"]:
                    rf_derivation = _rf_derivation(module, f_in, f_out)
            elif isinstance(f_out, _Untraced):
                note = f"could not be traced: {f_out.reason}"
                untraced_reasons.add(f_out.reason)
            else:
                note = "no traced tensor output"
        layers.append(
            LayerRow(
                **row,
                receptive_field=rf,
                jump=jump,
                receptive_field_hw=rf_hw,
                jump_hw=jump_hw,
                whole_input=whole,
                rf_note=note,
                rf_derivation=rf_derivation,
                layout=layout,
            )
        )
    for reason in sorted(untraced_reasons):
        notes.append(f"receptive fields stop at: {reason}")
    notes.extend(_not_run_notes(model, stats, tracer.used_params))
    return ModelSummary(
        model=name,
        input_size=tuple(input_size),  # type: ignore[arg-type]
        total_params=int(stats.total_params),
        trainable_params=int(stats.trainable_params),
        total_mult_adds=int(stats.total_mult_adds),
        layers=tuple(layers),
        architecture=architecture,
        receptive_fields=rf_state,
        notes=tuple(notes),
    )


def _geometry(module: nn.Module) -> dict:
    """Kernel / stride / padding / dilation / groups of conv and pooling modules, ``None`` elsewhere."""
    out: dict[str, Any] = {"kernel_size": None, "stride": None, "padding": None, "dilation": None, "groups": None}
    if not hasattr(module, "kernel_size"):
        return out
    try:
        out["kernel_size"] = _pair(module.kernel_size)
        stride = getattr(module, "stride", None)
        out["stride"] = _pair(stride if stride is not None else module.kernel_size)
        padding = getattr(module, "padding", 0)
        out["padding"] = padding if isinstance(padding, str) else _pair(padding)
        out["dilation"] = _pair(getattr(module, "dilation", 1))
        groups = getattr(module, "groups", None)
        out["groups"] = int(groups) if isinstance(groups, int) else None
    except (TypeError, ValueError, IndexError):
        return {k: None for k in out}
    return out


def _not_run_notes(model: nn.Module, stats, used_params: set[int]) -> list[str]:
    """Submodules that never ran (auxiliary heads in eval): their parameters are in the total, without rows."""
    ran = {info.layer_id for info in stats.summary_list if info.executed}
    used: dict[int, bool] = {}

    def visit(m: nn.Module) -> bool:
        result = id(m) in ran
        for child in m.children():
            result = visit(child) or result
        used[id(m)] = result
        return result

    visit(model)
    idle = []

    def walk(m: nn.Module, prefix: str) -> None:
        for child_name, child in m.named_children():
            full = f"{prefix}.{child_name}" if prefix else child_name
            if used.get(id(child), True):
                walk(child, full)
                continue
            params = list(child.parameters())
            if params and not any(id(p) in used_params for p in params):
                idle.append(f"{full} ({type(child).__name__}, {sum(p.numel() for p in params):,} params)")

    walk(model, "")
    if not idle:
        return []
    return ["not run in eval mode, parameters counted in the total but no rows: " + ", ".join(idle)]


# --------------------------------------------------------------------------- public entry points


def normalize_input_size(input_size: Sequence[int] | None, default: Sequence[int]) -> tuple[int, int, int]:
    """``(C, H, W)`` as ints, checked; ``None`` gives ``default`` (the catalog entry's input size)."""
    size = tuple(default if input_size is None else input_size)
    try:
        c, h, w = (int(v) for v in size)
    except (TypeError, ValueError) as exc:
        raise BackboneError(f"input size must be three integers C H W, got {list(size)}") from exc
    if min(c, h, w) < 1 or c > 64 or max(h, w) > MAX_INPUT_SIDE:
        raise BackboneError(f"input size {c}x{h}x{w} out of range (C 1..64, H and W 1..{MAX_INPUT_SIDE})")
    return (c, h, w)


_CACHE: OrderedDict[tuple[str, tuple[int, int, int]], ModelSummary] = OrderedDict()
_CACHE_SIZE = 64
_CACHE_LOCK = threading.Lock()
_LOADED_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def clear_summary_cache() -> None:
    """Forget every cached summary."""
    with _CACHE_LOCK:
        _CACHE.clear()
        _LOADED_CACHE.clear()


def _input_error(name: str, size, exc: BaseException) -> BackboneError:
    c, h, w = size
    return BackboneError(f"{name} cannot run on a {c}x{h}x{w} input: {_deepest_message(exc)}")


def _summarize_catalog(name: str, input_size, progress, should_stop) -> ModelSummary:
    from backbones.zoo.catalog import get_entry
    from backbones.zoo.models import build_architecture, build_empty

    entry = get_entry(name)
    size = normalize_input_size(input_size, entry.input_size)
    key = (entry.name, size)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    kwargs = dict(name=entry.name, architecture=entry.name, input_size=size, transformer=entry.is_transformer)
    def summarize(build, *, meta: bool) -> ModelSummary | None:
        try:
            return _summarize_module(build(entry), progress=progress, should_stop=should_stop, **kwargs)
        except BackboneError:
            raise
        except (RuntimeError, NotImplementedError, ValueError, TypeError) as exc:
            found = _unwrap(exc)
            if isinstance(found, BackboneError):
                raise found from exc
            if meta and (isinstance(found, NotImplementedError) or "meta" in _deepest_message(exc).lower()):
                return None  # the model cannot run on the meta device: build it for real
            raise _input_error(entry.name, size, exc) from exc

    # Shapes only: parameters and activations on the meta device, nothing allocated.
    summary = summarize(lambda e: build_empty(e).to("meta"), meta=True)
    if summary is None:
        summary = summarize(build_architecture, meta=False)
    with _CACHE_LOCK:
        _CACHE[key] = summary
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return summary


def summarize_model(
    model: str | LoadedModel | nn.Module,
    *,
    input_size: Sequence[int] | None = None,
    name: str | None = None,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
) -> ModelSummary:
    """The layer tree of ``model`` for one ``(C, H, W)`` input (default: the catalog entry's size).

    ``model`` is a catalog name (``"resnet50"``, ``"timm:rexnet_100"``: summarised
    untrained on the meta device, cached per name and input size), a
    :class:`~backbones.models.LoadedModel` (a checkpoint with its own head is
    summarised as loaded, under its lock, cached per object; other weights share
    the catalog summary) or any ``nn.Module`` (not cached; ``input_size``
    required, default ``(3, 224, 224)``). The model is run once in eval mode
    with a batch of one and is left as it was (no hook stays attached).

    Raises :class:`UnknownModelError` for unknown names, :class:`BackboneError`
    for an input the model cannot take, :class:`CancelledError` when
    ``should_stop()`` turns true.
    """
    from backbones.zoo.models import LoadedModel

    if isinstance(model, str):
        return _summarize_catalog(model, input_size, progress, should_stop)
    if isinstance(model, LoadedModel):
        if model.checkpoint is None:
            return _summarize_catalog(model.entry.name, input_size, progress, should_stop)
        size = normalize_input_size(input_size, model.entry.input_size)
        with _CACHE_LOCK:
            cached = _LOADED_CACHE.get(model, {}).get(size)
        if cached is not None:
            return cached
        with model.lock:
            summary = _guarded(
                model.model,
                name=name or model.name,
                architecture=model.entry.name,
                input_size=size,
                transformer=model.entry.is_transformer,
                progress=progress,
                should_stop=should_stop,
            )
        with _CACHE_LOCK:
            _LOADED_CACHE.setdefault(model, {})[size] = summary
        return summary
    if isinstance(model, nn.Module):
        size = normalize_input_size(input_size, (3, 224, 224))
        return _guarded(
            model,
            name=name or type(model).__name__,
            architecture=type(model).__name__,
            input_size=size,
            transformer=_looks_like_transformer(model),
            progress=progress,
            should_stop=should_stop,
        )
    raise BackboneError(f"cannot summarise a {type(model).__name__}: give a model name, a LoadedModel or an nn.Module")


def _guarded(model: nn.Module, **kwargs) -> ModelSummary:
    try:
        return _summarize_module(model, **kwargs)
    except BackboneError:
        raise
    except (RuntimeError, NotImplementedError, ValueError, TypeError) as exc:
        found = _unwrap(exc)
        if isinstance(found, BackboneError):
            raise found from exc
        raise _input_error(kwargs["name"], kwargs["input_size"], exc) from exc


# --------------------------------------------------------------------------- text


def _count(n: int | None) -> str:
    return "--" if not n else f"{n:,}"


def format_summary(summary: ModelSummary, *, depth: int | None = None) -> str:
    """A readable tree like torchinfo's, with output shape, params, MACs, receptive field and jump.

    A container shown at the cut-off ``depth`` gives the totals below it; an
    expanded one only its own parameters (so each column adds up).
    """
    rows = summary.rows(depth)
    limit = summary.max_depth if depth is None else depth
    table: list[list[str]] = []
    # Which depths still have siblings to come, to draw the tree's vertical bars.
    for i, row in enumerate(rows):
        if row.depth == 0:
            label = row.type
        else:
            bars = ""
            for d in range(1, row.depth):
                more = any(r.depth == d for r in _until_shallower(rows, i + 1, d))
                bars += "│ " if more else "  "
            last = not any(r.depth == row.depth for r in _until_shallower(rows, i + 1, row.depth))
            label = f"{bars}{'└─' if last else '├─'}{row.short_name}: {row.type}"
            if row.call:
                label += f" (call {row.call + 1})"
        collapsed = not row.is_leaf and row.depth >= limit
        params = row.params_total if collapsed else row.params
        if row.call:
            params_text = "(shared)" if row.params_total else "--"
        else:
            params_text = _count(params)
        macs = row.mult_adds if (row.is_leaf or collapsed) else 0
        rf = "--" if summary.receptive_fields else "n/a"
        if row.receptive_field is not None:
            rf = _axis(row.receptive_field_hw) if row.receptive_field_hw else str(row.receptive_field)
            if row.whole_input:
                rf += " (all)"
        jump = "--" if row.jump is None else _axis(row.jump_hw) if row.jump_hw else str(row.jump)
        shape = "[" + ", ".join(map(str, row.output_shape)) + "]" if row.output_shape else "--"
        table.append([label, shape, params_text, _count(macs), rf, jump])
    headers = ["Layer (name: type)", "Output Shape", "Param #", "Mult-Adds", "RF", "Jump"]
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *table)]
    total_width = sum(widths) + 2 * (len(widths) - 1)
    line = "=" * total_width

    def fmt(cells):
        first = str(cells[0]).ljust(widths[0])
        rest = [str(c).rjust(w) for c, w in zip(cells[1:], widths[1:])]
        return "  ".join([first, *rest]).rstrip()

    out = [line, fmt(headers), line, *(fmt(r) for r in table), line]
    c, h, w = summary.input_size
    out += [
        f"Model: {summary.model}" + (f" ({summary.architecture})" if summary.architecture not in ("", summary.model) else ""),
        f"Input size: {c}x{h}x{w}",
        f"Total params: {summary.total_params:,}",
        f"Trainable params: {summary.trainable_params:,}",
        f"Non-trainable params: {summary.total_params - summary.trainable_params:,}",
        f"Total mult-adds: {summary.total_mult_adds:,} ({summary.total_mult_adds / 1e9:.2f} G)",
        "RF = receptive field and Jump = effective stride, in input pixels; (all) = sees the whole input.",
    ]
    out += [f"Note: {n}" for n in summary.notes]
    out.append(line)
    return "\n".join(out)


def _until_shallower(rows: Sequence[LayerRow], start: int, depth: int):
    for r in rows[start:]:
        if r.depth < depth:
            return
        yield r
