"""What a sweep will cost before it starts, and the caps a shared server puts on one run.

A dashboard served to a group must not let one visitor queue every model at batch 64 for half a minute each
(ViT-H/14 takes 21 s per image on 2 cores). :func:`plan_sweep` estimates each model's time from its MACs and
this machine's measured multiply-accumulate rate, refuses models whose single batch would outlast the
per-model timeout, and refuses the run when the whole estimate is over the cap, with a one-line message that
says what to change. The command line runs uncapped unless given limits: it is the user's own machine.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from backbones.errors import BackboneError
from backbones.measure.common import MEASURED_DEVICE_TYPES, resolve_device, sync
from backbones.settings import env_number

#: Real networks reach about this fraction of a plain 3x3 convolution's rate (depthwise layers, pooling).
_EFFICIENCY = 0.5
#: Timed runs every model gets at least, plus the default warm-up runs (see measure_latency).
_MIN_RUNS, _WARMUP_RUNS = 3, 3


@dataclass(frozen=True)
class SweepLimits:
    """Caps on one measuring run (``BACKBONES_MEASURE_MAX_SECONDS``, ``BACKBONES_MEASURE_MODEL_TIMEOUT``)."""

    max_seconds: float = 300.0
    max_models: int = 32
    max_batch: int = 64
    max_budget_s: float = 10.0
    model_timeout_s: float = 60.0

    @classmethod
    def from_env(cls) -> SweepLimits:
        d = cls()
        return cls(
            max_seconds=env_number("BACKBONES_MEASURE_MAX_SECONDS", d.max_seconds),
            model_timeout_s=env_number("BACKBONES_MEASURE_MODEL_TIMEOUT", d.model_timeout_s),
        )


@dataclass(frozen=True)
class SweepPlan:
    """The models a run will measure, each with its estimated seconds, and those left out and why."""

    models: tuple
    estimates_s: tuple[float, ...]
    refused: tuple[tuple[str, str], ...]

    @property
    def total_s(self) -> float:
        return sum(self.estimates_s)


@functools.lru_cache(maxsize=16)
def machine_gmacs_per_second(device: str = "cpu") -> float:
    """Multiply-accumulates per second (in G) of one 3x3 convolution here: the scale for estimates.

    Takes neither the measurement lock nor a thread setting (both would make a page wait for, or disturb,
    another session's measurement); a few milliseconds of noise only moves an estimate.
    """
    dev = resolve_device(device, types=MEASURED_DEVICE_TYPES, purpose="measurements")
    conv = torch.nn.Conv2d(64, 64, 3, padding=1, bias=False).to(dev).eval()
    x = torch.randn(1, 64, 56, 56, device=dev)
    macs = 64 * 64 * 9 * 56 * 56
    best = float("inf")
    with torch.inference_mode():
        conv(x)
        for _ in range(3):
            sync(dev)
            t0 = time.perf_counter()
            conv(x)
            sync(dev)
            best = min(best, time.perf_counter() - t0)
    return macs / max(best, 1e-9) / 1e9


def _macs_and_params(model) -> tuple[int | None, int | None, str]:
    from backbones.zoo.catalog import get_entry

    if isinstance(model, str):
        entry = get_entry(model)
        return entry.macs, entry.params, entry.name
    entry = getattr(model, "entry", None)
    name = getattr(model, "name", type(model).__name__)
    return (entry.macs if entry else None), (entry.params if entry else None), name


def plan_sweep(
    models: Sequence,
    *,
    device: str = "cpu",
    batch_size: int = 1,
    budget_s: float = 2.0,
    threads: int | None = None,
    limits: SweepLimits | None = None,
) -> SweepPlan:
    """Estimate a sweep and apply ``limits``; :class:`BackboneError` when the run as asked is over a cap."""
    limits = limits or SweepLimits.from_env()
    if len(models) > limits.max_models:
        raise BackboneError(f"{len(models)} models in one run; at most {limits.max_models} (measure in several runs)")
    if batch_size > limits.max_batch:
        raise BackboneError(f"batch size {batch_size} is over this server's limit of {limits.max_batch}")
    if budget_s > limits.max_budget_s:
        raise BackboneError(f"{budget_s:g} s per model is over this server's limit of {limits.max_budget_s:g} s")
    rate = machine_gmacs_per_second(str(device)) * _EFFICIENCY
    if threads and device == "cpu":  # the calibration ran with the process's threads
        rate *= min(threads, torch.get_num_threads()) / max(torch.get_num_threads(), 1)
    kept, estimates, refused = [], [], []
    for model in models:
        macs, params, name = _macs_and_params(model)
        per_batch = (macs or 0) * batch_size / 1e9 / rate
        build = 0.3 + (params or 0) / 50e6  # building a model with random weights: about 1 s per 50 M parameters
        runs = (_MIN_RUNS + _WARMUP_RUNS) * per_batch
        if runs > limits.model_timeout_s:
            refused.append((name, f"about {per_batch:.1f} s per batch of {batch_size} here, so at least {runs:.0f} s, "
                                  f"over the {limits.model_timeout_s:g} s limit per model; try batch 1 or the CLI"))
            continue
        kept.append(model)
        estimates.append(build + max(budget_s, runs) + min(0.5, 0.1 * budget_s))
    plan = SweepPlan(tuple(kept), tuple(estimates), tuple(refused))
    if plan.total_s > limits.max_seconds:
        raise BackboneError(
            f"this run would take about {plan.total_s:.0f} s, over this server's limit of {limits.max_seconds:.0f} s "
            "per run; pick fewer backbones, a smaller batch or fewer seconds per model"
        )
    return plan
