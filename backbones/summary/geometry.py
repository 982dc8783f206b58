"""Window geometry of convolution and pooling: kernel, stride, padding and dilation as (H, W) pairs.

The tracer, the derivations and the rows all read a module's window the same
way (a pool without a stride steps by its kernel; a module without dilation
has dilation 1), so they read it here.
"""

from __future__ import annotations

from typing import NamedTuple

from torch import nn


class Window(NamedTuple):
    """A sliding window along (H, W); ``padding`` stays a string for ``'same'`` / ``'valid'``."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int] | str
    dilation: tuple[int, int]


def to_pair(value) -> tuple[int, int]:
    """``3`` -> ``(3, 3)``, ``(3,)`` -> ``(3, 3)``, ``(3, 1)`` -> ``(3, 1)``."""
    if isinstance(value, int):
        return (value, value)
    value = tuple(int(v) for v in value)
    return (value[0], value[0]) if len(value) == 1 else (value[0], value[1])


def format_axis(values: tuple) -> str:
    """``(3, 3)`` -> ``"3"``, ``(3, 1)`` -> ``"3x1"``: one number when both axes agree."""
    return f"{values[0]}" if values[0] == values[1] else f"{values[0]}x{values[1]}"


def read_window(module: nn.Module) -> Window:
    """The window of a module with a ``kernel_size`` (conv, max / avg pooling).

    Raises ``TypeError`` / ``ValueError`` / ``IndexError`` for attributes that are not sizes.
    """
    stride = getattr(module, "stride", None)
    padding = getattr(module, "padding", 0)
    return Window(
        kernel=to_pair(module.kernel_size),
        stride=to_pair(stride if stride is not None else module.kernel_size),
        padding=padding if isinstance(padding, str) else to_pair(padding),
        dilation=to_pair(getattr(module, "dilation", 1)),
    )


def pads_at_run_time(module: nn.Module) -> bool:
    """timm's ``Conv2dSame`` / ``MaxPool2dSame``: TF-style 'same' padding added in ``forward``."""
    return type(module).__name__.endswith("Same")
