"""Backbone Lens library: catalog, weights, checkpoints, prediction, measurement, summaries.

No streamlit here: the dashboard and the command line are both thin layers over this package.
The names below are imported on first use (``from backbones import predict`` works as before), so
``import backbones.errors`` or reading the catalog does not import torch: the dashboard's first paint
needs neither.
"""

from __future__ import annotations

from backbones.errors import (
    BackboneError,
    CheckpointError,
    DeviceError,
    ImageError,
    LayerError,
    UnknownModelError,
    WeightsUnavailableError,
)
from backbones.lazy import lazy_exports

#: Public name -> the module that defines it (imported when the name is first used).
_EXPORTS = {
    "load_image": "backbones.inference.images",
    "Prediction": "backbones.inference.predict",
    "predict": "backbones.inference.predict",
    "DEFAULT_MODEL": "backbones.zoo.catalog",
    "ModelEntry": "backbones.zoo.catalog",
    "get_entry": "backbones.zoo.catalog",
    "imagenet_categories": "backbones.zoo.catalog",
    "list_models": "backbones.zoo.catalog",
    "LoadedModel": "backbones.zoo.models",
    "build_architecture": "backbones.zoo.models",
    "count_parameters": "backbones.zoo.models",
    "load_checkpoint": "backbones.zoo.models",
    "load_model": "backbones.zoo.models",
}

__all__ = [
    "DEFAULT_MODEL",
    "BackboneError",
    "CheckpointError",
    "DeviceError",
    "ImageError",
    "LayerError",
    "LoadedModel",
    "ModelEntry",
    "Prediction",
    "UnknownModelError",
    "WeightsUnavailableError",
    "build_architecture",
    "count_parameters",
    "get_entry",
    "imagenet_categories",
    "list_models",
    "load_checkpoint",
    "load_image",
    "load_model",
    "predict",
]


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
