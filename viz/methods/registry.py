"""The attribution methods by name: which exist, what they are called, which class computes each.

:data:`METHOD_CLASSES` maps a canonical name to its :class:`~viz.methods.base.Method`
subclass, in the order a picker shows them; :data:`METHODS` maps the same names
to their :class:`~viz.methods.base.MethodInfo`. A new method is one class and one
line here. :func:`normalize_method` accepts the usual spellings (``Grad-CAM``, ``ig``).
"""

from __future__ import annotations

from backbones.errors import BackboneError
from viz.methods.base import Method, MethodInfo
from viz.methods.gradcam import GradCAM, GradCAMPlusPlus, GuidedGradCAM
from viz.methods.gradients import IntegratedGradients, Saliency
from viz.methods.guided import GuidedBackprop
from viz.methods.occlusion import Occlusion
from viz.methods.rollout import AttentionRollout

METHOD_CLASSES: dict[str, type[Method]] = {
    cls.info.name: cls
    for cls in (GradCAM, GradCAMPlusPlus, GuidedGradCAM, GuidedBackprop, Saliency, IntegratedGradients, Occlusion, AttentionRollout)
}

METHODS: dict[str, MethodInfo] = {name: cls.info for name, cls in METHOD_CLASSES.items()}

#: The methods that need a spatial layer.
LAYER_METHODS = frozenset(n for n, m in METHODS.items() if m.uses_layer)

_ALIASES = {
    "grad-cam": "gradcam",
    "grad_cam": "gradcam",
    "gradcampp": "gradcam++",
    "grad-cam++": "gradcam++",
    "gradcam-plus-plus": "gradcam++",
    "guided_gradcam": "guided-gradcam",
    "guidedgradcam": "guided-gradcam",
    "guided-grad-cam": "guided-gradcam",
    "guided_backprop": "guided-backprop",
    "guidedbackprop": "guided-backprop",
    "guided-backpropagation": "guided-backprop",
    "gbp": "guided-backprop",
    "ig": "integrated-gradients",
    "integrated_gradients": "integrated-gradients",
    "gradients": "saliency",
    "attention-rollout": "rollout",
    "attention_rollout": "rollout",
}


def list_methods() -> list[MethodInfo]:
    """Every method, in the order a picker shows them."""
    return list(METHODS.values())


def normalize_method(method: str) -> str:
    """The canonical method name; :class:`BackboneError` listing the choices when unknown."""
    key = str(method).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in METHODS:
        raise BackboneError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    return key


def get_method_class(method: str) -> type[Method]:
    """The class that computes ``method`` (any spelling :func:`normalize_method` accepts)."""
    return METHOD_CLASSES[normalize_method(method)]


def refused_methods(model) -> dict[str, str]:
    """``{method: why}`` for every method that cannot explain ``model`` (an ``nn.Module``; guided methods on a
    GELU or SiLU network, rollout on anything but a ViT)."""
    out = {}
    for name, cls in METHOD_CLASSES.items():
        reason = cls.refusal(model)
        if reason is not None:
            out[name] = reason
    return out
