"""A small built-in labelled dataset, so an evaluation can be tried before one has one's own data.

Built from the real photos that ship inside installed packages (:mod:`backbones.samples`: matplotlib's
Grace Hopper, scikit-learn's temple and daisy), each class named after the ImageNet class the photo shows
(``military uniform``, ``palace``, ``daisy``), with five views of each photo (the original, mirrored, and
crops) so every class has several images::

    dataset = read_dataset(sample_dataset(), name="built-in sample")

The folder is written once, into ``cache_dir()/datasets/sample-<version>/``, through a temporary folder
renamed into place, so concurrent sessions never see half a dataset.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from backbones.errors import DatasetError
from backbones.paths import building_folder, cache_dir, touch
from backbones.samples import expected_label, sample_photos

#: Bump when the images or the class names change, so old caches are not reused.
SAMPLE_VERSION = 1


def _centre_crop(img):
    w, h = img.size
    return img.crop((w // 10, h // 10, w - w // 10, h - h // 10))


def _corner_crop(img, *, right: bool):
    # 80% of each side from one corner: a different framing of the same subject.
    w, h = img.size
    cw, ch = int(w * 0.8), int(h * 0.8)
    return img.crop((w - cw, h - ch, w, h) if right else (0, 0, cw, ch))


def _views() -> dict[str, Callable]:
    """File stem -> how that view is made from the photo (PIL image in, PIL image out)."""
    from PIL import ImageOps

    return {
        "original": lambda img: img,
        "mirrored": ImageOps.mirror,
        "centre-crop": _centre_crop,
        "top-left-crop-mirrored": lambda img: ImageOps.mirror(_corner_crop(img, right=False)),
        "bottom-right-crop": lambda img: _corner_crop(img, right=True),
    }


def _write_sample(folder: Path, photos: dict[str, Path]) -> None:
    from PIL import Image

    views = _views()
    for label, path in photos.items():
        class_dir = folder / expected_label(label)
        class_dir.mkdir()
        with Image.open(path) as opened:
            img = opened.convert("RGB")
        for stem, make in views.items():
            make(img).save(class_dir / f"{stem}.jpg", quality=92)


def sample_dataset() -> Path:
    """The built-in sample's folder (one sub-folder per class), built on first use; raises DatasetError."""
    target = cache_dir() / "datasets" / f"sample-{SAMPLE_VERSION}"
    if not target.is_dir():
        photos = sample_photos()
        if len(photos) < 2:
            raise DatasetError("the built-in sample needs matplotlib and scikit-learn installed (they ship its photos)")
        try:
            with building_folder(target, prefix=".sample-") as tmp:
                _write_sample(tmp, photos)
        except OSError as exc:
            if not target.is_dir():  # else another session finished it first
                raise DatasetError(f"cannot build the built-in sample ({exc.strerror or exc})") from exc
    touch(target)  # recently used: pruning of datasets/ takes the oldest first
    return target
