"""What every entry point does to its arguments before a method runs.

An image argument becomes an RGB PIL image (:func:`ensure_rgb`), a
:class:`~backbones.zoo.models.LoadedModel` becomes a private view that no other
session sees (:func:`make_private_view`), and tensors are moved to the device and
floating-point dtype that view computes in (:func:`get_device_dtype`).
"""

from __future__ import annotations

import torch
from PIL import Image
from torch import nn

from backbones.zoo.models import LoadedModel
from viz.layers import private_view


def ensure_rgb(image) -> Image.Image:
    """``image`` as an RGB PIL image; paths and bytes are decoded with :func:`backbones.inference.images.load_image`."""
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    from backbones.inference.images import load_image

    return load_image(image)


def make_private_view(loaded: LoadedModel) -> nn.Module:
    """A private view of ``loaded.model`` (:func:`viz.layers.private_view`) for one explanation."""
    # The lock only guards the moment of copying: a view is private afterwards.
    with loaded.lock:
        return private_view(loaded.model)


def get_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Where ``model``'s parameters live and the float dtype inputs need (CPU float32 for a model without any)."""
    p = next(iter(model.parameters()), None)
    if p is None:
        return torch.device("cpu"), torch.float32
    return p.device, (p.dtype if p.is_floating_point() else torch.float32)
