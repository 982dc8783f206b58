"""Occlusion: how much the class score drops when a window of the input is greyed out (captum ``Occlusion``)."""

from __future__ import annotations

import math

from viz.methods.base import Method, MethodInfo

#: Occluded copies evaluated per forward pass.
OCCLUSION_BATCH = 16


def occlusion_window(size: int) -> tuple[int, int]:
    """``(window, stride)`` for an input whose short side is ``size``: 1/7 and 1/14 of it."""
    window = max(2, round(size / 7))
    stride = max(1, round(size / 14))
    return window, stride


class Occlusion(Method):
    """Occlusion with a square window replaced by the mean colour.

    ``raw`` is the score drop averaged over colour channels (signed), ``heat`` its
    positive part, both ``(N, H, W)``.
    """

    info = MethodInfo(
        "occlusion", "Occlusion", False, "~170 forward passes, batched",
        "Drop in the class score when a window (1/7 of the input, stride 1/14) is replaced "
        "by the mean colour (captum Occlusion); positive part.",
    )
    scores_image_first = True

    @classmethod
    def native_shape(cls, raw_shape, size):
        """The grid of window positions: the map is at the input's size but no finer than the stride."""
        window, stride = occlusion_window(min(size))
        return ((size[0] - window) // stride + 1, (size[1] - window) // stride + 1)

    def forward_passes(self, size):
        rows, cols = self.native_shape(size, size)
        return 2 + math.ceil(rows * cols / OCCLUSION_BATCH)

    def compute_maps(self, score, x):
        from captum.attr import Occlusion as CaptumOcclusion

        window, stride = occlusion_window(min(x.shape[2:]))
        attr = CaptumOcclusion(score).attribute(
            x,
            sliding_window_shapes=(x.shape[1], window, window),
            strides=(x.shape[1], stride, stride),
            baselines=0.0,  # zero after normalisation: the mean colour
            target=None,
            perturbations_per_eval=OCCLUSION_BATCH,
        ).detach()
        raw = attr.mean(1)
        return raw, raw.clamp(min=0)
