"""How alike two heatmaps are: Spearman rank correlation and SSIM, in numpy and torch (no scipy needed).

Both take two maps of the same shape ``(H, W)``. Spearman compares the order of
the pixels only (ties get their average rank, as ``scipy.stats.spearmanr`` does);
SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, ``K1 = 0.01``,
``K2 = 0.03``) also compares local structure and brightness, so it expects maps on
a common scale (the normalised heatmaps in [0, 1]).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from backbones.errors import BackboneError
from viz.methods.gradients import gaussian_kernel


def _pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise BackboneError(f"maps must have the same shape, got {a.shape} and {b.shape}")
    return a, b


def rank_average(values) -> np.ndarray:
    """Ranks 1..n of the flattened ``values``, tied values sharing their average rank."""
    flat = np.asarray(values, dtype=np.float64).ravel()
    order = np.argsort(flat, kind="mergesort")
    ordered = flat[order]
    first = np.r_[True, ordered[1:] != ordered[:-1]]
    starts = np.flatnonzero(first)
    ends = np.r_[starts[1:], flat.size]
    ranks = np.empty(flat.size)
    ranks[order] = ((starts + ends + 1) / 2)[np.cumsum(first) - 1]
    return ranks


def spearman(a, b) -> float:
    """Spearman's rank correlation of two maps; NaN when either is constant (an empty map has no order)."""
    a, b = _pair(a, b)
    ra, rb = rank_average(a), rank_average(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = math.sqrt(float(ra @ ra) * float(rb @ rb))
    return float(ra @ rb) / denom if denom > 0 else float("nan")


def ssim(a, b, *, data_range: float = 1.0) -> float:
    """Mean structural similarity of two maps over the positions where the window fits (``valid``).

    The window shrinks to the map's short side (odd) for maps smaller than 11 pixels.
    """
    a, b = _pair(a, b)
    x = torch.from_numpy(a)[None, None]
    y = torch.from_numpy(b)[None, None]
    k = min(11, *a.shape)
    k -= 1 - k % 2
    g = gaussian_kernel(k, 1.5, dtype=torch.float64)

    def blur(t: torch.Tensor) -> torch.Tensor:  # separable: rows, then columns
        return F.conv2d(F.conv2d(t, g.view(1, 1, k, 1)), g.view(1, 1, 1, k))

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(s.mean())
