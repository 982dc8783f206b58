"""The Grad-CAM family on one template: Grad-CAM, Grad-CAM++, Guided Grad-CAM.

:class:`LayerCAM` does what every class activation map shares (after torch-cam's
``methods/gradient.py``): one forward pass that keeps the layer's activations
``A`` ``(N, C, h, w)``, one backward pass of the class score to that layer
(``torch.autograd.grad``: no parameter gradient, no backward through the trunk),
the weighted sum ``relu(sum_c w_c * A_c)`` and bilinear upsampling to the input.
A variant only says how the channel weights ``w`` come from the gradients and
activations (:meth:`LayerCAM.channel_weights`). Transformer layers enter the same
template: activations and gradients pass through the layer's activation layout
(:meth:`~viz.methods.base.Method.to_map`: a ViT's patch tokens on their grid, a
Swin stage's channels-last map transposed) before the weighting. Because the forward pass does not
depend on the class, top-k attributions share it (:meth:`LayerCAM.share_forward`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from backbones.errors import BackboneError
from backbones.inference.logits import logits_of
from viz.methods.base import Attribution, ClassScore, Method, MethodInfo
from viz.methods.guided import guided_relu6, refuse_unguided


def forward_keeping_activations(forward, layer: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(activations, output)``: ``forward(x)`` with ``layer``'s output kept, ready to differentiate against.

    The layer's output is kept as produced and a clone travels on, so an in-place
    operation further on (ResNet's ``out += identity``) cannot change what we keep;
    it is made to require grad even when the parameters are frozen. The hook is
    removed before returning, also when ``forward`` fails.
    """
    kept: list[torch.Tensor] = []

    def hook(_module, _inputs, output):
        first = output[0] if isinstance(output, (tuple, list)) else output
        if not isinstance(first, torch.Tensor):
            raise BackboneError(f"layer output must be a tensor, got {type(first).__name__}")
        if not first.requires_grad:
            first.requires_grad_()
        kept.append(first)
        if isinstance(output, (tuple, list)):
            return type(output)([first.clone(), *output[1:]])
        return first.clone()

    handle = layer.register_forward_hook(hook)
    try:
        out = forward(x)
    finally:
        handle.remove()
    return kept[0], out


def upsample(cam: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(N, 1, h, w)`` -> ``(N, 1, H, W)``, bilinear (captum ``LayerAttribution.interpolate``)."""
    from captum.attr import LayerAttribution

    return LayerAttribution.interpolate(cam, size, interpolate_mode="bilinear")


class LayerCAM(Method):
    """Template for class activation maps at ``layer``; subclasses implement :meth:`channel_weights`.

    ``raw`` is the map at the layer's resolution ``(N, h, w)``, in the class score's
    units; ``heat`` the same map upsampled bilinearly to the input ``(N, H, W)``.
    """

    def channel_weights(self, grads: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
        """Weights broadcastable against ``acts`` ``(N, C, h, w)``, from the score's gradient ``grads`` w.r.t. them."""
        raise NotImplementedError

    def combine(self, grads: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
        """The map ``relu(sum_c w_c * A_c)``, shape ``(N, 1, h, w)``."""
        return F.relu((self.channel_weights(grads, acts) * acts).sum(dim=1, keepdim=True))

    def cam(self, score: ClassScore, x: torch.Tensor) -> torch.Tensor:
        """The ``(N, 1, h, w)`` map for the class ``score`` returns: one forward, one backward to the layer."""
        acts, scores = forward_keeping_activations(score, self.layer, x)
        (grads,) = torch.autograd.grad(torch.unbind(scores), acts)
        return self.combine(self.to_map(grads.detach()), self.to_map(acts.detach()))

    def compute_maps(self, score, x):
        return self._maps(self.cam(score, x), tuple(x.shape[2:]))

    def _maps(self, cam: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        return cam[:, 0], upsample(cam, size)[:, 0]

    def share_forward(self, x):
        """One forward pass for every class; each class then costs one backward pass to the layer."""
        acts, logits = forward_keeping_activations(lambda t: logits_of(self.model(t)), self.layer, x)
        probs = torch.softmax(logits[0].detach().float(), dim=0)

        def attribute_class(index: int) -> Attribution:
            (grads,) = torch.autograd.grad(logits[0, index], acts, retain_graph=True)
            cam = self.combine(self.to_map(grads.detach()), self.to_map(acts.detach()))
            raw, heat = self._maps(cam, tuple(x.shape[2:]))
            return Attribution(raw=raw.float(), heat=heat.float(), index=index, probs=probs)

        return probs, attribute_class


class GradCAM(LayerCAM):
    """Grad-CAM (Selvaraju et al. 2017): each channel weighted by its spatially averaged gradient."""

    info = MethodInfo(
        "gradcam", "Grad-CAM", True, "1 forward + backward to the layer",
        "Layer activations weighted by the spatially averaged gradient of the class score, ReLU "
        "(captum LayerGradCam), upsampled bilinearly.",
    )

    def channel_weights(self, grads, acts):
        return grads.mean(dim=tuple(range(2, grads.ndim)), keepdim=True)


class GradCAMPlusPlus(LayerCAM):
    """Grad-CAM++ (Chattopadhay et al. 2018): per-position weights from the gradient's second and third powers."""

    info = MethodInfo(
        "gradcam++", "Grad-CAM++", True, "1 forward + backward to the layer",
        "Grad-CAM with per-position weights from second and third powers of the gradient "
        "(Chattopadhay et al. 2018), on captum's layer gradient primitive.",
    )

    def channel_weights(self, grads, acts):
        if grads.ndim != 4:
            raise BackboneError("Grad-CAM++ needs a layer with an (N, C, H, W) output")
        g2 = grads.pow(2)
        denom = 2 * g2 + acts.sum(dim=(2, 3), keepdim=True) * grads.pow(3)
        safe = torch.where(denom != 0, denom, torch.ones_like(denom))
        alpha = torch.where(denom != 0, g2 / safe, torch.zeros_like(g2))
        return (alpha * grads.clamp(min=0)).sum(dim=(2, 3), keepdim=True)


class GuidedGradCAM(Method):
    """Guided Grad-CAM: guided backpropagation times the upsampled Grad-CAM map (captum ``GuidedGradCam``'s formula).

    ``raw`` and ``heat`` are both the largest absolute value over the colour
    channels, ``(N, H, W)``. ReLU6 modules (EfficientNet-Lite, MobileNetV2) are
    guided like ReLUs; they are put back afterwards. Like guided backpropagation it
    refuses networks with other activations (GELU transformers, SiLU EfficientNets):
    captum guides only ReLUs, so the gradient would pass those unguided.
    """

    info = MethodInfo(
        "guided-gradcam", "Guided Grad-CAM", True, "2 forward + backward passes",
        "Guided backpropagation (ReLU and ReLU6 pass only positive gradients) times the Grad-CAM map: "
        "fine detail inside the Grad-CAM region (captum GuidedGradCam).",
    )

    def forward_passes(self, size):
        return 2

    @classmethod
    def refusal(cls, model):
        return refuse_unguided(model, "guided Grad-CAM")

    def compute_maps(self, score, x):
        from captum.attr import GuidedBackprop

        with guided_relu6(self.model):
            x = x.clone().requires_grad_()
            cam = GradCAM(self.model, self.layer, layout=self.layout).cam(score, x)
            guided = GuidedBackprop(score).attribute(x, target=None)
            attr = (guided * upsample(cam, tuple(x.shape[2:]))).detach()
        raw = attr.abs().amax(1)
        return raw, raw
