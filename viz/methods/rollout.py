"""Attention rollout (Abnar & Zuidema 2020): how much of the class token's information comes from each patch.

Each encoder layer mixes tokens with its attention ``A`` ``(L, L)`` (heads fused by
their mean, or their maximum) and keeps a copy through the residual connection,
so the layer is modelled as ``0.5 * A + 0.5 * I``, rows renormalised to sum to 1.
Multiplying these through the layers, first to last, gives how each output token
draws on each input token; the class token's row over the patch tokens, laid out
on the patch grid and normalised to sum to 1, is the map. It does not depend on
the class (the attention does not), so every class of an image gets the same map.

torch's ``nn.MultiheadAttention`` runs a fused kernel in eval mode that never forms
the attention weights (torchvision's ViT calls it with ``need_weights=False``).
:func:`reading_attention` therefore sets, on the private view only, an instance
``forward`` on each attention module that asks for the per-head weights; the
view is a structural copy (:func:`viz.layers.private_view`), so the cached model's
modules, their ``forward`` and their hooks are never touched, and the view's own
are put back when the pass is done, also on error.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from backbones.errors import BackboneError
from backbones.layouts import patch_size_of
from viz.methods.base import Method, MethodInfo
from viz.methods.gradcam import upsample

HEAD_FUSIONS = ("mean", "max")


def attention_modules(model: nn.Module) -> list[nn.MultiheadAttention]:
    """The model's self-attention modules in definition order (torchvision ViT: one per encoder block)."""
    return [m for m in model.modules() if isinstance(m, nn.MultiheadAttention)]


def refuse_rollout(model: nn.Module) -> str | None:
    """Why attention rollout cannot run on ``model``, or ``None`` (a ViT with a class token and global attention)."""
    if not attention_modules(model):
        types = {type(m).__name__ for m in model.modules()}
        if "ShiftedWindowAttention" in types or "ShiftedWindowAttentionV2" in types:
            kind = "shifted windows (Swin)"
        elif "PartitionAttentionLayer" in types:
            kind = "windows and dilated grids (MaxViT)"
        else:
            kind = "its own attention modules" if any(t.endswith("Attention") for t in types) else None
        if kind:
            why = kind
            return (
                f"attention rollout needs a ViT whose every layer attends over all tokens (nn.MultiheadAttention); "
                f"this model attends within {why}, so the per-layer matrices do not chain over the image; "
                "use Grad-CAM, saliency or integrated-gradients"
            )
        return "attention rollout needs a vision transformer (this model has no attention layers); use Grad-CAM"
    if getattr(model, "class_token", None) is None:
        return "attention rollout reads the class token's row, and this model has no class_token"
    return None


@contextmanager
def reading_attention(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Within the block, every forward of ``model`` (a private view) appends each layer's per-head attention
    ``(N, heads, L, L)`` to the yielded list, in forward order. The modules' own ``forward`` is restored after."""
    weights: list[torch.Tensor] = []
    modules = attention_modules(model)
    saved = [m.__dict__.get("forward") for m in modules]

    def make_forward(module: nn.MultiheadAttention):
        def forward(query, key, value, **kwargs):
            kwargs["need_weights"] = True
            kwargs["average_attn_weights"] = False
            out, attn = nn.MultiheadAttention.forward(module, query, key, value, **kwargs)
            weights.append(attn.detach())
            return out, attn

        return forward

    try:
        for m in modules:
            m.forward = make_forward(m)
        yield weights
    finally:
        for m, old in zip(modules, saved):
            if old is None:
                m.__dict__.pop("forward", None)
            else:
                m.forward = old


def roll_out(attentions: list[torch.Tensor], *, head_fusion: str = "mean", prefix: int = 1) -> torch.Tensor:
    """The rollout of per-layer attentions ``[(N, heads, L, L), ...]`` (first layer first): ``(N, L - prefix)``.

    Heads fused by ``head_fusion`` (``"mean"`` or ``"max"``); each layer ``0.5 * A + 0.5 * I``, rows
    renormalised; the product read from token 0's row over the tokens after ``prefix``, normalised to sum to 1.
    """
    if head_fusion not in HEAD_FUSIONS:
        raise BackboneError(f"head_fusion must be one of {', '.join(HEAD_FUSIONS)}, got {head_fusion!r}")
    if not attentions:
        raise BackboneError("attention rollout saw no attention layer run")
    rollout = None
    for attn in attentions:
        a = attn.float()
        a = a.mean(dim=1) if head_fusion == "mean" else a.amax(dim=1)
        eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        a = 0.5 * a + 0.5 * eye
        a = a / a.sum(dim=-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout
    patches = rollout[:, 0, prefix:]
    return patches / patches.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(patches.dtype).tiny)


class AttentionRollout(Method):
    """Attention rollout for a ViT; ``raw`` is ``(N, h, w)`` over the patch grid summing to 1, ``heat`` its bilinear
    upsampling to the input ``(N, H, W)``. ``head_fusion``: ``"mean"`` (Abnar & Zuidema) or ``"max"``."""

    info = MethodInfo(
        "rollout", "Attention rollout", False, "1 forward pass (attention weights read)",
        "ViT only: attention of every layer, heads averaged, with the residual as 0.5·A + 0.5·I, multiplied "
        "through the layers and read from the class token over the patches (Abnar & Zuidema 2020). "
        "The same map for every class.",
    )
    options = ("head_fusion",)

    def __init__(self, model, layer=None, *, head_fusion: str = "mean", **kwargs):
        if head_fusion not in HEAD_FUSIONS:
            raise BackboneError(f"head_fusion must be one of {', '.join(HEAD_FUSIONS)}, got {head_fusion!r}")
        super().__init__(model, layer, **kwargs)
        self.head_fusion = head_fusion

    @classmethod
    def refusal(cls, model):
        return refuse_rollout(model)

    def compute_maps(self, score, x):
        with reading_attention(self.model) as weights, torch.no_grad():
            score(x)
        tokens = weights[0].shape[-1]
        size = tuple(x.shape[2:])
        patch = patch_size_of(self.model)
        h, w = (size[0] // patch, size[1] // patch) if patch else (round((tokens - 1) ** 0.5),) * 2
        prefix = tokens - h * w
        if prefix < 1:
            raise BackboneError(f"{tokens} tokens do not make a class token and a {h}x{w} patch grid")
        grid = roll_out(weights, head_fusion=self.head_fusion, prefix=prefix).view(-1, 1, h, w)
        return grid[:, 0], upsample(grid, size)[:, 0]
