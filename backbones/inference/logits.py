"""The one place that turns whatever a classifier's forward returns into ``(N, classes)`` logits."""

from __future__ import annotations

import torch

from backbones.errors import BackboneError


def logits_of(output) -> torch.Tensor:
    """``(N, classes)`` logits from a forward's output.

    GoogLeNet and Inception-v3 return ``(logits, aux...)`` named tuples when built in training mode; the first
    element is the main head. Anything that is not a 2-D tensor cannot be read as class scores.
    """
    if isinstance(output, (tuple, list)) and output:
        output = output[0]
    if not isinstance(output, torch.Tensor) or output.ndim != 2:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise BackboneError(f"the model must return (N, classes) logits, got {shape}")
    return output
