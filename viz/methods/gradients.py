"""Input-gradient methods: saliency and integrated gradients (captum ``Saliency``, ``IntegratedGradients``).

Both differentiate the class score down to the input pixels, so they need no
layer; their maps are at the input's resolution.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from backbones.errors import BackboneError
from viz.methods.base import Method, MethodInfo

#: Interpolation steps evaluated per forward pass.
IG_BATCH = 8


def gaussian_kernel(k: int, sigma: float, *, dtype=torch.float32, device=None) -> torch.Tensor:
    """A normalised 1-D Gaussian of odd length ``k``, shape ``(k,)``."""
    t = torch.arange(k, dtype=dtype, device=device) - k // 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    return g / g.sum()


def make_baseline(x: torch.Tensor, kind: str) -> torch.Tensor:
    """The integrated-gradients starting point for a normalised ``(N, C, H, W)`` input.

    ``"mean"``: zeros, which after normalisation are the dataset's mean colour;
    ``"blur"``: a separable Gaussian blur of ``x`` (kernel about a tenth of the short side).
    """
    if kind == "mean":
        return torch.zeros_like(x)
    if kind == "blur":
        k = max(3, (min(x.shape[2:]) // 10) | 1)
        g = gaussian_kernel(k, k / 3, dtype=x.dtype, device=x.device)
        c = x.shape[1]
        padded = F.pad(x, (k // 2,) * 4, mode="reflect")
        out = F.conv2d(padded, g.view(1, 1, 1, k).repeat(c, 1, 1, 1), groups=c)
        return F.conv2d(out, g.view(1, 1, k, 1).repeat(c, 1, 1, 1), groups=c)
    raise BackboneError(f"unknown baseline {kind!r}; choose mean or blur")


class Saliency(Method):
    """The largest absolute input gradient over the colour channels; ``raw`` and ``heat`` both ``(N, H, W)``."""

    info = MethodInfo(
        "saliency", "Saliency", False, "1 forward + backward to the input",
        "Largest absolute input gradient over the colour channels (captum Saliency).",
    )

    def compute_maps(self, score, x):
        from captum.attr import Saliency as CaptumSaliency

        x = x.clone().requires_grad_()
        attr = CaptumSaliency(score).attribute(x, target=None, abs=True).detach()
        raw = attr.amax(1)
        return raw, raw


class IntegratedGradients(Method):
    """Integrated gradients from a baseline to the input (Gauss-Legendre, ``n_steps`` points, batched).

    ``raw`` is the attribution summed over colour channels (signed), ``heat`` its
    absolute value, both ``(N, H, W)``. ``baseline`` is ``"mean"`` or ``"blur"``
    (:func:`make_baseline`).
    """

    info = MethodInfo(
        "integrated-gradients", "Integrated Gradients", False, "32 forward + backward passes, batched",
        "Gradients integrated along the path from a mean-colour baseline to the image "
        "(captum IntegratedGradients, Gauss-Legendre, 32 steps); absolute sum over channels.",
    )
    options = ("n_steps", "baseline")
    scores_image_first = True

    def __init__(self, model, layer=None, *, n_steps: int = 32, baseline: str = "mean", **kwargs):
        super().__init__(model, layer, **kwargs)
        self.n_steps = n_steps
        self.baseline = baseline

    def forward_passes(self, size):
        return 1 + math.ceil(self.n_steps / IG_BATCH)

    def compute_maps(self, score, x):
        from captum.attr import IntegratedGradients as CaptumIntegratedGradients

        base = make_baseline(x, self.baseline)
        attr = CaptumIntegratedGradients(score).attribute(
            x, baselines=base, target=None, n_steps=self.n_steps, method="gausslegendre", internal_batch_size=IG_BATCH
        ).detach()
        raw = attr.sum(1)
        return raw, raw.abs()
