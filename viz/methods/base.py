"""The interface every attribution method implements, captum style.

``Method(model, layer).attribute(inputs, target=...)`` takes inputs of shape
``(N, C, H, W)`` already preprocessed for ``model`` (a network returning
``(N, classes)`` logits; the entry points pass a private view, see
:func:`viz.layers.private_view`) and a class index, or ``None`` for the top-1
class of the first image, and returns an :class:`Attribution`. A subclass says
what it is (``info``), how many forward passes it costs (:meth:`Method.forward_passes`)
and how it turns the class score into maps (:meth:`Method.compute_maps`); the base class
handles the rest: grad mode, the input copy, progress, cancellation and the
top-1 class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from backbones.callbacks import ProgressFn, StopFn
from backbones.errors import BackboneError, CancelledError
from backbones.inference.logits import logits_of
from backbones.layouts import ActivationLayout
from viz.inputs import get_device_dtype
from viz.targets import check_index, rank_classes


@dataclass(frozen=True)
class MethodInfo:
    """An attribution method as the UI lists it."""

    name: str
    title: str
    uses_layer: bool
    passes: str  # the work it costs, for a hint next to the picker
    description: str

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "title": self.title,
            "uses_layer": self.uses_layer,
            "passes": self.passes,
            "description": self.description,
        }


@dataclass(frozen=True, eq=False)
class Attribution:
    """What one method found for one class.

    ``raw`` is float32 ``(N, h', w')``: the method's own map before upsampling, in
    its own units (Grad-CAM: at the layer's resolution); ``heat`` is float32
    ``(N, H, W)`` over the input, non-negative, not yet normalised; ``index`` the
    class explained and ``probs`` float32 ``(classes,)`` the model's probabilities
    for the first image.
    """

    raw: torch.Tensor
    heat: torch.Tensor
    index: int
    probs: torch.Tensor


def check_stop(should_stop: StopFn | None) -> None:
    """Raise :class:`~backbones.errors.CancelledError` when ``should_stop()`` says so."""
    if should_stop is not None and should_stop():
        raise CancelledError("explanation cancelled")


class ClassScore(nn.Module):
    """Model -> the target class's logit, shape ``(N,)``; remembers the first pass's probabilities.

    With no index the first forward pass picks its top-1 class, so Grad-CAM and
    saliency need no separate prediction pass. Each forward checks for
    cancellation and reports progress as ``(pass, total, "forward pass")``.
    """

    def __init__(self, model: nn.Module, index: int | None, *, total: int = 1, progress=None, should_stop=None):
        super().__init__()
        self.model = model
        self.index = index
        self.probs: torch.Tensor | None = None
        self.calls = 0
        self.total = total
        self.progress = progress
        self.should_stop = should_stop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_stop(self.should_stop)
        logits = logits_of(self.model(x))
        if self.probs is None:
            self.probs = torch.softmax(logits[0].detach().float(), dim=0)
            if self.index is None:
                self.index = int(self.probs.argmax())
            check_index(self.index, logits.shape[1])
        self.calls += 1
        if self.progress is not None:
            self.progress(min(self.calls, self.total), self.total, "forward pass")
        return logits[:, self.index]


class Method:
    """Base class: ``Method(model, layer).attribute(inputs, target=...)``.

    ``progress(done, total, message)`` is called after each forward pass;
    ``should_stop()`` returning true raises :class:`~backbones.errors.CancelledError`.
    ``layout`` says how the layer's output lies over the image (ViT tokens, Swin's
    channels-last maps; ``None``: ``(N, C, H, W)`` already); a method that cannot
    explain a model says why in :meth:`refusal`, and construction raises that line.
    Subclasses set ``info``, may set ``options`` (the keyword arguments their
    constructor adds) and ``scores_image_first`` (perturbation methods, whose passes
    see perturbed inputs, learn the top-1 class from a pass over the image itself
    first), and implement :meth:`compute_maps`; a method whose forward pass does not depend
    on the class overrides :meth:`share_forward` so top-k attributions share it.
    """

    info: ClassVar[MethodInfo]
    options: ClassVar[tuple[str, ...]] = ()
    scores_image_first: ClassVar[bool] = False

    def __init__(
        self,
        model: nn.Module,
        layer: nn.Module | None = None,
        *,
        layout: ActivationLayout | None = None,
        progress: ProgressFn | None = None,
        should_stop: StopFn | None = None,
    ):
        if self.info.uses_layer and layer is None:
            raise BackboneError(f"{self.info.title} needs a layer")
        reason = self.refusal(model)
        if reason is not None:
            raise BackboneError(reason)
        self.model = model
        self.layer = layer
        self.layout = layout
        self.progress = progress
        self.should_stop = should_stop

    @classmethod
    def refusal(cls, model: nn.Module) -> str | None:
        """Why this method cannot explain ``model`` (one line), or ``None`` when it can."""
        return None

    def to_map(self, t: torch.Tensor) -> torch.Tensor:
        """The layer's output (or its gradient) as ``(N, C, h, w)``, through the layer's activation layout.

        CNN layers pass through; a ViT's tokens lose the class token and are laid out on
        their patch grid, a Swin stage's channels-last map is transposed
        (:class:`backbones.layouts.ActivationLayout`).
        """
        return t if self.layout is None else self.layout.to_nchw(t)

    def forward_passes(self, size: tuple[int, int]) -> int:
        """Forward passes one :meth:`attribute` call makes on an input of ``size = (H, W)`` (for progress)."""
        return 1

    @classmethod
    def native_shape(cls, raw_shape: tuple[int, ...], size: tuple[int, int]) -> tuple[int, int]:
        """The resolution ``(h, w)`` at which the method resolves detail, for an input of ``size = (H, W)``.

        ``raw_shape`` is the shape of :attr:`Attribution.raw` for one image (Grad-CAM: the
        layer's map, 7x7 at a last stage); a random reference map for a faithfulness score
        is drawn at this resolution so that it is as smooth as the method's map.
        """
        return (int(raw_shape[-2]), int(raw_shape[-1]))

    def compute_maps(self, score: ClassScore, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(raw, heat)`` for the class ``score`` returns, ``x`` an ``(N, C, H, W)`` input with autograd on."""
        raise NotImplementedError

    def prepare_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        """A copy of ``inputs`` on the model's device and dtype; call with autograd on.

        A copy made outside inference mode: a caller's inference tensor cannot enter autograd.
        """
        device, dtype = get_device_dtype(self.model)
        return inputs.detach().to(device=device, dtype=dtype).clone()

    def attribute(self, inputs: torch.Tensor, target: int | None = None) -> Attribution:
        """Attribute class ``target`` (``None``: the top-1 class) for ``inputs`` of shape ``(N, C, H, W)``."""
        with torch.inference_mode(False), torch.enable_grad():
            x = self.prepare_inputs(inputs)
            total = self.forward_passes(tuple(x.shape[2:]))
            score = ClassScore(self.model, target, total=total, progress=self.progress, should_stop=self.should_stop)
            if self.scores_image_first:
                with torch.no_grad():
                    score(x)
            raw, heat = self.compute_maps(score, x)
        return Attribution(raw=raw.float(), heat=heat.float(), index=int(score.index), probs=score.probs)

    def attribute_topk(
        self, inputs: torch.Tensor, k: int, *, each: Callable[[int, Attribution], None] | None = None
    ) -> list[Attribution]:
        """One :class:`Attribution` for each of the top-``k`` classes of the first image, best first.

        ``each(i, attribution)`` is called as each one is done; ``should_stop`` is
        asked before each class.
        """
        out = []
        with torch.inference_mode(False), torch.enable_grad():
            probs, attribute_class = self.share_forward(self.prepare_inputs(inputs))
            for i, index in enumerate(rank_classes(probs, k)):
                check_stop(self.should_stop)
                out.append(attribute_class(index))
                if each is not None:
                    each(i, out[-1])
        return out

    def share_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Callable[[int], Attribution]]:
        """What :meth:`attribute_topk` shares between classes: the first image's probabilities and a
        function attributing one class.

        This version makes one prediction pass, then runs :meth:`attribute` once per
        class; methods whose forward pass does not depend on the class share it instead.
        """
        with torch.no_grad():
            probs = torch.softmax(logits_of(self.model(x))[0].float(), dim=0)
        return probs, lambda index: self.attribute(x, target=index)
