"""Pre-logit features: the pooled vector a classifier's last layer sees, for any catalog model or checkpoint.

    feats = pre_logit_module(load_model("resnet50"))(x)      # (N, 3, H, W) -> (N, 2048)
    classifier_name(model)                                  # "fc": the layer a probe replaces

timm models (and the bundled Lites, timm's ``tf_efficientnet_lite``) say it themselves
(``forward_head(..., pre_logits=True)``); for torchvision models and checkpoints it is the input of
the last ``nn.Linear``, taken by a hook that lives only during the call.
"""

from __future__ import annotations

import torch
from torch import nn

from backbones.errors import BackboneError


def is_timm_model(model: nn.Module) -> bool:
    """timm models split their forward into ``forward_features`` and ``forward_head(pre_logits=)``."""
    return callable(getattr(model, "forward_features", None)) and callable(getattr(model, "forward_head", None))


def classifier_name(model: nn.Module) -> str:
    """Dotted name of the layer that turns the pre-logit features into class scores.

    timm: ``get_classifier()``; otherwise the last ``nn.Linear`` (torchvision's ``fc``,
    ``classifier.6``, ``heads.head``; a checkpoint's own head), else a last 1x1 ``nn.Conv2d``
    (SqueezeNet). Raises :class:`BackboneError` when the model has neither.
    """
    if is_timm_model(model) and callable(getattr(model, "get_classifier", None)):
        head = model.get_classifier()
        for name, module in model.named_modules():
            if module is head and isinstance(module, (nn.Linear, nn.Conv2d)):
                return name
    linear = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if linear:
        return linear[-1]
    convs = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]
    if convs:
        return convs[-1]
    raise BackboneError(f"{type(model).__name__} has no Linear or 1x1 convolution classifier to take features before")


class PreLogits(nn.Module):
    """``(N, 3, H, W)`` images -> ``(N, D)`` pooled features, the input of ``model``'s classifier.

    timm (and the bundled Lites, timm's ``tf_efficientnet_lite``): ``forward_head(forward_features(x),
    pre_logits=True)``. Others: ``model(x)`` with a pre-hook on the classifier
    (:func:`classifier_name`) that keeps its input; the hook lives only during the call. A 1x1
    convolution head's input is averaged over space. The model is not copied.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.timm = is_timm_model(model)
        self.head = None if self.timm else classifier_name(model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.timm:
            return self.model.forward_head(self.model.forward_features(x), pre_logits=True).flatten(1)
        head = self.model.get_submodule(self.head)
        seen: list[torch.Tensor] = []
        handle = head.register_forward_pre_hook(lambda _module, args: seen.append(args[0]))
        try:
            self.model(x)
        finally:
            handle.remove()
        if not seen:
            raise BackboneError(f"the classifier {self.head} was not called by the model's forward")
        feats = seen[-1]
        return (feats.mean(dim=(2, 3)) if feats.ndim == 4 else feats).flatten(1)


def pre_logit_module(model) -> PreLogits:
    """:class:`PreLogits` of an ``nn.Module`` or a :class:`~backbones.zoo.models.LoadedModel`."""
    inner = getattr(model, "model", None)
    return PreLogits(inner if isinstance(inner, nn.Module) and not isinstance(model, nn.Module) else model)
