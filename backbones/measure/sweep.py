"""Sweeps: latency, size and MACs of one or several models in one result, written to the results store.

:func:`bench_model` measures one model with :mod:`~backbones.measure.latency`,
:mod:`~backbones.measure.size` and :mod:`~backbones.measure.compute` and stamps the
:mod:`~backbones.measure.environment`; :func:`bench_models` runs several in a row,
storing each result as soon as it exists.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from backbones.errors import BackboneError, CancelledError
from backbones.measure.common import (
    MEASURED_DEVICE_TYPES,
    MEASUREMENT_LOCK,
    ProgressFn,
    StopFn,
    check_input_size,
    check_positive,
    resolve_device,
    stop_requested,
    torch_threads,
)
from backbones.measure.compute import ComputeReport, count_macs
from backbones.measure.environment import collect_env
from backbones.measure.latency import LatencyStats, measure_latency
from backbones.measure.size import STATE_DICT_METHOD, SizeReport, measure_size

#: The ``bench --json`` fields, in order.
BENCHMARK_FIELDS = (
    "model",
    "device",
    "batch_size",
    "threads",
    "input_size",
    "median_ms",
    "p10_ms",
    "p90_ms",
    "mean_ms",
    "std_ms",
    "runs",
    "throughput_ips",
    "params",
    "macs",
    "size_mib",
    "env",
)

#: The bench fields a result reads from its :class:`LatencyStats` (``result.median_ms`` is ``result.latency.median_ms``).
LATENCY_FIELDS = tuple(name for name in BENCHMARK_FIELDS if name in LatencyStats.__dataclass_fields__)


@dataclass(frozen=True)
class BenchmarkResult:
    """One model measured on this machine: latency, size and compute with the environment.

    The latency figures and settings (``median_ms``, ``device``, ``threads``, ... see
    :data:`LATENCY_FIELDS`) are read through from ``latency``. ``size_mib`` is the
    serialized state_dict size, ``macs`` is for one image. ``to_dict()`` gives exactly
    the ``bench --json`` fields; ``to_record()`` adds the details (latency samples, size
    breakdown, counting methods) for the results store.
    """

    model: str
    latency: LatencyStats
    params: int
    macs: int | None
    size_mib: float
    env: dict = field(default_factory=dict, compare=False, hash=False)
    size: SizeReport | None = field(default=None, compare=False, hash=False, repr=False)
    compute: ComputeReport | None = field(default=None, compare=False, hash=False, repr=False)

    def __getattr__(self, name: str):
        # Only reached when ordinary lookup fails, so the stored fields above always win.
        if name in LATENCY_FIELDS:
            return getattr(self.latency, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def flops(self) -> int | None:
        return None if self.macs is None else 2 * self.macs

    def to_dict(self) -> dict:
        d = {name: getattr(self, name) for name in BENCHMARK_FIELDS}
        d["input_size"] = list(self.input_size)
        d["env"] = dict(self.env)
        return d

    def to_record(self) -> dict:
        """``to_dict()`` plus ``details`` (what the results store keeps)."""
        d = self.to_dict()
        d["details"] = {
            "latency": self.latency.to_dict(),
            "size": self.size.to_dict() if self.size else None,
            "compute": self.compute.to_dict() if self.compute else None,
        }
        return d

    @classmethod
    def from_dict(cls, d: dict) -> BenchmarkResult:
        """Rebuild from ``to_dict()``/``to_record()`` output (e.g. a stored payload).

        The latency settings that are not bench fields (``channels_last``, ``warmup_runs``,
        ``timer``) come from the latency details, else from ``env``; the size and compute
        details are dropped.
        """
        try:
            env = dict(d.get("env") or {})
            details = (d.get("details") or {}).get("latency") or {}
            latency = LatencyStats.from_dict({**env, **details, **{name: d[name] for name in LATENCY_FIELDS}})
            return cls(
                model=d["model"], latency=latency, params=d["params"], macs=d["macs"], size_mib=d["size_mib"], env=env
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BackboneError(f"not a benchmark result: missing or bad field {exc}") from exc


def bench_model(
    model,
    *,
    device: str | torch.device = "cpu",
    batch_size: int = 1,
    threads: int | None = None,
    input_size: Sequence[int] | None = None,
    channels_last: bool = False,
    runs: int | None = None,
    budget_s: float | None = 2.0,
    warmup: int = 3,
    should_stop: StopFn | None = None,
) -> BenchmarkResult:
    """Latency, size and MACs of one model on this machine.

    ``model`` is a catalog name (built with random weights: latency does not depend on
    them) or a LoadedModel (e.g. a user's checkpoint). ``input_size`` defaults to the
    model's own. See :func:`measure_latency` for the timing options.
    """
    from backbones.zoo.catalog import get_entry
    from backbones.zoo.models import build_architecture

    dev = resolve_device(device, types=MEASURED_DEVICE_TYPES, purpose="measurements")
    check_positive("threads", threads, allow_none=True)
    if isinstance(model, str):
        entry = get_entry(model)
        name, weights = entry.name, "none"
        target = build_architecture(entry)
    else:
        entry = getattr(model, "entry", None)
        name = getattr(model, "name", type(model).__name__)
        weights = getattr(model, "weights", "unknown")
        target = model
    size = check_input_size(input_size or (entry.input_size if entry is not None else (3, 224, 224)))

    with MEASUREMENT_LOCK, torch_threads(threads) as used_threads:
        latency = measure_latency(
            target,
            input_size=size,
            batch_size=batch_size,
            device=dev,
            threads=used_threads,
            channels_last=channels_last,
            runs=runs,
            budget_s=budget_s,
            warmup=warmup,
            should_stop=should_stop,
        )
        sizes = measure_size(target, input_size=size, batch_size=batch_size, device=dev)
    # By name: counted on the meta device (no second real forward pass).
    compute = count_macs(entry.name if isinstance(model, str) else target, input_size=size)

    env = collect_env(
        device=dev,
        threads=used_threads,
        batch_size=batch_size,
        input_size=size,
        channels_last=channels_last,
        weights=weights,
        architecture=entry.name if entry is not None else None,
        warmup_runs=latency.warmup_runs,
        budget_s=budget_s,
        timer=latency.timer,
        macs_method=compute.method,
        size_method=STATE_DICT_METHOD,
    )
    return BenchmarkResult(
        model=name,
        latency=latency,
        params=sizes.params,
        macs=compute.macs,
        size_mib=sizes.state_dict_mib,
        env=env,
        size=sizes,
        compute=compute,
    )


def bench_models(
    models: Sequence,
    *,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    store=None,
    on_result: Callable[[BenchmarkResult], None] | None = None,
    model_timeout_s: float | None = None,
    on_skip: Callable[[str, str], None] | None = None,
    **options,
) -> list[BenchmarkResult]:
    """Benchmark several models one after another (see :func:`bench_model` for ``options``).

    ``progress(done, total, message)`` is called before and after each model;
    ``should_stop()`` is polled between runs and models and raises :class:`CancelledError`.
    Each result goes to ``store`` (a results store, kind ``"latency"``) and ``on_result``
    as soon as it is measured, so a sweep that is cancelled or killed keeps what it finished.
    The measurement lock is taken per model (fairly, in arrival order), so other sweeps take
    turns with this one. A model still running after ``model_timeout_s`` is stopped at its next
    run, reported to ``on_skip(name, reason)`` and the sweep goes on.
    """
    from backbones.zoo.catalog import get_entry

    # Unknown names fail before anything is measured, not twenty minutes in.
    for m in models:
        if isinstance(m, str):
            get_entry(m)
    resolve_device(options.get("device", "cpu"), types=MEASURED_DEVICE_TYPES, purpose="measurements")
    total = len(models)
    results: list[BenchmarkResult] = []
    for i, m in enumerate(models):
        label = m if isinstance(m, str) else getattr(m, "name", "model")
        if stop_requested(should_stop):
            raise CancelledError(f"sweep cancelled after {i} of {total} models")
        if progress:
            progress(i, total, f"measuring {label}")
        deadline = None if model_timeout_s is None else time.monotonic() + model_timeout_s

        def stop_or_timeout(deadline=deadline) -> bool:
            return stop_requested(should_stop) or (deadline is not None and time.monotonic() > deadline)

        try:
            result = bench_model(m, should_stop=stop_or_timeout, **options)
        except CancelledError:
            if stop_requested(should_stop) or deadline is None or time.monotonic() <= deadline:
                raise
            reason = f"stopped after the {model_timeout_s:g} s limit per model"
            if on_skip:
                on_skip(label, reason)
            if progress:
                progress(i + 1, total, f"{label}: {reason}")
            continue
        if store is not None:
            store.add("latency", result.model, result.to_record(), env=result.env)
        results.append(result)
        if on_result:
            on_result(result)
        if progress:
            progress(i + 1, total, f"{label}: {result.median_ms:.2f} ms median over {result.runs} runs")
    return results
