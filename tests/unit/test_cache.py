"""The dashboard's model cache: LRU order, count and byte bounds, one load per key, safe eviction."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from torch import nn

from backbones.errors import BackboneError
from backbones.zoo.cache import ModelCache, model_bytes

MIB = 2**20


class Loaded:
    """Stands in for LoadedModel: a name and a model (what the cache looks at)."""

    def __init__(self, name: str, floats: int):
        self.name = name
        self.model = nn.Linear(floats, 1, bias=False)  # floats * 4 bytes of parameters


def loader(name: str, floats: int = 10, calls: list | None = None):
    def load():
        if calls is not None:
            calls.append(name)
        return Loaded(name, floats)

    return load


def test_model_bytes_counts_parameters_and_buffers_once():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))
    # conv: 8*3*3*3 + 8 = 224 floats; bn: weight, bias, running_mean, running_var (4 * 8 floats)
    # and num_batches_tracked (one int64 = 8 bytes).
    assert model_bytes(model) == (224 + 32) * 4 + 8
    tied = nn.Sequential(nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False))
    tied[1].weight = tied[0].weight
    assert model_bytes(tied) == 16 * 4
    assert model_bytes(Loaded("x", 25)) == 100
    assert model_bytes("not a model") == 0
    with torch.device("meta"):
        assert model_bytes(nn.Linear(1000, 1000)) == 0


def test_hit_returns_the_same_object_without_loading_again():
    cache = ModelCache(max_models=3, max_mb=10)
    calls: list[str] = []
    first = cache.get_or_load("a", loader("a", calls=calls))
    again = cache.get_or_load("a", loader("a", calls=calls))
    assert again is first
    assert calls == ["a"]
    s = cache.stats()
    assert (s.hits, s.misses, s.evictions) == (1, 1, 0)
    assert [(e.key, e.name, e.bytes) for e in s.entries] == [("a", "a", 40)]
    assert s.total_bytes == 40


def test_least_recently_used_is_evicted_first():
    cache = ModelCache(max_models=3, max_mb=10)
    calls: list[str] = []
    for key in "abc":
        cache.get_or_load(key, loader(key, calls=calls))
    cache.get_or_load("a", loader("a", calls=calls))  # a is now the most recent: b is the oldest
    cache.get_or_load("d", loader("d", calls=calls))
    assert cache.keys() == ["c", "a", "d"]
    assert "b" not in cache
    cache.get_or_load("b", loader("b", calls=calls))  # reloaded; c goes
    assert cache.keys() == ["a", "d", "b"]
    assert calls == ["a", "b", "c", "d", "b"]
    assert cache.stats().evictions == 2


def test_count_bound():
    cache = ModelCache(max_models=2, max_mb=10)
    for key in "abcde":
        cache.get_or_load(key, loader(key))
    assert len(cache) == 2
    assert cache.keys() == ["d", "e"]
    assert cache.stats().evictions == 3


def test_byte_bound_evicts_until_the_total_fits():
    cache = ModelCache(max_models=10, max_mb=1)  # 1 MiB = 262144 floats
    quarter = MIB // 4 // 4  # floats in 0.25 MiB
    for key in "abc":
        cache.get_or_load(key, loader(key, quarter))
    assert cache.stats().total_bytes == 3 * MIB // 4
    cache.get_or_load("big", loader("big", 2 * quarter))  # 0.75 + 0.5 > 1: a goes, 0.25 + 0.25 + 0.5 fits
    assert cache.keys() == ["b", "c", "big"]
    assert cache.stats().total_bytes == MIB
    cache.get_or_load("d", loader("d", quarter))  # over by 0.25: b goes
    assert cache.keys() == ["c", "big", "d"]
    assert cache.stats().evictions == 2


def test_model_larger_than_the_byte_bound_is_returned_but_not_kept():
    cache = ModelCache(max_models=5, max_mb=1)
    cache.get_or_load("small", loader("small"))
    calls: list[str] = []
    huge = cache.get_or_load("huge", loader("huge", MIB // 4 + 1, calls=calls))
    assert huge.name == "huge"
    assert "huge" not in cache
    assert cache.keys() == ["small"]  # nothing was evicted to make room for a model that cannot fit
    cache.get_or_load("huge", loader("huge", MIB // 4 + 1, calls=calls))
    assert calls == ["huge", "huge"]
    s = cache.stats()
    assert (s.oversized, s.evictions) == (2, 0)


def test_evicted_model_stays_usable_for_whoever_holds_it():
    cache = ModelCache(max_models=1, max_mb=10)
    held = cache.get_or_load("a", loader("a", 3))
    with torch.no_grad():
        held.model.weight.copy_(torch.tensor([[1.0, 2.0, 3.0]]))
    cache.get_or_load("b", loader("b", 3))
    assert "a" not in cache
    # The session that held "a" still computes with it: 1*1 + 2*1 + 3*1 = 6.
    assert held.model(torch.ones(1, 3)).item() == 6.0
    again = cache.get_or_load("a", loader("a", 3))
    assert again is not held  # a fresh load; the old object was not touched


def test_eight_threads_asking_at_once_load_once():
    cache = ModelCache(max_models=4, max_mb=10)
    calls: list[str] = []
    entered = threading.Event()
    release = threading.Event()

    def slow_load():
        calls.append("x")
        entered.set()
        release.wait(10)  # hold the load open until every thread has asked
        return Loaded("x", 10)

    results: list = [None] * 8
    start = threading.Barrier(8)

    def ask(i: int) -> None:
        start.wait()
        results[i] = cache.get_or_load("x", slow_load)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    assert entered.wait(10)
    time.sleep(0.2)  # let the other seven reach the wait (correctness does not depend on it)
    release.set()
    for t in threads:
        t.join(10)
    assert calls == ["x"]
    assert all(r is results[0] for r in results) and results[0] is not None
    s = cache.stats()
    assert (s.misses, s.hits) == (1, 7)


def test_different_keys_load_in_parallel():
    # Two loads that each wait for the other can only finish if the cache's lock is not held
    # while loading.
    cache = ModelCache(max_models=4, max_mb=10)
    both = threading.Barrier(2, timeout=10)

    def load(name):
        def run():
            both.wait()
            return Loaded(name, 4)

        return run

    out = {}
    threads = [threading.Thread(target=lambda n=n: out.update({n: cache.get_or_load(n, load(n))})) for n in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert sorted(out) == ["a", "b"]


def test_a_failed_load_reaches_every_waiter_and_is_not_cached():
    cache = ModelCache(max_models=4, max_mb=10)
    entered = threading.Event()
    release = threading.Event()

    def failing():
        entered.set()
        release.wait(10)
        raise BackboneError("bad checkpoint")

    errors: list[str] = []

    def ask():
        try:
            cache.get_or_load("k", failing)
        except BackboneError as exc:
            errors.append(str(exc))

    first = threading.Thread(target=ask)
    first.start()
    assert entered.wait(10)
    second = threading.Thread(target=ask)
    second.start()
    time.sleep(0.1)
    release.set()
    first.join(10)
    second.join(10)
    assert errors == ["bad checkpoint", "bad checkpoint"]
    assert "k" not in cache
    assert cache.stats().failures == 1
    assert cache.get_or_load("k", loader("k")).name == "k"  # the next try loads again


def test_many_threads_many_keys_stay_within_bounds():
    cache = ModelCache(max_models=3, max_mb=10)
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            for i in range(60):
                key = f"m{(seed * 7 + i) % 6}"
                loaded = cache.get_or_load(key, loader(key, 8))
                assert loaded.name == key
                assert len(cache) <= 3
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    s = cache.stats()
    assert len(s.entries) <= 3
    assert s.hits + s.misses == 8 * 60
    assert s.misses - s.evictions == len(s.entries)  # every load is either still here or was evicted


def test_get_discard_clear():
    cache = ModelCache(max_models=3, max_mb=10)
    assert cache.get("a") is None
    a = cache.get_or_load("a", loader("a"))
    cache.get_or_load("b", loader("b"))
    assert cache.get("a") is a
    assert cache.keys() == ["b", "a"]  # get marks as recently used
    assert cache.discard("b") and not cache.discard("b")
    cache.clear()
    assert len(cache) == 0
    s = cache.stats()
    assert (s.hits, s.misses, s.entries) == (0, 0, ())


def test_bounds_from_the_environment(monkeypatch):
    monkeypatch.setenv("BACKBONES_CACHE_MAX_MODELS", "2")
    monkeypatch.setenv("BACKBONES_CACHE_MAX_MB", "0.5")
    cache = ModelCache()
    assert (cache.max_models, cache.max_bytes) == (2, MIB // 2)
    monkeypatch.delenv("BACKBONES_CACHE_MAX_MODELS")
    monkeypatch.delenv("BACKBONES_CACHE_MAX_MB")
    cache = ModelCache()
    assert (cache.max_models, cache.max_bytes) == (6, 2048 * MIB)
    assert ModelCache(max_models=1, max_mb=3).max_bytes == 3 * MIB


@pytest.mark.parametrize("var, value", [("BACKBONES_CACHE_MAX_MODELS", "many"), ("BACKBONES_CACHE_MAX_MB", "-1")])
def test_bad_environment_values_are_clear_errors(monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    with pytest.raises(BackboneError, match=var):
        ModelCache()


def test_stats_to_dict_is_json_ready():
    import json

    cache = ModelCache(max_models=2, max_mb=1)
    cache.get_or_load(("catalog", "resnet18", "none"), loader("resnet18", 5))
    d = json.loads(json.dumps(cache.stats().to_dict()))
    assert d["entries"] == [{"key": "('catalog', 'resnet18', 'none')", "name": "resnet18", "bytes": 20}]
    assert (d["misses"], d["total_bytes"], d["max_models"], d["max_bytes"]) == (1, 20, 2, MIB)


def test_real_models_are_cached_by_their_size():
    from backbones.zoo.models import load_model

    loaded = load_model("squeezenet1_1", weights="none")
    # SqueezeNet 1.1: 1,235,496 float32 parameters and no buffers.
    assert model_bytes(loaded) == 1_235_496 * 4
    cache = ModelCache(max_models=4, max_mb=5)
    assert cache.get_or_load("sq", lambda: loaded) is loaded
    assert cache.stats().entries[0].bytes == 4_941_984
