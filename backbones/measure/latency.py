"""Latency: timed forward passes of one model on this machine, and their statistics.

Milliseconds (``_ms``) per forward pass of a ``(batch_size, C, H, W)`` input and images
per second (``_ips``). See :func:`measure_latency` for how runs are warmed up, timed and
stopped.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields

import torch

from backbones.errors import BackboneError, CancelledError
from backbones.measure.common import (
    MEASURED_DEVICE_TYPES,
    MEASUREMENT_LOCK,
    StopFn,
    check_input_size,
    check_positive,
    example_input,
    prepare_model,
    resolve_device,
    stop_requested,
    sync,
    torch_threads,
    unwrap_model,
)


@dataclass(frozen=True)
class LatencyStats:
    """Timed runs of one forward pass over a ``(batch_size, C, H, W)`` input.

    Two stats are equal when their figures and settings are; the raw ``samples_ms``
    (kept in the results store's details) are not compared.
    """

    median_ms: float
    p10_ms: float
    p90_ms: float
    mean_ms: float
    std_ms: float
    runs: int
    throughput_ips: float  # images per second = batch_size / mean run time
    device: str
    batch_size: int
    threads: int
    input_size: tuple[int, int, int]
    channels_last: bool
    warmup_runs: int
    timer: str  # "time.perf_counter" or "torch.cuda.Event"
    samples_ms: tuple[float, ...] = field(default=(), repr=False, compare=False)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["samples_ms"] = list(self.samples_ms)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> LatencyStats:
        """Rebuild from ``to_dict()`` output (extra keys are ignored, ``samples_ms`` may be missing).

        :class:`KeyError`, :class:`TypeError` or :class:`ValueError` on a missing or bad field.
        """
        values = {f.name: d[f.name] for f in fields(cls) if f.name != "samples_ms"}
        values["input_size"] = tuple(int(x) for x in d["input_size"])
        values["samples_ms"] = tuple(float(x) for x in d.get("samples_ms") or ())
        return cls(**values)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation between ranks (numpy's default)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summarize_times(samples_ms: Sequence[float], *, batch_size: int = 1) -> dict[str, float]:
    """``median_ms, p10_ms, p90_ms, mean_ms, std_ms`` (sample std), ``runs`` and ``throughput_ips``."""
    n = len(samples_ms)
    mean = statistics.fmean(samples_ms) if n else math.nan
    return {
        "median_ms": statistics.median(samples_ms) if n else math.nan,
        "p10_ms": percentile(samples_ms, 10),
        "p90_ms": percentile(samples_ms, 90),
        "mean_ms": mean,
        "std_ms": statistics.stdev(samples_ms) if n > 1 else 0.0,
        "runs": n,
        "throughput_ips": batch_size * 1000.0 / mean if n and mean > 0 else math.nan,
    }


def measure_latency(
    model,
    *,
    input_size: Sequence[int] = (3, 224, 224),
    batch_size: int = 1,
    device: str | torch.device = "cpu",
    threads: int | None = None,
    channels_last: bool = False,
    warmup: int = 3,
    warmup_s: float | None = None,
    runs: int | None = None,
    budget_s: float | None = 2.0,
    min_runs: int = 3,
    max_runs: int = 10_000,
    should_stop: StopFn | None = None,
) -> LatencyStats:
    """Time forward passes of ``model`` on a ``(batch_size, *input_size)`` input.

    ``model`` is an ``nn.Module`` or a :class:`~backbones.zoo.models.LoadedModel` (its lock is held).
    At least ``warmup`` untimed runs (and ``warmup_s`` seconds, by default a tenth of the
    budget up to 0.5 s) come first; then timed runs until ``runs`` are done or ``budget_s``
    seconds of timed runs have passed, whichever comes first, but at least ``min_runs``
    (capped by ``runs``). Everything runs under ``torch.inference_mode`` with
    ``torch.set_num_threads(threads)`` (restored afterwards); on CUDA runs are queued in
    chunks of ``CUDA_CHUNK``, each timed with CUDA events, synchronising after every chunk.
    ``should_stop()`` is polled between runs (:class:`CancelledError`). The caller's model is not moved or changed.
    """
    dev = resolve_device(device, types=MEASURED_DEVICE_TYPES, purpose="measurements")
    size = check_input_size(input_size)
    check_positive("batch size", batch_size)
    check_positive("threads", threads, allow_none=True)
    check_positive("runs", runs, allow_none=True)
    if runs is None and budget_s is None:
        raise BackboneError("give a run count or a time budget")
    if budget_s is not None and not (budget_s >= 0 and math.isfinite(budget_s)):
        raise BackboneError(f"budget must be a number of seconds >= 0, got {budget_s!r}")
    if warmup < 0:
        raise BackboneError(f"warm-up runs must be >= 0, got {warmup!r}")
    target = min(runs, max_runs) if runs is not None else max_runs
    floor = min(max(min_runs, 1), target)
    if warmup_s is None:
        warmup_s = min(0.5, 0.1 * budget_s) if budget_s else 0.0

    module, model_lock = unwrap_model(model)
    with MEASUREMENT_LOCK, model_lock, torch_threads(threads) as used_threads, torch.inference_mode():
        was_training = module.training
        module.eval()
        try:
            net = prepare_model(module, dev, channels_last)
            x = example_input(batch_size, size, dev, channels_last)
            samples, warmups = _timed_runs(
                net, x, dev,
                warmup=warmup, warmup_s=warmup_s, target=target, floor=floor,
                budget_s=budget_s, should_stop=should_stop,
            )
        finally:
            module.train(was_training)
    stats = summarize_times(samples, batch_size=batch_size)
    return LatencyStats(
        **stats,
        device=str(dev),
        batch_size=batch_size,
        threads=used_threads,
        input_size=size,
        channels_last=channels_last,
        warmup_runs=warmups,
        timer="torch.cuda.Event" if dev.type == "cuda" else "time.perf_counter",
        samples_ms=tuple(samples),
    )


#: CUDA runs queued back to back between synchronisations (budget and cancellation are checked between chunks).
CUDA_CHUNK = 10


def _cuda_chunk(net, x, n: int) -> list[float]:
    """``n`` runs queued back to back, each timed on the GPU from the end of the previous one.

    Synchronising after every run would add the launch latency of an idle GPU to each
    sample (batch-1 models on a fast GPU are launch-bound); this is the steady state of
    a stream of inferences, which is what ``torch.utils.benchmark`` measures too.
    """
    events = [torch.cuda.Event(enable_timing=True) for _ in range(n + 1)]
    events[0].record()
    for i in range(n):
        net(x)
        events[i + 1].record()
    events[-1].synchronize()
    return [float(a.elapsed_time(b)) for a, b in zip(events, events[1:])]


def _timed_runs(net, x, dev, *, warmup, warmup_s, target, floor, budget_s, should_stop) -> tuple[list[float], int]:
    warmups = 0
    start = time.perf_counter()
    while warmups < warmup or time.perf_counter() - start < warmup_s:
        if stop_requested(should_stop):
            raise CancelledError("measurement cancelled")
        net(x)
        warmups += 1
    sync(dev)

    samples: list[float] = []
    timed_start = time.perf_counter()
    while len(samples) < target:
        if stop_requested(should_stop):
            raise CancelledError("measurement cancelled")
        if dev.type == "cuda":
            samples.extend(_cuda_chunk(net, x, min(CUDA_CHUNK, target - len(samples))))
        else:
            t0 = time.perf_counter_ns()
            net(x)
            samples.append((time.perf_counter_ns() - t0) / 1e6)
        if len(samples) >= floor and budget_s is not None and time.perf_counter() - timed_start >= budget_s:
            break
    return samples, warmups
