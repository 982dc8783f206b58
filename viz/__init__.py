"""Backbone Lens explanations: where CNN and transformer backbones look, and what their layers respond to.

Pure library (no Streamlit), built on captum. Every function takes a
:class:`backbones.zoo.models.LoadedModel` and leaves it exactly as it was (no hook,
``.grad``, mode or ``inplace`` change), so cached models can be shared across
sessions and threads::

    from backbones.zoo.models import load_model
    from viz import explain, render_grid, to_png_bytes

    loaded = load_model("efficientnet_lite0")
    exp = explain(loaded, image, method="gradcam", target="daisy")
    exp.heatmap            # float32 (H, W) in [0, 1] over the original image
    png = to_png_bytes(render_grid(image, [exp]))

Command line: ``python -m viz cam|features|layers|methods``.
"""

from viz.cam import (
    Explanation,
    explain,
    explain_methods,
    explain_models,
    explain_tensor,
    explain_topk,
)
from viz.features import ChannelStats, FeatureMaps, feature_maps, render_feature_grid
from viz.geometry import map_to_image
from viz.layers import (
    LayerInfo,
    default_layer,
    describe_layers,
    private_view,
    resolve_layer,
    spatial_layers,
)
from viz.methods.base import MethodInfo
from viz.methods.registry import LAYER_METHODS, METHODS, list_methods, normalize_method
from viz.overlay import (
    COLORMAPS,
    colorize,
    joint_heatmaps,
    normalize_heatmap,
    overlay,
    overlay_image,
    render_explanation,
    render_grid,
    to_png_bytes,
)
from viz.targets import Target, TargetError, resolve_target

__all__ = [
    "COLORMAPS",
    "LAYER_METHODS",
    "METHODS",
    "ChannelStats",
    "Explanation",
    "FeatureMaps",
    "LayerInfo",
    "MethodInfo",
    "Target",
    "TargetError",
    "colorize",
    "default_layer",
    "describe_layers",
    "explain",
    "explain_methods",
    "explain_models",
    "explain_tensor",
    "explain_topk",
    "feature_maps",
    "joint_heatmaps",
    "list_methods",
    "map_to_image",
    "normalize_heatmap",
    "normalize_method",
    "overlay",
    "overlay_image",
    "private_view",
    "render_explanation",
    "render_feature_grid",
    "render_grid",
    "resolve_layer",
    "resolve_target",
    "spatial_layers",
    "to_png_bytes",
]
