"""Activation layouts: how a layer's output lies over the image, and how to turn it into an ``(N, C, H, W)`` map.

A CNN layer already gives ``(N, C, H, W)``. Transformers do not: a ViT encoder
block gives tokens ``(N, 1 + T, C)`` (a class token, then the ``T = h * w``
patch tokens row by row), a Swin stage gives channels-last ``(N, H, W, C)``.
:func:`detect_layout` reads which from the output's shape and the input's size
once; :meth:`ActivationLayout.to_nchw` then lays any tensor of that shape (the
activations, and their gradients) out as ``(N, C, h, w)``, dropping the class
token. Grad-CAM, feature maps and the effective receptive field all go through
this one adapter instead of each knowing every architecture (pytorch-grad-cam's
``reshape_transform``, decided once per layer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from backbones.errors import BackboneError

#: Tokens before the patch grid that :func:`detect_layout` tries (class token, distillation / register tokens).
MAX_PREFIX_TOKENS = 8

NCHW = "NCHW"
NHWC = "NHWC"
TOKENS = "tokens"


@dataclass(frozen=True)
class ActivationLayout:
    """Where a layer's output puts channels and positions.

    ``kind`` is ``"NCHW"``, ``"NHWC"`` (channels last: Swin, ConvNeXt blocks) or
    ``"tokens"`` (``(N, prefix + h * w, C)``: ViT); ``grid`` is ``(h, w)`` for
    the input the layout was read at; ``prefix`` the tokens before the grid (a
    ViT's class token), dropped by :meth:`to_nchw`.
    """

    kind: str
    grid: tuple[int, int]
    channels: int
    prefix: int = 0

    @property
    def positions(self) -> int:
        return self.grid[0] * self.grid[1]

    def to_nchw(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` (the layer's output or its gradient, with a batch dimension) as ``(N, C, h, w)``."""
        if self.kind == NCHW:
            return t
        if self.kind == NHWC:
            if t.ndim != 4:
                raise BackboneError(f"a channels-last layer output must be 4-D (N, H, W, C), got {tuple(t.shape)}")
            return t.permute(0, 3, 1, 2)
        if t.ndim != 3:
            raise BackboneError(f"a token layer output must be 3-D (N, tokens, C), got {tuple(t.shape)}")
        patches = t[:, self.prefix :]
        h, w = self.grid
        if patches.shape[1] != h * w:
            raise BackboneError(
                f"{patches.shape[1]} patch tokens do not fill the {h}x{w} grid this layer was read with; "
                "give the model its own input size"
            )
        return patches.transpose(1, 2).reshape(t.shape[0], t.shape[2], h, w)

    def describe(self) -> str:
        """One line for a caption: how the output was laid out."""
        h, w = self.grid
        if self.kind == TOKENS:
            dropped = ", class token dropped" if self.prefix == 1 else (
                f", {self.prefix} prefix tokens dropped" if self.prefix else "")
            return f"{self.prefix + h * w} tokens x {self.channels}: patch tokens laid out on their {h}x{w} grid{dropped}"
        if self.kind == NHWC:
            return f"channels-last {h}x{w}x{self.channels} map, read as {self.channels}x{h}x{w}"
        return f"{self.channels}x{h}x{w} feature map"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "grid": list(self.grid), "channels": self.channels, "prefix": self.prefix}


def first_tensor(out) -> torch.Tensor | None:
    """A module's output as one tensor: itself, or the first of a tuple/list (None when there is none)."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    return None


def _fits(h: int, w: int, height: int, width: int) -> bool:
    """Whether an ``h x w`` grid is the input ``height x width`` downsampled by one stride (rounding either way)."""
    if not (1 <= h <= height and 1 <= w <= width):
        return False
    for side, grid, other_side, other in ((height, h, width, w), (width, w, height, h)):
        stride = side / grid
        if not math.floor(other_side / stride) - 1 <= other <= math.ceil(other_side / stride) + 1:
            return False
    return True


def detect_layout(shape: tuple[int, ...], input_hw: tuple[int, int], *, patch_size: int | None = None) -> ActivationLayout | None:
    """The layout of a layer output of ``shape`` (batch dimension dropped) for an input of ``input_hw = (H, W)``.

    ``(C, h, w)`` is NCHW when ``(h, w)`` is a downsampled grid of the input,
    else NHWC when ``(C, h)`` read as ``(h, w)`` is one; ``(L, C)`` is tokens
    when ``L`` minus up to :data:`MAX_PREFIX_TOKENS` tokens fills a grid of the
    input (``patch_size`` fixes the grid where the model says it). ``None`` for
    anything else (vectors, window partitions).
    """
    height, width = input_hw
    if len(shape) == 3:
        a, b, c = (int(s) for s in shape)
        if _fits(b, c, height, width):
            return ActivationLayout(NCHW, (b, c), a)
        if _fits(a, b, height, width):
            return ActivationLayout(NHWC, (a, b), c)
        return ActivationLayout(NCHW, (b, c), a)  # what every CNN layer has always been read as
    if len(shape) == 2:
        length, channels = (int(s) for s in shape)
        if patch_size:
            grids = [(height // patch_size, width // patch_size)]
        else:
            grids = []
            for prefix in range(0, MAX_PREFIX_TOKENS + 1):
                t = length - prefix
                if t < 2:
                    break
                h = max(1, round(math.sqrt(t * height / width)))
                if t % h == 0 and _fits(h, t // h, height, width):
                    grids.append((h, t // h))
                    break
        for h, w in grids:
            prefix = length - h * w
            if 0 <= prefix <= MAX_PREFIX_TOKENS and h * w > 1:
                return ActivationLayout(TOKENS, (h, w), channels, prefix)
    return None


def patch_size_of(model) -> int | None:
    """The patch side of a ViT (torchvision ``patch_size``, timm ``patch_embed.patch_size``), or ``None``."""
    size = getattr(model, "patch_size", None)
    if size is None:
        size = getattr(getattr(model, "patch_embed", None), "patch_size", None)
    if isinstance(size, (tuple, list)) and size:
        size = size[0]
    return int(size) if isinstance(size, int) and size > 0 else None
