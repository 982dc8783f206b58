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
