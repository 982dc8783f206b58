"""A bounded, thread-safe, least-recently-used cache of loaded models (for the dashboard).

Ten people at a group meeting pick ten backbones: keeping every model ever
loaded would exhaust memory, reloading on every click would be slow. The cache
keeps the most recently used models within two bounds, a count and a byte size
(parameter + buffer bytes of the model)::

    cache = ModelCache()                                   # bounds from the environment
    loaded = cache.get_or_load(("catalog", "resnet50", "none"),
                               lambda: load_model("resnet50", weights="none"))

Guarantees:

* a key is loaded once even when several threads ask for it at the same time:
  the first caller runs ``loader``, the others wait for its result (or its
  exception; failures are not cached, the next call tries again);
* loading happens outside the cache's lock, so different models load in parallel;
* **eviction only drops the cache's reference.** A session that holds a
  :class:`~backbones.zoo.models.LoadedModel` keeps a working object for as long as it
  keeps the reference; callers should keep the object they got for the duration
  of a task rather than asking the cache again half-way;
* a model larger than the byte bound on its own is returned to the caller but
  **not kept** (counted in ``stats().oversized``): the bound is a memory promise,
  so raise ``BACKBONES_CACHE_MAX_MB`` to cache such models.

Defaults: ``BACKBONES_CACHE_MAX_MODELS`` (6) and ``BACKBONES_CACHE_MAX_MB``
(2048), read when a cache is constructed.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from torch import nn

from backbones.errors import BackboneError

DEFAULT_MAX_MODELS = 6
DEFAULT_MAX_MB = 2048.0


def model_bytes(obj: Any) -> int:
    """Bytes held by a model's parameters and buffers (each storage counted once; meta tensors 0).

    ``obj`` is a :class:`~backbones.zoo.models.LoadedModel`, an ``nn.Module``, or
    anything else (0 bytes).
    """
    module = getattr(obj, "model", obj)
    if not isinstance(module, nn.Module):
        return 0
    seen: set[tuple[int, str]] = set()
    total = 0
    for tensor in [*module.parameters(), *module.buffers()]:
        if tensor.device.type == "meta":
            continue
        storage = tensor.untyped_storage()
        key = (storage.data_ptr(), str(tensor.device))
        if key in seen:  # tied weights, views of one buffer
            continue
        seen.add(key)
        total += storage.nbytes()
    return total


def _env_number(name: str, default: float, *, integer: bool) -> float:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        value = -1
    if value <= 0:
        kind = "a positive whole number" if integer else "a positive number"
        raise BackboneError(f"{name} must be {kind}, got {raw!r}")
    return value


@dataclass(frozen=True)
class CacheEntry:
    """One cached model, as :meth:`ModelCache.stats` reports it."""

    key: Hashable
    name: str
    bytes: int

    def to_dict(self) -> dict:
        return {"key": repr(self.key), "name": self.name, "bytes": self.bytes}


@dataclass(frozen=True)
class CacheStats:
    """Counters since construction (or :meth:`ModelCache.clear`) and the entries, least recent first."""

    hits: int
    misses: int
    evictions: int
    failures: int
    oversized: int
    entries: tuple[CacheEntry, ...]
    max_models: int
    max_bytes: int

    @property
    def total_bytes(self) -> int:
        return sum(e.bytes for e in self.entries)

    def to_dict(self) -> dict:
        return {
            "hits": self.hits,
            "misses": self.misses,
            "evictions": self.evictions,
            "failures": self.failures,
            "oversized": self.oversized,
            "entries": [e.to_dict() for e in self.entries],
            "total_bytes": self.total_bytes,
            "max_models": self.max_models,
            "max_bytes": self.max_bytes,
        }


class _Pending:
    """A load in flight: other threads asking for the same key wait on it."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None

    def result(self):
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.value


class ModelCache:
    """Least-recently-used models, bounded by ``max_models`` and ``max_mb`` (see the module docs)."""

    def __init__(self, *, max_models: int | None = None, max_mb: float | None = None):
        if max_models is None:
            max_models = int(_env_number("BACKBONES_CACHE_MAX_MODELS", DEFAULT_MAX_MODELS, integer=True))
        if max_mb is None:
            max_mb = _env_number("BACKBONES_CACHE_MAX_MB", DEFAULT_MAX_MB, integer=False)
        if max_models < 1:
            raise BackboneError(f"max_models must be at least 1, got {max_models}")
        if max_mb <= 0:
            raise BackboneError(f"max_mb must be positive, got {max_mb}")
        self.max_models = int(max_models)
        self.max_bytes = int(max_mb * 2**20)
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._pending: dict[Hashable, _Pending] = {}
        self._reset_counters()

    def _reset_counters(self) -> None:
        self._hits = self._misses = self._evictions = self._failures = self._oversized = 0

    def get_or_load(self, key: Hashable, loader: Callable[[], Any]):
        """The cached value for ``key``, else ``loader()`` (run once however many threads ask).

        ``loader`` usually returns a :class:`~backbones.zoo.models.LoadedModel`; its
        exceptions reach every caller waiting for that key and nothing is cached.
        """
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                self._hits += 1
                return self._entries[key][0]
            pending = self._pending.get(key)
            owner = pending is None
            if owner:
                pending = self._pending[key] = _Pending()
                self._misses += 1
            else:
                self._hits += 1  # served by another thread's load
        if not owner:
            return pending.result()
        try:
            value = loader()
            size = model_bytes(value)
        except BaseException as exc:
            with self._lock:
                self._failures += 1
                del self._pending[key]
            pending.error = exc
            pending.done.set()
            raise
        with self._lock:
            del self._pending[key]
            if size > self.max_bytes:
                self._oversized += 1
            else:
                self._entries[key] = (value, size)
                self._evict_over_bounds()
        pending.value = value
        pending.done.set()
        return value

    def _evict_over_bounds(self) -> None:
        # Called with the lock held. Dropping our reference is all eviction does: whoever
        # holds the object keeps a working model.
        total = sum(size for _, size in self._entries.values())
        while self._entries and (len(self._entries) > self.max_models or total > self.max_bytes):
            _, (_, size) = self._entries.popitem(last=False)
            total -= size
            self._evictions += 1

    def get(self, key: Hashable):
        """The cached value or None; does not load, does not count, marks it recently used."""
        with self._lock:
            if key not in self._entries:
                return None
            self._entries.move_to_end(key)
            return self._entries[key][0]

    def discard(self, key: Hashable) -> bool:
        """Drop ``key`` (e.g. a checkpoint the user removed); True if it was cached."""
        with self._lock:
            return self._entries.pop(key, None) is not None

    def clear(self) -> None:
        """Drop every entry and reset the counters (loads in flight still finish and are kept)."""
        with self._lock:
            self._entries.clear()
            self._reset_counters()

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._entries

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def keys(self) -> list[Hashable]:
        """Cached keys, least recently used first."""
        with self._lock:
            return list(self._entries)

    def stats(self) -> CacheStats:
        with self._lock:
            entries = tuple(
                CacheEntry(key, str(getattr(value, "name", type(value).__name__)), size)
                for key, (value, size) in self._entries.items()
            )
            return CacheStats(
                hits=self._hits,
                misses=self._misses,
                evictions=self._evictions,
                failures=self._failures,
                oversized=self._oversized,
                entries=entries,
                max_models=self.max_models,
                max_bytes=self.max_bytes,
            )

