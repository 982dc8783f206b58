"""The entry point :func:`summarize_model`: what to build (on the meta device when it can), errors, caching.

Catalog models are summarised untrained on the meta device (shapes only: VGG19
in well under a second instead of seconds); a model that cannot run there is
built for real. Summaries are cached per (model, input size), or per loaded
checkpoint.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from torch import nn

from backbones.callbacks import ProgressFn, StopFn
from backbones.errors import BackboneError
from backbones.summary.rows import ModelSummary
from backbones.summary.tree import looks_like_transformer, summarize_module

if TYPE_CHECKING:
    from backbones.zoo.models import LoadedModel

#: Largest accepted input side: summaries of real models run a real forward pass.
MAX_INPUT_SIDE = 2048


def normalize_input_size(input_size: Sequence[int] | None, default: Sequence[int]) -> tuple[int, int, int]:
    """``(C, H, W)`` as ints, checked; ``None`` gives ``default`` (the catalog entry's input size)."""
    size = tuple(default if input_size is None else input_size)
    try:
        c, h, w = (int(v) for v in size)
    except (TypeError, ValueError) as exc:
        raise BackboneError(f"input size must be three integers C H W, got {list(size)}") from exc
    if min(c, h, w) < 1 or c > 64 or max(h, w) > MAX_INPUT_SIDE:
        raise BackboneError(f"input size {c}x{h}x{w} out of range (C 1..64, H and W 1..{MAX_INPUT_SIDE})")
    return (c, h, w)


_CACHE: OrderedDict[tuple[str, tuple[int, int, int]], ModelSummary] = OrderedDict()
_CACHE_SIZE = 64
_CACHE_LOCK = threading.Lock()
_LOADED_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def clear_summary_cache() -> None:
    """Forget every cached summary."""
    with _CACHE_LOCK:
        _CACHE.clear()
        _LOADED_CACHE.clear()


def summarize_model(
    model: str | LoadedModel | nn.Module,
    *,
    input_size: Sequence[int] | None = None,
    name: str | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> ModelSummary:
    """The layer tree of ``model`` for one ``(C, H, W)`` input (default: the catalog entry's size).

    ``model`` is a catalog name (``"resnet50"``, ``"timm:rexnet_100"``: summarised
    untrained on the meta device, cached per name and input size), a
    :class:`~backbones.zoo.models.LoadedModel` (a checkpoint with its own head is
    summarised as loaded, under its lock, cached per object; other weights share
    the catalog summary) or any ``nn.Module`` (not cached; ``input_size``
    required, default ``(3, 224, 224)``). The model is run once in eval mode
    with a batch of one and is left as it was (no hook stays attached).

    Raises :class:`UnknownModelError` for unknown names, :class:`BackboneError`
    for an input the model cannot take, :class:`CancelledError` when
    ``should_stop()`` turns true.
    """
    from backbones.zoo.models import LoadedModel

    if isinstance(model, str):
        return _summarize_catalog(model, input_size, progress, should_stop)
    if isinstance(model, LoadedModel):
        if model.checkpoint is None:
            return _summarize_catalog(model.entry.name, input_size, progress, should_stop)
        size = normalize_input_size(input_size, model.entry.input_size)
        with _CACHE_LOCK:
            cached = _LOADED_CACHE.get(model, {}).get(size)
        if cached is not None:
            return cached
        with model.lock:
            summary = _summarize_guarded(
                lambda: model.model,
                name=name or model.name,
                architecture=model.entry.name,
                input_size=size,
                transformer=model.entry.is_transformer,
                progress=progress,
                should_stop=should_stop,
            )
        with _CACHE_LOCK:
            _LOADED_CACHE.setdefault(model, {})[size] = summary
        return summary
    if isinstance(model, nn.Module):
        size = normalize_input_size(input_size, (3, 224, 224))
        return _summarize_guarded(
            lambda: model,
            name=name or type(model).__name__,
            architecture=type(model).__name__,
            input_size=size,
            transformer=looks_like_transformer(model),
            progress=progress,
            should_stop=should_stop,
        )
    raise BackboneError(f"cannot summarise a {type(model).__name__}: give a model name, a LoadedModel or an nn.Module")


def _summarize_catalog(name: str, input_size, progress, should_stop) -> ModelSummary:
    from backbones.zoo.catalog import get_entry
    from backbones.zoo.models import build_architecture, build_empty

    entry = get_entry(name)
    size = normalize_input_size(input_size, entry.input_size)
    key = (entry.name, size)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    kwargs = dict(
        name=entry.name,
        architecture=entry.name,
        input_size=size,
        transformer=entry.is_transformer,
        progress=progress,
        should_stop=should_stop,
    )
    # Shapes only: parameters and activations on the meta device, nothing allocated.
    summary = _summarize_guarded(lambda: build_empty(entry).to("meta"), on_meta=True, **kwargs)
    if summary is None:  # the model cannot run on the meta device: build it for real
        summary = _summarize_guarded(lambda: build_architecture(entry), **kwargs)
    with _CACHE_LOCK:
        _CACHE[key] = summary
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return summary


def _summarize_guarded(build: Callable[[], nn.Module], *, on_meta: bool = False, **kwargs) -> ModelSummary | None:
    """:func:`summarize_module` of ``build()``, its errors translated once for every kind of model.

    A :class:`BackboneError` anywhere in the cause chain (a cancel, a bad name)
    is raised as it is; any other failure means the model cannot take this
    input. With ``on_meta``, a failure of the meta device itself returns ``None``.
    """
    try:
        return summarize_module(build(), **kwargs)
    except BackboneError:
        raise
    except (RuntimeError, NotImplementedError, ValueError, TypeError) as exc:
        found = next((e for e in _causes(exc) if isinstance(e, BackboneError)), None)
        if found is not None:
            raise found from exc
        if on_meta and (isinstance(exc, NotImplementedError) or "meta" in _deepest_message(exc).lower()):
            return None
        c, h, w = kwargs["input_size"]
        raise BackboneError(f"{kwargs['name']} cannot run on a {c}x{h}x{w} input: {_deepest_message(exc)}") from exc


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then what it was raised from, down the ``raise ... from`` chain."""
    seen: BaseException | None = exc
    while seen is not None:
        yield seen
        seen = seen.__cause__


def _deepest_message(exc: BaseException) -> str:
    """The first line of the root cause's message (at most 200 characters)."""
    *_, root = _causes(exc)
    return (str(root).strip().splitlines() or [type(root).__name__])[0][:200]
