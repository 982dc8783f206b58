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


# ----------------------------------------------------------------------------- the transfer sample
#: Bump when the transfer sample's images or classes change.
TRANSFER_SAMPLE_VERSION = 1
#: What ``python -m backbones transfer`` and the Transfer page call the transfer sample.
TRANSFER_SAMPLE_NAME = "sample-transfer"
#: Images per class: 9 train, 3 validation, 3 test with the probes' stratified split.
TRANSFER_PER_CLASS = 15


def _mri_slice():
    """matplotlib's ``s1045.ima.gz``: a real 256x256 16-bit MRI slice of a head, as an 8-bit greyscale image."""
    import gzip

    import matplotlib
    import numpy as np
    from PIL import Image

    path = Path(matplotlib.get_data_path()) / "sample_data" / "s1045.ima.gz"
    with gzip.open(path) as f:
        scan = np.frombuffer(f.read(), np.uint16).reshape(256, 256).astype(np.float64)
    scan = (255 * scan / max(scan.max(), 1.0)).astype(np.uint8)
    return Image.fromarray(scan).convert("RGB")


def _terrain():
    """matplotlib's ``jacksboro_fault_dem.npz``: real elevations of a fault zone, shaded as a relief map."""
    import matplotlib
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.colors import LightSource
    from PIL import Image

    with np.load(Path(matplotlib.get_data_path()) / "sample_data" / "jacksboro_fault_dem.npz") as dem:
        elevation = dem["elevation"].astype(np.float64)
    rgb = LightSource(azdeg=315, altdeg=45).shade(elevation, cmap=colormaps["gist_earth"], blend_mode="overlay")
    return Image.fromarray((rgb[..., :3] * 255).astype(np.uint8))


def _transfer_sources() -> dict[str, Callable]:
    """Class name -> how its source image is made. None of the names is an ImageNet class."""
    from PIL import Image

    photos = {p.name: p for p in sample_photos().values()}

    def photo(name: str) -> Callable:
        def opened():
            with Image.open(photos[name]) as img:
                return img.convert("RGB")
        return opened

    sources: dict[str, Callable] = {}
    for label, file in (("architecture", "china.jpg"), ("blossom", "flower.jpg"), ("portrait", "grace_hopper.jpg")):
        if file in photos:
            sources[label] = photo(file)
    try:
        import matplotlib  # noqa: F401  (ships the scan and the elevations)

        sources["medical scan"] = _mri_slice
        sources["terrain"] = _terrain
    except ImportError:
        pass
    return sources


def _transfer_views(img, per_class: int, seed: int):
    """``per_class`` crops of ``img``: seeded positions and scales (35-80% of the shorter side), half mirrored,
    some turned greyscale, each resized to 160 px on its shorter side."""
    import random

    from PIL import ImageOps

    rng = random.Random(seed)
    w, h = img.size
    for j in range(per_class):
        side = int(min(w, h) * rng.uniform(0.35, 0.8))
        left, top = rng.randint(0, w - side), rng.randint(0, h - side)
        crop = img.crop((left, top, left + side, top + side)).resize((160, 160))
        if j % 2:
            crop = ImageOps.mirror(crop)
        if j % 5 == 4:
            crop = ImageOps.grayscale(crop).convert("RGB")
        yield crop


def transfer_sample_dataset() -> Path:
    """The transfer sample's folder, built on first use: five classes that are not ImageNet classes
    (``architecture``, ``blossom``, ``portrait`` from the packaged photos; ``medical scan`` and ``terrain``
    from matplotlib's real MRI slice and elevation map), :data:`TRANSFER_PER_CLASS` crops each.

    Raises :class:`DatasetError` when fewer than two sources are installed.
    """
    target = cache_dir() / "datasets" / f"{TRANSFER_SAMPLE_NAME}-{TRANSFER_SAMPLE_VERSION}"
    if not target.is_dir():
        sources = _transfer_sources()
        if len(sources) < 2:
            raise DatasetError("the transfer sample needs matplotlib and scikit-learn installed (they ship its images)")
        try:
            with building_folder(target, prefix=".sample-") as tmp:
                for i, (label, make) in enumerate(sources.items()):
                    (tmp / label).mkdir()
                    for j, view in enumerate(_transfer_views(make(), TRANSFER_PER_CLASS, seed=i)):
                        view.save(tmp / label / f"{j:02d}.jpg", quality=90)
        except OSError as exc:
            if not target.is_dir():
                raise DatasetError(f"cannot build the transfer sample ({exc.strerror or exc})") from exc
    touch(target)
    return target
