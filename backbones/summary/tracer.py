"""Receptive fields traced along the data flow of one forward pass.

Receptive fields follow the data, not the module order: a torch function mode
(:class:`Tracer`) tags every tensor with the receptive field and jump
(effective stride, in input pixels) of its elements, per image axis:

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
scripted modules) gives an :class:`Untraced` reason rather than a wrong number.
The tracer also records each module call's input and output field, for the rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils.weak import WeakIdKeyDictionary

from backbones.callbacks import ProgressFn, StopFn
from backbones.errors import CancelledError
from backbones.summary.geometry import to_pair


class Field(NamedTuple):
    """Receptive field and jump of a tensor's elements, per image axis (H, W), in input pixels.

    ``axes`` are the tensor dimensions holding H and W: ``(2, 3)`` for NCHW,
    ``(1, 2)`` once permuted to NHWC (ConvNeXt blocks, Swin).
    """

    rf: tuple[int, int]
    jump: tuple[int, int]
    whole: bool = False
    approx: bool = False
    axes: tuple[int, int] = (2, 3)


INPUT_FIELD = Field((1, 1), (1, 1))


class Untraced(NamedTuple):
    """A tensor whose field the tracer cannot work out, and why; it spreads to everything computed from it."""

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


def _arg(args, kwargs, index: int, key: str, default=None):
    """A torch function's argument, given by position or by keyword."""
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


def _find_untraced(fields: Iterable[Field | Untraced]) -> Untraced | None:
    return next((f for f in fields if isinstance(f, Untraced)), None)


def _merge(fields: Sequence[Field], axes: tuple[int, int] | None = None) -> Field:
    """Paths meeting (add, concat, multiply): the largest field wins, per axis."""
    return Field(
        (max(f.rf[0] for f in fields), max(f.rf[1] for f in fields)),
        (max(f.jump[0] for f in fields), max(f.jump[1] for f in fields)),
        any(f.whole for f in fields),
        any(f.approx for f in fields),
        fields[0].axes if axes is None else axes,
    )


def apply_window(f: Field, kernel, stride, dilation) -> Field:
    """A sliding window: ``rf + d*(k-1)*jump``, ``jump*s`` per axis."""
    k, s, d = to_pair(kernel), to_pair(stride), to_pair(dilation)
    rf = tuple(r + dd * (kk - 1) * j for r, kk, dd, j in zip(f.rf, k, d, f.jump))
    jump = tuple(j * ss for j, ss in zip(f.jump, s))
    return Field(rf, jump, f.whole, f.approx, (2, 3))  # type: ignore[arg-type]


def _last_two_axes(ndim: int) -> tuple[int, int]:
    """Where H and W sit once a reshape or reduction leaves ``ndim`` dimensions: the last two."""
    return (max(0, ndim - 2), max(1, ndim - 1))


def _full_extent(f: Field, size_hw: Sequence[int], which: Iterable[int] = (0, 1), axes=(2, 3)) -> Field:
    """The field after a reduction over whole image axes: a kernel as large as the map (1 on the others)."""
    which = tuple(which)
    kernel = tuple(int(size_hw[a]) if a in which else 1 for a in (0, 1))
    return apply_window(f, kernel, kernel, 1)._replace(whole=f.whole or len(which) == 2, axes=axes)


def _adaptive(f: Field, size_in: Sequence[int], size_out: Sequence[int]) -> Field:
    """Adaptive pooling as the windows PyTorch uses; uneven windows give the largest, marked approximate."""
    kernel, stride, approx = [], [], f.approx
    for n, o in zip((int(v) for v in size_in), (int(v) for v in size_out)):
        if o == 1:
            k = s = n
        elif n % o == 0:
            k = s = n // o
        elif n < o:  # windows of one element, repeated: field and jump stay
            k, s, approx = 1, 1, True
        else:
            k = max(math.ceil((i + 1) * n / o) - (i * n) // o for i in range(o))
            s, approx = n // o, True
        kernel.append(k)
        stride.append(s)
    whole = f.whole or tuple(int(v) for v in size_out) == (1, 1)
    return apply_window(f, kernel, stride, 1)._replace(whole=whole, approx=approx)


class Tracer(TorchFunctionMode):
    """Tags tensors with their receptive field during one forward pass and records each module call."""

    def __init__(
        self, model: nn.Module, *, progress: ProgressFn | None, should_stop: StopFn | None, counter: Any = None
    ):
        super().__init__()
        # A MacCounter running during the same pass: each call's MACs are its total's growth meanwhile.
        self._counter = counter
        self.fields = WeakIdKeyDictionary()
        self.failure: str | None = None
        # Parameters some torch function read: tells heads that never ran from weights a parent
        # uses directly (nn.MultiheadAttention's out_proj).
        self.used_params: set[int] = set()
        # id(module) -> [[input field, output field, MACs, fused ops missed], ...] in call order
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

    def field_of(self, obj) -> Field | Untraced | None:
        found = [self.fields.get(t) for t in _tensors(obj)]
        found = [f for f in found if f is not None]
        if not found:
            return None
        untraced = _find_untraced(found)
        return untraced if untraced is not None else _merge(found)

    def _pre(self, module, args):
        if self._should_stop is not None and self._should_stop():
            raise CancelledError("summary cancelled")
        slots = self.calls.setdefault(id(module), [])
        slots.append([self.field_of(args), None, *self._count_now()])
        self._open.setdefault(id(module), []).append(len(slots) - 1)

    def _post(self, module, args, output):
        key = id(module)
        slot = self.calls[key][self._open[key].pop()]
        slot[1] = self.field_of(output)
        macs, missed = self._count_now()
        slot[2], slot[3] = macs - slot[2], tuple(self._counter.missed[slot[3] : missed]) if self._counter else ()
        self._done += 1
        if self._progress is not None and self._done % self._step == 0:
            self._progress(min(self._done, self._total), self._total, self._names.get(key, ""))

    def _count_now(self) -> tuple[int, int]:
        """``(MACs so far, fused ops missed so far)`` of the counter (zeros without one)."""
        if self._counter is None:
            return 0, 0
        return self._counter.macs, len(self._counter.missed)

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

    def _rule(self, name: str, args, kwargs, ins, outs) -> Field | Untraced:
        untraced = _find_untraced(f for _, f in ins)
        if untraced is not None:
            return untraced
        x, fx = ins[0]
        out = outs[0]
        if name in _CONV or name in _POOL or name in _ADAPTIVE:
            if x.dim() not in (3, 4) or fx.axes != (x.dim() - 2, x.dim() - 1):
                return Untraced(f"{name} on a {x.dim()}-D tensor laid out as {fx.axes}")
        if name in _CONV:
            weight = _arg(args, kwargs, 1, "weight")
            stride, dilation = _arg(args, kwargs, 3, "stride", 1), _arg(args, kwargs, 5, "dilation", 1)
            return apply_window(fx, tuple(weight.shape[-2:]), stride, dilation)
        if name in _POOL:
            if name == "lp_pool2d":
                kernel, stride, dilation = _arg(args, kwargs, 2, "kernel_size"), _arg(args, kwargs, 3, "stride"), 1
            else:
                kernel, stride = _arg(args, kwargs, 1, "kernel_size"), _arg(args, kwargs, 2, "stride")
                dilation = 1 if name == "avg_pool2d" else _arg(args, kwargs, 4, "dilation", 1)
            if stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0):
                stride = kernel
            return apply_window(fx, kernel, stride, dilation)
        if name in _ADAPTIVE:
            return _adaptive(fx, tuple(x.shape[-2:]), tuple(out.shape[-2:]))
        if name in _PERMUTES:
            return self._permute(name, x, fx, args, kwargs)
        if name in _REDUCTIONS and not (len(args) > 1 and isinstance(args[1], torch.Tensor)):
            return self._reduction(x, fx, args, kwargs)
        if name in _RESHAPES:
            return self._reshape(x, fx, out)
        if name in _UNSUPPORTED:
            return Untraced(f"{name} is not supported")
        if name in _ONE_D:
            return fx if fx.whole else Untraced(f"{name} on a feature map is not supported")
        return self._elementwise(ins, outs)

    @staticmethod
    def _spatial(x, fx: Field) -> tuple[int, int] | None:
        """Sizes of the H and W dimensions of ``x``, if ``fx.axes`` point inside it."""
        if max(fx.axes) >= x.dim():
            return None
        return int(x.shape[fx.axes[0]]), int(x.shape[fx.axes[1]])

    @classmethod
    def _permute(cls, name: str, x, fx: Field, args, kwargs) -> Field:
        n = x.dim()
        order = list(range(n))
        if name == "permute":
            dims = args[1:] if len(args) > 1 and isinstance(args[1], int) else _arg(args, kwargs, 1, "dims")
            order = [int(d) % n for d in dims]
        else:
            a, b = int(_arg(args, kwargs, 1, "dim0")) % n, int(_arg(args, kwargs, 2, "dim1")) % n
            order[a], order[b] = order[b], order[a]
        if cls._spatial(x, fx) is None:
            return fx
        return fx._replace(axes=(order.index(fx.axes[0]), order.index(fx.axes[1])))

    def _reduction(self, x, fx: Field, args, kwargs) -> Field:
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
        axes = fx.axes if keepdim else _last_two_axes(x.dim() - len(dims))
        return _full_extent(fx, hw, which, axes)

    def _reshape(self, x, fx: Field, out) -> Field:
        hw = self._spatial(x, fx)
        if hw is None:
            return fx._replace(axes=_last_two_axes(out.dim()))
        if hw[0] * hw[1] <= 1:
            return fx
        h_axis, w_axis = fx.axes
        trailing = x.dim() - 1 - w_axis  # dims after W (C for NHWC)
        if w_axis == h_axis + 1 and out.dim() >= 2 + trailing:
            end = out.dim() - trailing
            if tuple(out.shape[end - 2 : end]) == hw:  # H and W survive as they were (ShuffleNet's 5-D view)
                return fx._replace(axes=(end - 2, end - 1))
        return _full_extent(fx, hw, axes=_last_two_axes(out.dim()))

    @staticmethod
    def _elementwise(ins, outs) -> Field:
        out = outs[0]
        fields = [f for _, f in ins]
        x, fx = ins[0]
        if out.dim() == 4 and out.shape[-2] * out.shape[-1] > 1:
            # An SE / attention gate: a 1x1 map broadcast over the feature map. Papers leave it out.
            kept = [f for t, f in ins if not (t.dim() == 4 and t.shape[-2] == 1 and t.shape[-1] == 1)]
            fields = kept or fields
        axes = fx.axes if out.dim() == x.dim() else _last_two_axes(out.dim())
        return _merge(fields, axes)
