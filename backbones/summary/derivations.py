"""Worked derivations of a row, written the way the seed notes work them out by hand.

* parameters: ``64*(3*11*11)+64 = 23,296 params`` (weights + bias; ``/groups``
  for grouped and depthwise convolutions);
* output size: ``out 55 = (224-11+2*2)/4+1``, saying where PyTorch floors (or
  rounds up in ``ceil_mode``);
* neurons: ``55x55x64 = 193,600 neurons`` (elements of the output feature map);
* receptive field: ``rf 19 = 11+(3-1)*4; jump 8 = 4*2`` from the traced fields.

Every function returns ``None`` where it has nothing exact to say.
"""

from __future__ import annotations

from torch import nn

from backbones.summary.geometry import format_axis, pads_at_run_time, read_window, to_pair
from backbones.summary.tracer import Field, apply_window


def _fmt(n: int) -> str:
    return f"{n:,}"


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
        s = to_pair(stride)
        if all(int(o) == -(-int(n) // ss) for o, n, ss in zip(out_hw, in_hw, s)):
            how = "ceil(" + format_axis(tuple(int(n) for n in in_hw)) + f"/{format_axis(s)})"
            return f"out {format_axis((oh, ow))} = {how} ('same' padding, added at run time)"
        return f"out {format_axis((oh, ow))} (padding {padding!r})"
    k, s, p, d = to_pair(kernel), to_pair(stride), to_pair(padding), to_pair(dilation)
    parts = [_out_expr(int(n), kk, ss, pp, dd, ceil=ceil) for n, kk, ss, pp, dd in zip(in_hw, k, s, p, d)]
    if (parts[0][0], parts[1][0]) != (oh, ow):
        return f"out {format_axis((oh, ow))} (padding added at run time)"
    if parts[0][1] == parts[1][1]:
        return f"out {oh} = {parts[0][1]}"
    return f"out {oh}x{ow}: H {oh} = {parts[0][1]}, W {ow} = {parts[1][1]}"


def _neurons_part(output_shape: tuple[int, ...]) -> str:
    if len(output_shape) == 4:
        _, c, h, w = output_shape
        return f"{h}x{w}x{c} = {_fmt(h * w * c)} neurons"
    return ""


def derive(module: nn.Module, kind: str, input_shape, output_shape, own_params: int) -> str | None:
    """The worked derivation of one row (conv, linear, pooling, batch norm), ``None`` for other modules.

    ``kind`` is the row's type name; ``own_params`` the parameters the row shows.
    """
    try:
        if isinstance(module, nn.Conv2d) and len(input_shape) == 4 and len(output_shape) == 4:
            return _derive_conv(module, kind, input_shape, output_shape, own_params)
        if isinstance(module, nn.Linear):
            return _derive_linear(module, kind, own_params)
        if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)) and len(input_shape) == 4 and len(output_shape) == 4:
            return _derive_pool(module, kind, input_shape, output_shape)
        if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)) and len(input_shape) == 4:
            return _derive_adaptive(module, kind, input_shape, output_shape)
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.affine:
            c = module.num_features
            if own_params == 2 * c:
                return f"{kind} {c}: 2*{c} = {_fmt(2 * c)} params (scale and shift; running stats are buffers)"
    except (TypeError, ValueError, IndexError, AttributeError):
        return None
    return None


def _derive_linear(module: nn.Linear, kind: str, own_params: int) -> str:
    n_in, n_out = module.in_features, module.out_features
    expr = f"{n_out}*{n_in}" + (f"+{n_out}" if module.bias is not None else "")
    count = n_out * n_in + (n_out if module.bias is not None else 0)
    if count != own_params:
        return f"{kind} {n_in}->{n_out}: {_fmt(own_params)} params"
    tail = "" if module.bias is not None else " (no bias)"
    return f"{kind} {n_in}->{n_out}: {expr} = {_fmt(count)} params{tail}"


def _derive_pool(module: nn.Module, kind: str, input_shape, output_shape) -> str:
    k, s, p, d = read_window(module)
    head = f"{kind} k{format_axis(k)} s{format_axis(s)}" + (f" p{format_axis(p)}" if any(p) else "") + (
        f" d{format_axis(d)}" if d != (1, 1) else ""
    )
    dynamic = pads_at_run_time(module)
    size = _size_part(input_shape[-2:], output_shape[-2:], k, s, p, d, ceil=module.ceil_mode, dynamic=dynamic)
    return f"{head}: {size}"


def _derive_adaptive(module: nn.Module, kind: str, input_shape, output_shape) -> str:
    (h, w), (oh, ow) = input_shape[-2:], output_shape[-2:]
    what = "average" if isinstance(module, nn.AdaptiveAvgPool2d) else "maximum"
    head = f"{kind} {h}x{w} -> {oh}x{ow}"
    if (oh, ow) == (1, 1):
        return f"{head}: one {what} over each whole {h}x{w} map"
    if (oh, ow) == (h, w):
        return f"{head}: identity (windows k1 s1)"
    if h % oh == 0 and w % ow == 0:
        return f"{head}: windows k{format_axis((h // oh, w // ow))} s{format_axis((h // oh, w // ow))}"
    return f"{head}: uneven windows (start floor(i*{h}/{oh}), end ceil((i+1)*{h}/{oh}))"


def _derive_conv(module: nn.Conv2d, kind: str, input_shape, output_shape, own_params: int) -> str:
    c_in, c_out, g = module.in_channels, module.out_channels, module.groups
    k, s, padding, d = read_window(module)
    if padding == "valid":
        padding = (0, 0)
    head = f"{kind} {c_in}->{c_out}"
    if g > 1:
        head += " depthwise" if g == c_in == c_out else f" groups {g}"
    dynamic = pads_at_run_time(module)
    if dynamic or isinstance(padding, str):
        pad_text = f" p {padding if isinstance(padding, str) else 'same'}"
    else:
        pad_text = f" p{format_axis(padding)}"
    head += f", k{format_axis(k)} s{format_axis(s)}{pad_text}" + (f" d{format_axis(d)}" if d != (1, 1) else "")
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


def derive_receptive_field(module: nn.Module, f_in, f_out) -> str | None:
    """``rf 19 = 11+(3-1)*4; jump 8 = 4*2`` for a conv / pool row whose input field is known."""
    if not isinstance(f_in, Field) or not isinstance(f_out, Field) or f_in.whole:
        return None
    if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        k, s, _, d = read_window(module)
        if apply_window(f_in, k, s, d)[:2] != f_out[:2]:
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
            f"jump {format_axis(f_out.jump)} = {format_axis(tuple(jumps))}"
        )
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)) and f_out.whole:
        return f"global: rf {f_out.rf[0]} = {f_in.rf[0]}+(H-1)*{f_in.jump[0]} (the whole map)"
    return None
