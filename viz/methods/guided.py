"""Guided backpropagation (Springenberg et al. 2015), and the ReLU6 handling it shares with Guided Grad-CAM.

Guided backpropagation passes only positive gradients back through each ReLU, and
is defined for networks whose nonlinearities are ReLUs: captum hooks ``nn.ReLU``
modules only, so on a SiLU or GELU network (EfficientNet, ConvNeXt) the gradient
would go back through those unguided and the map would mean something else.
:class:`GuidedBackprop` therefore refuses such models; ReLU6 (EfficientNet-Lite,
MobileNetV2) is guided like a ReLU (:func:`guided_relu6`).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from viz.methods.base import Method, MethodInfo

# captum warns on every Guided Backprop call that it sets (and removes) ReLU hooks:
# on our private view that is expected, and the warning would reach CLI users.
warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU activations", category=UserWarning)

# Activation classes that are not (clipped) ReLUs: torch's own, and timm's or users' by name.
_OTHER_ACTIVATION = re.compile(r"silu|swish|gelu|mish|sigmoid|tanh|elu|softplus|hardswish|prelu|leakyrelu|glu")
_ALLOWED = (nn.ReLU, nn.ReLU6)


class _GuidedReLU6(nn.ReLU):
    """ReLU6 that captum's Guided Backprop recognises as a ReLU (it only hooks nn.ReLU)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.hardtanh(x, 0.0, 6.0)


@contextmanager
def guided_relu6(model: nn.Module) -> Iterator[None]:
    """Within the block, ``model``'s ReLU6 modules are guided ReLU6s; they are put back afterwards, also on error."""
    swap: dict = {}
    try:
        for module in model.modules():
            for name, child in list(module._modules.items()):
                if type(child) is nn.ReLU6:
                    swap[(module, name)] = child
                    module._modules[name] = _GuidedReLU6()
        yield
    finally:
        for (module, name), child in swap.items():
            module._modules[name] = child


def find_other_activation(model: nn.Module) -> tuple[str, str] | None:
    """``(layer name, class name)`` of the first activation module that is not a ReLU or ReLU6, or ``None``."""
    for name, module in model.named_modules():
        if isinstance(module, _ALLOWED) or next(module.children(), None) is not None:
            continue  # activations are leaves: a container named "SiLUNet" is not one
        cls = type(module)
        if cls.__module__ == "torch.nn.modules.activation" or _OTHER_ACTIVATION.search(cls.__name__.lower()):
            return name, cls.__name__
    return None


def refuse_unguided(model: nn.Module, what: str = "guided backpropagation") -> str | None:
    """Why ``what`` cannot run on ``model`` (it has an activation that is not a ReLU or ReLU6), or ``None``."""
    other = find_other_activation(model)
    if other is None:
        return None
    return (
        f"{what} needs a ReLU/ReLU6 network, but this model uses {other[1]} (at {other[0]}): "
        "guided backpropagation only guides ReLUs; use Grad-CAM, saliency or integrated-gradients"
    )


class GuidedBackprop(Method):
    """Plain guided backpropagation to the input (captum ``GuidedBackprop``), for ReLU and ReLU6 networks.

    ``raw`` and ``heat`` are both the largest absolute value over the colour
    channels, ``(N, H, W)``. Raises :class:`~backbones.errors.BackboneError` on
    construction when the model has another activation (SiLU, GELU, Hardswish, ...).
    """

    info = MethodInfo(
        "guided-backprop", "Guided Backprop", False, "1 forward + backward to the input",
        "Input gradient where every ReLU (and ReLU6) passes back only positive gradients "
        "(captum GuidedBackprop); ReLU networks only. The classic method that fails the model-randomisation check.",
    )

    @classmethod
    def refusal(cls, model):
        return refuse_unguided(model)

    def compute_maps(self, score, x):
        from captum.attr import GuidedBackprop as CaptumGuidedBackprop

        with guided_relu6(self.model):
            attr = CaptumGuidedBackprop(score).attribute(x.clone().requires_grad_(), target=None).detach()
        raw = attr.abs().amax(1)
        return raw, raw
