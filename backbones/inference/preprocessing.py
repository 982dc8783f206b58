"""Preprocessing that travels with a model: resize, centre crop, normalise.

The same :class:`Preprocessing` turns a PIL image into the tensor a model saw
and tells where in the original image that crop came from, so heatmaps can be
mapped back onto the whole photo.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

# torch and torchvision are imported where an image is transformed, not here: the catalog (which every page
# reads, the first paint included) describes each model's preprocessing without them.
if TYPE_CHECKING:
    import torch
    from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """Resize the shorter side to ``resize_size``, centre-crop ``crop_size``, normalise.

    ``crop_size`` is the model's input (height = width). ``crop_pct`` is
    ``crop_size / resize_size`` as timm states it.
    """

    crop_size: int = 224
    resize_size: int = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"

    @property
    def input_size(self) -> tuple[int, int, int]:
        return (3, self.crop_size, self.crop_size)

    @property
    def interpolation_mode(self):
        """torchvision's ``InterpolationMode`` for :attr:`interpolation` (bilinear when the name is unknown)."""
        from torchvision.transforms import InterpolationMode

        modes = {"bicubic": InterpolationMode.BICUBIC, "nearest": InterpolationMode.NEAREST}
        return modes.get(self.interpolation, InterpolationMode.BILINEAR)

    @property
    def crop_pct(self) -> float:
        return round(self.crop_size / self.resize_size, 3)

    @classmethod
    def from_crop_pct(cls, crop_size: int, crop_pct: float, **kwargs) -> Preprocessing:
        # timm's rule: scale = floor(img_size / crop_pct)
        return cls(crop_size=crop_size, resize_size=int(math.floor(crop_size / crop_pct)), **kwargs)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["crop_pct"] = self.crop_pct
        return d

    def resized_crop(self, image: Image.Image) -> Image.Image:
        """The RGB crop the model sees, before normalisation (for display)."""
        from torchvision.transforms.v2 import functional as F

        mode = self.interpolation_mode
        img = F.resize(image, [self.resize_size], interpolation=mode, antialias=True)
        return F.center_crop(img, [self.crop_size, self.crop_size])

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """Tensor of shape ``(3, crop_size, crop_size)``, normalised."""
        import torch
        from torchvision.transforms.v2 import functional as F

        img = self.resized_crop(image)
        tensor = F.to_dtype(F.to_image(img), torch.float32, scale=True)
        return F.normalize(tensor, mean=list(self.mean), std=list(self.std))

    def batch(self, images: list[Image.Image]) -> torch.Tensor:
        """Tensor of shape ``(N, 3, crop_size, crop_size)``."""
        import torch

        return torch.stack([self(img) for img in images])

    def crop_box(self, width: int, height: int) -> tuple[float, float, float, float]:
        """``(left, top, right, bottom)`` of the model's input in original image pixels.

        Mirrors torchvision's resize (shorter side to ``resize_size``) and
        centre crop, so a heatmap over the crop can be placed on the photo.
        """
        # torchvision computes the long side as int(long * resize / short)
        new_w = self.resize_size if width <= height else int(width * self.resize_size / height)
        new_h = self.resize_size if height <= width else int(height * self.resize_size / width)
        scale_x, scale_y = width / new_w, height / new_h
        top = int(round((new_h - self.crop_size) / 2.0))
        left = int(round((new_w - self.crop_size) / 2.0))
        return (
            left * scale_x,
            top * scale_y,
            (left + self.crop_size) * scale_x,
            (top + self.crop_size) * scale_y,
        )
