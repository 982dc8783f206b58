"""Build catalog architectures and load trained weights or users' checkpoints.

``load_model`` is the one entry point the CLI and the dashboard use::

    loaded = load_model("resnet50", weights="none")              # untrained, offline
    loaded = load_model("efficientnet_lite0")                    # bundled ImageNet weights
    loaded = load_model("resnet50", checkpoint="flowers.pth", classes="flowers.txt")

The result carries the model (in eval mode), the preprocessing its weights
expect, the class names and a lock for work that must not interleave (CAMs
attach hooks; see :mod:`viz`).
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from backbones.catalog import ModelEntry, get_entry, imagenet_categories
from backbones.checkpoints import read_class_names, read_state_dict
from backbones.errors import CheckpointError
from backbones.inference.preprocessing import Preprocessing
from backbones.weights import require_weights_file, resolve_weights

# Guards the process-wide patch in ``_empty_parameters`` against concurrent real builds.
_BUILD_LOCK = threading.RLock()


@dataclass(eq=False)
class LoadedModel:
    """A ready-to-run model with what it needs to be used correctly."""

    name: str
    entry: ModelEntry
    model: nn.Module
    preprocessing: Preprocessing
    categories: tuple[str, ...]
    weights: str  # a weights name, "bundled", "none" or "checkpoint"
    checkpoint: str | None = None
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @property
    def trained(self) -> bool:
        return self.weights != "none"

    @property
    def num_classes(self) -> int:
        return len(self.categories)

    def label(self, index: int) -> str:
        return self.categories[index] if 0 <= index < len(self.categories) else f"class {index}"

    def describe(self) -> str:
        if self.checkpoint:
            return f"{self.name} ({self.entry.name} checkpoint {Path(self.checkpoint).name}, {self.num_classes} classes)"
        return f"{self.entry.name} ({self.weights} weights)" if self.trained else f"{self.entry.name} (untrained)"


# Build untrained models as the published ones are: GoogLeNet's figures exclude its auxiliary
# heads (torchvision drops them after loading weights); Inception-v3 keeps them. Explicit
# init_weights also silences torchvision's warning about a future default.
_TORCHVISION_DEFAULTS = {
    "googlenet": {"aux_logits": False, "init_weights": True},
    "inception_v3": {"init_weights": True},
}


def _builder(entry: ModelEntry):
    if entry.source == "torchvision":
        import torchvision

        defaults = dict(_TORCHVISION_DEFAULTS.get(entry.arch, {}))
        if entry.arch.startswith("vit_"):
            # ViT's position embedding depends on the input size its default weights use (518 for SWAG).
            defaults["image_size"] = entry.input_size[-1]
        return lambda **kw: torchvision.models.get_model(entry.arch, weights=None, **{**defaults, **kw})
    import timm

    return lambda **kw: timm.create_model(entry.arch, pretrained=False, **kw)


def build_architecture(entry: ModelEntry | str, **kwargs) -> nn.Module:
    """The architecture with random weights, in eval mode (no download, no file read)."""
    entry = get_entry(entry) if isinstance(entry, str) else entry
    with _BUILD_LOCK:
        model = _builder(entry)(**kwargs)
    return model.eval()


@contextlib.contextmanager
def _empty_parameters():
    """Make every parameter registered inside the block a meta tensor (no memory, no init)."""
    original = nn.Module.register_parameter

    def register_parameter(module, name, param):
        original(module, name, param)
        if param is not None:
            p = module._parameters[name]
            module._parameters[name] = nn.Parameter(p.to("meta"), requires_grad=p.requires_grad)

    with _BUILD_LOCK:
        nn.Module.register_parameter = register_parameter
        try:
            yield
        finally:
            nn.Module.register_parameter = original


def build_empty(entry: ModelEntry | str, **kwargs) -> nn.Module:
    """The architecture with parameters on the meta device: shapes only, built in milliseconds.

    Enough to count parameters of the largest models without allocating them.
    RegNet builders compute with real tensors, so for them only the parameters
    are made meta.
    """
    entry = get_entry(entry) if isinstance(entry, str) else entry
    try:
        with torch.device("meta"):
            return _builder(entry)(**kwargs).eval()
    except (NotImplementedError, RuntimeError):
        with _empty_parameters():
            return _builder(entry)(**kwargs).eval()


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """``(total, trainable)`` parameter counts (shared tensors counted once)."""
    seen: set[int] = set()
    total = trainable = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return total, trainable


def _set_submodule(model: nn.Module, name: str, module: nn.Module | None) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def _resize_head(module: nn.Module, out: int) -> nn.Module:
    if isinstance(module, nn.Linear):
        return nn.Linear(module.in_features, out, bias=module.bias is not None)
    if isinstance(module, nn.Conv2d):
        return nn.Conv2d(
            module.in_channels,
            out,
            module.kernel_size,
            module.stride,
            module.padding,
            module.dilation,
            module.groups,
            module.bias is not None,
        )
    raise CheckpointError(f"cannot resize a {type(module).__name__} head")


def _fix_legacy_densenet_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # Old DenseNet checkpoints say "norm.1" where the module is now "norm1" (torchvision does the same).
    import re

    pattern = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")
    out = {}
    for key, value in state.items():
        m = pattern.match(key)
        out[m.group(1) + m.group(2) if m else key] = value
    return out


def fit_state_dict(model: nn.Module, state: dict[str, torch.Tensor], *, label: str = "checkpoint") -> int:
    """Load ``state`` into ``model``, adapting the classifier to the checkpoint's class count.

    Classification heads (layers producing the architecture's 1000 outputs) are
    replaced to match the checkpoint; auxiliary heads the checkpoint lacks are
    dropped (GoogLeNet, Inception-v3). Anything else that does not fit raises
    :class:`CheckpointError` naming a few missing, unexpected or mismatched keys.
    Returns the number of classes.
    """
    state = _fix_legacy_densenet_keys(state)
    heads = [
        name
        for name, m in model.named_modules()
        if (isinstance(m, nn.Linear) and m.out_features == 1000)
        or (isinstance(m, nn.Conv2d) and m.out_channels == 1000 and m.kernel_size == (1, 1))
    ]
    num_classes = None
    for name in heads:
        w = state.get(f"{name}.weight")
        module = model.get_submodule(name)
        if w is None or tuple(w.shape) == tuple(module.weight.shape):
            continue
        if tuple(w.shape[1:]) != tuple(module.weight.shape[1:]):
            # Not a head of another width: another architecture. The key comparison below
            # names missing / unexpected / mismatched keys, not just this one.
            continue
        _set_submodule(model, name, _resize_head(module, int(w.shape[0])))
        num_classes = int(w.shape[0])
    # Auxiliary classifiers: keep them when the checkpoint has them, drop them when not.
    for aux in ("aux1", "aux2", "AuxLogits"):
        if getattr(model, aux, None) is not None and not any(k.startswith(aux + ".") for k in state):
            setattr(model, aux, None)
            if hasattr(model, "aux_logits"):
                model.aux_logits = False
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
        for k in state
        if k in expected and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        if mismatched:
            parts.append(f"{len(mismatched)} mismatched (e.g. {'; '.join(mismatched[:2])})")
        hint = " (a checkpoint for another architecture?)" if len(missing) + len(mismatched) > 2 else ""
        raise CheckpointError(f"{label} does not fit this architecture{hint}: " + "; ".join(parts))
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise CheckpointError(f"{label}: {str(exc).splitlines()[0]}") from exc
    if num_classes is None:
        num_classes = 1000 if heads else _infer_outputs(model)
    return num_classes


def _infer_outputs(model: nn.Module) -> int:
    last = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return last[-1].out_features if last else 1000


def _load_trained(entry: ModelEntry, weights) -> nn.Module:
    if entry.source == "bundled":
        from backbones.bundled import load_bundled_into

        model = build_architecture(entry)
        load_bundled_into(entry.name, model)
        return model.eval()
    path = require_weights_file(entry, weights)
    if entry.source == "torchvision":
        # torchvision's own builder applies its per-model fixes (DenseNet keys, Inception's
        # transform_input); it finds the file in the hub cache and does not download.
        import torchvision
        from torchvision.models import get_model_weights

        enum = get_model_weights(entry.arch)[weights.name]
        if path.parent != Path(torch.hub.get_dir()) / "checkpoints":
            raise CheckpointError(f"{path}: not in torch's hub cache")
        try:
            with _BUILD_LOCK:
                model = torchvision.models.get_model(entry.arch, weights=enum)
        except (RuntimeError, EOFError, OSError, ValueError) as exc:
            raise CheckpointError(
                f"{entry.name} {weights.name}: cached file {path} does not load "
                f"({str(exc).splitlines()[0][:120]}); delete it and import it again"
            ) from exc
        return model.eval()
    model = build_architecture(entry)
    fit_state_dict(model, read_state_dict(path), label=path.name)
    return model.eval()


def load_model(
    name: str,
    *,
    weights: str | None = "default",
    checkpoint: str | os.PathLike | None = None,
    classes: str | os.PathLike | list[str] | None = None,
    display_name: str | None = None,
) -> LoadedModel:
    """Build ``name`` and load weights: the default trained ones, a named set, none, or a checkpoint.

    ``classes`` (with ``checkpoint``) is a .txt/.json file or a list of names;
    its length must equal the checkpoint's class count.
    """
    entry = get_entry(name)
    if checkpoint is not None:
        return load_checkpoint(entry, checkpoint, classes=classes, display_name=display_name)
    info = resolve_weights(entry, weights)
    if info is None:
        return LoadedModel(
            name=entry.name,
            entry=entry,
            model=build_architecture(entry),
            preprocessing=entry.preprocessing,
            categories=imagenet_categories(),
            weights="none",
        )
    model = _load_trained(entry, info)
    return LoadedModel(
        name=entry.name,
        entry=entry,
        model=model,
        preprocessing=info.preprocessing,
        categories=imagenet_categories(),
        weights=info.name,
    )


def load_checkpoint(
    entry: ModelEntry | str,
    checkpoint: str | os.PathLike,
    *,
    classes: str | os.PathLike | list[str] | None = None,
    display_name: str | None = None,
) -> LoadedModel:
    """Load a user's fine-tuned checkpoint into a catalog architecture.

    The class count is inferred from the classifier weight and the head replaced
    to match. Without ``classes``, 1000-class checkpoints use ImageNet names and
    others ``class 0 .. class N-1``.
    """
    entry = get_entry(entry) if isinstance(entry, str) else entry
    path = Path(checkpoint)
    state = read_state_dict(path)
    extra = {}
    if entry.arch == "googlenet" and any(k.startswith("aux1.") for k in state):
        extra["aux_logits"] = True  # trained with auxiliary heads: keep them so every key fits
    model = build_architecture(entry, **extra)
    n = fit_state_dict(model, state, label=path.name)
    if classes is None:
        names = list(imagenet_categories()) if n == 1000 else [f"class {i}" for i in range(n)]
    else:
        names = list(classes) if isinstance(classes, (list, tuple)) else read_class_names(classes)
        if len(names) != n:
            raise CheckpointError(
                f"{path.name} has {n} classes but the class-name list has {len(names)}"
            )
    return LoadedModel(
        name=display_name or path.stem,
        entry=entry,
        model=model.eval(),
        preprocessing=entry.preprocessing,
        categories=tuple(names),
        weights="checkpoint",
        checkpoint=str(path),
    )

