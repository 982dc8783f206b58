"""Shared fixtures. Every test runs offline against temporary caches: nothing touches ~/.cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def pytest_configure(config):
    # Isolate caches before any project module reads them.
    base = Path(os.environ.setdefault("BACKBONES_TEST_ROOT", str(Path(config.rootpath) / ".pytest_cache" / "home")))
    os.environ["TORCH_HOME"] = str(base / "torch")
    os.environ["BACKBONES_CACHE_DIR"] = str(base / "backbone-lens")
    os.environ["HF_HUB_OFFLINE"] = "1"
    # Missing weights are downloaded on first use; tests that download set up a loopback server and turn this off.
    os.environ["BACKBONES_OFFLINE"] = "1"
    os.environ["HF_HOME"] = str(base / "hf")
    os.environ.setdefault("OMP_NUM_THREADS", "2")


def _photo(package: str, *parts: str) -> Path:
    import importlib

    module = importlib.import_module(package)
    return Path(module.__file__).resolve().parent.joinpath(*parts)


@pytest.fixture(scope="session")
def grace_hopper() -> Path:
    """A real photo (matplotlib's sample data): a woman in a US Navy uniform -> "military uniform"."""
    return _photo("matplotlib", "mpl-data", "sample_data", "grace_hopper.jpg")


@pytest.fixture(scope="session")
def china_photo() -> Path:
    """A real photo (scikit-learn's sample image): a Chinese temple -> "palace"."""
    return _photo("sklearn", "datasets", "images", "china.jpg")


@pytest.fixture(scope="session")
def flower_photo() -> Path:
    """A real photo (scikit-learn's sample image): a daisy -> "daisy"."""
    return _photo("sklearn", "datasets", "images", "flower.jpg")


@pytest.fixture(scope="session")
def lite0():
    """The bundled EfficientNet-Lite0 with its real ImageNet weights (loaded once per session)."""
    from backbones.zoo.models import load_model

    return load_model("efficientnet_lite0")


@pytest.fixture
def server():
    """A loopback HTTP server (a torchvision-style mirror and a Hugging Face-style Hub) for this test only."""
    from tests.loopback import LoopbackServer

    srv = LoopbackServer(stall_s=5.0).start()
    yield srv
    srv.stop()
