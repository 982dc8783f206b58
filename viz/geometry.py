"""Between the model's input crop and the photo: where a map over the crop lies on the original image.

Preprocessing resizes the photo and cuts a crop out of it
(:meth:`backbones.inference.preprocessing.Preprocessing.crop_box` gives the crop
as ``(left, top, right, bottom)`` in the photo's pixels); :func:`map_to_image`
puts a map computed over that crop back onto the photo, bilinearly, with 0 where
the model saw nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

Box = tuple[float, float, float, float]


def whole_input_box(height: int, width: int) -> Box:
    """The box of an input that is its own crop (an already preprocessed tensor)."""
    return (0.0, 0.0, float(width), float(height))


def _interp_matrix(n_out: int, start: float, end: float, n_in: int) -> torch.Tensor:
    """``(n_out, n_in)`` weights sampling a length-``n_in`` signal at output pixel centres.

    Output pixel ``i`` (centre ``i + 0.5``) lies at input coordinate
    ``(i + 0.5 - start) / (end - start) * n_in - 0.5``; linear interpolation, edges clamped
    (``align_corners=False`` semantics, like ``F.interpolate``).
    """
    centres = (torch.arange(n_out, dtype=torch.float64) + 0.5 - start) / (end - start) * n_in - 0.5
    centres = centres.clamp(0, n_in - 1)
    lo = centres.floor().long().clamp(max=n_in - 1)
    hi = (lo + 1).clamp(max=n_in - 1)
    w_hi = centres - lo
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    rows = torch.arange(n_out)
    m[rows, lo] += 1 - w_hi
    m[rows, hi] += w_hi
    return m.float()


def map_to_image(crop_map: np.ndarray | torch.Tensor, box: Sequence[float], size: tuple[int, int]) -> np.ndarray:
    """Place a map over the crop ``box = (left, top, right, bottom)`` onto an image of ``size = (W, H)``.

    Bilinear, float32 ``(H, W)``; pixels whose centre falls outside the box are 0.
    """
    m = torch.as_tensor(np.asarray(crop_map), dtype=torch.float32)
    width, height = size
    left, top, right, bottom = box
    out = np.zeros((height, width), dtype=np.float32)
    x0, x1 = max(0, math.ceil(left - 0.5)), min(width, math.floor(right - 0.5) + 1)
    y0, y1 = max(0, math.ceil(top - 0.5)), min(height, math.floor(bottom - 0.5) + 1)
    if x1 <= x0 or y1 <= y0:
        return out
    rx = _interp_matrix(x1 - x0, left - x0, right - x0, m.shape[1])
    ry = _interp_matrix(y1 - y0, top - y0, bottom - y0, m.shape[0])
    out[y0:y1, x0:x1] = (ry @ m @ rx.T).numpy()
    return out
