"""Backbone Lens library: catalog, weights, checkpoints, prediction, measurement, summaries.

No streamlit here: the dashboard and the command line are both thin layers over this package.
"""

from backbones.errors import (
    BackboneError,
    CheckpointError,
    DeviceError,
    ImageError,
    LayerError,
    UnknownModelError,
    WeightsUnavailableError,
)
from backbones.inference.images import load_image
from backbones.inference.predict import Prediction, predict
from backbones.zoo.catalog import DEFAULT_MODEL, ModelEntry, get_entry, imagenet_categories, list_models
from backbones.zoo.models import LoadedModel, build_architecture, count_parameters, load_checkpoint, load_model

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
