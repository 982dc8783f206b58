"""Real photos that ship inside installed packages, for demos and tests (no download)."""

from __future__ import annotations

import importlib
from pathlib import Path

# label -> (package, path inside it, what the bundled model sees in it)
_SAMPLES = {
    "Grace Hopper (matplotlib)": ("matplotlib", ("mpl-data", "sample_data", "grace_hopper.jpg"), "military uniform"),
    "Temple in China (scikit-learn)": ("sklearn", ("datasets", "images", "china.jpg"), "palace"),
    "Daisy with a bee (scikit-learn)": ("sklearn", ("datasets", "images", "flower.jpg"), "daisy"),
}


def sample_photos() -> dict[str, Path]:
    """``{label: path}`` of the sample photos whose packages are installed."""
    found = {}
    for label, (package, parts, _) in _SAMPLES.items():
        try:
            module = importlib.import_module(package)
        except ImportError:
            continue
        path = Path(module.__file__).resolve().parent.joinpath(*parts)
        if path.is_file():
            found[label] = path
    return found


def expected_label(label: str) -> str:
    """The ImageNet class a good model gives the sample photo ``label``."""
    return _SAMPLES[label][2]


def write_sample_dataset(root: str | Path, *, per_class: int = 4, broken: bool = False) -> Path:
    """An ImageFolder dataset at ``root`` made from the sample photos: ``per_class`` JPEGs per class.

    Each class folder is named after what the bundled model sees in its photo
    (``military_uniform``, ``palace``, ``daisy``) and holds flips and crops of it (the
    original first); ``broken`` adds an unreadable ``palace/broken.jpg``. For tests and
    benchmarks: the bundled model gets most of them right.
    """
    from PIL import Image, ImageOps

    root = Path(root)
    for label, path in sample_photos().items():
        folder = root / expected_label(label).replace(" ", "_")
        folder.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as opened:
            photo = opened.convert("RGB")
        w, h = photo.size
        for j in range(per_class):
            cut = 0.04 * (j // 2 % 6)  # fraction cut off each side; flips alternate
            img = photo.crop((int(w * cut), int(h * cut * (j % 3) / 2), w - int(w * cut), h - int(h * cut)))
            (ImageOps.mirror(img) if j % 2 else img).save(folder / f"{j:05d}.jpg", quality=90)
    if broken:
        (root / "palace").mkdir(parents=True, exist_ok=True)
        (root / "palace" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"not really a jpeg" * 10)
    return root
