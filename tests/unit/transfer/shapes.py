"""A tiny labelled dataset of classes no ImageNet model knows: coloured shapes drawn with PIL."""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw

CLASSES = ("blue_square", "green_triangle", "red_disc")


def write_shapes(root: Path, *, per_class: int = 12, size: int = 64, seed: int = 0) -> Path:
    """``root/<class>/<i>.png``: a shape of random position, size and shade on a random grey background."""
    rng = random.Random(seed)
    for name in CLASSES:
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            grey = rng.randint(90, 200)
            img = Image.new("RGB", (size, size), (grey, grey, grey))
            draw = ImageDraw.Draw(img)
            r = rng.randint(size // 5, size // 3)
            cx, cy = rng.randint(r, size - r), rng.randint(r, size - r)
            shade = rng.randint(170, 255)
            if name == "red_disc":
                draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(shade, 20, 20))
            elif name == "blue_square":
                draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=(20, 20, shade))
            else:
                draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=(20, shade, 20))
            img.save(folder / f"{i:02d}.png")
    return root
