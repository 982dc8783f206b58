"""Latency, size and compute of a backbone, measured on this machine.

Three independent measurements and one sweep that combines them::

    from backbones.measure import bench_model, bench_models, measure_latency, measure_size, count_macs

    result = bench_model("resnet18", threads=2)            # BenchmarkResult (random weights)
    result.median_ms, result.throughput_ips, result.macs

    results = bench_models(["resnet18", "mobilenet_v3_large"], progress=print_progress,
                           should_stop=event.is_set, store=ResultsStore())

Latency needs no trained weights (random weights run exactly as fast), so catalog
names are built with ``weights=None``. Measurements hold one process-wide lock:
two measurements at once halve each other's speed and both numbers would be wrong.

Units are named in every field: ``_ms`` milliseconds, ``_ips`` images per second,
``macs`` multiply-accumulates (FLOPs = 2 x MACs), ``_bytes`` bytes, ``_mib`` MiB (2**20 bytes).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

import torch
from torch import nn

from backbones.errors import BackboneError, CancelledError, DeviceError

#: Held for the whole of every measurement; re-entrant so that a sweep can hold it across models.
MEASUREMENT_LOCK = threading.RLock()

MACS_METHOD = "torch.utils.flop_counter FLOPs / 2 (convolutions, linear layers and matmuls; one image)"
ACTIVATION_METHOD_CPU = (
    "estimate: bytes of every leaf module's output in one forward pass "
    "(outputs that alias an input, e.g. in-place ReLU or views, counted once)"
)
ACTIVATION_METHOD_CUDA = "torch.cuda.max_memory_allocated during one forward pass, minus memory allocated before it"
STATE_DICT_METHOD = "exact byte count of torch.save(model.state_dict())"

ProgressFn = Callable[[int, int, str], None]
StopFn = Callable[[], bool]

MIB = 1 << 20


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class LatencyStats:
    """Timed runs of one forward pass over a ``(batch_size, C, H, W)`` input."""

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
    samples_ms: tuple[float, ...] = field(default=(), repr=False)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["samples_ms"] = list(self.samples_ms)
        return d


@dataclass(frozen=True)
class SizeReport:
    """How big a model is: parameters, stored bytes and the memory one forward pass needs."""

    params: int
    trainable_params: int
    param_bytes: int
    buffer_bytes: int
    state_dict_bytes: int  # exact size of torch.save(state_dict()), i.e. of a .pth file
    activation_bytes: int | None
    activation_method: str | None
    activation_batch_size: int | None

    @property
    def state_dict_mib(self) -> float:
        return self.state_dict_bytes / MIB

    def to_dict(self) -> dict:
        d = asdict(self)
        d["state_dict_mib"] = self.state_dict_mib
        d["state_dict_method"] = STATE_DICT_METHOD
        return d


@dataclass(frozen=True)
class ComputeReport:
    """Multiply-accumulates of one forward pass of one image (``(1, C, H, W)``)."""

    macs: int | None
    input_size: tuple[int, int, int]
    method: str

    @property
    def flops(self) -> int | None:
        return None if self.macs is None else 2 * self.macs

    def to_dict(self) -> dict:
        return {"macs": self.macs, "flops": self.flops, "input_size": list(self.input_size), "method": self.method}


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


@dataclass(frozen=True)
class BenchmarkResult:
    """One model measured on this machine: latency, size and compute with the environment.

    ``to_dict()`` gives exactly the ``bench --json`` fields; ``to_record()`` adds the
    details (latency samples, size breakdown, counting methods) for the results store.
    ``size_mib`` is the serialized state_dict size, ``macs`` is for one image.
    """

    model: str
    device: str
    batch_size: int
    threads: int
    input_size: tuple[int, int, int]
    median_ms: float
    p10_ms: float
    p90_ms: float
    mean_ms: float
    std_ms: float
    runs: int
    throughput_ips: float
    params: int
    macs: int | None
    size_mib: float
    env: dict = field(default_factory=dict, compare=False, hash=False)
    latency: LatencyStats | None = field(default=None, compare=False, hash=False, repr=False)
    size: SizeReport | None = field(default=None, compare=False, hash=False, repr=False)
    compute: ComputeReport | None = field(default=None, compare=False, hash=False, repr=False)

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
            "latency": self.latency.to_dict() if self.latency else None,
            "size": self.size.to_dict() if self.size else None,
            "compute": self.compute.to_dict() if self.compute else None,
        }
        return d

    @classmethod
    def from_dict(cls, d: dict) -> BenchmarkResult:
        """Rebuild from ``to_dict()``/``to_record()`` output (e.g. a stored payload); details are dropped."""
        try:
            values = {name: d[name] for name in BENCHMARK_FIELDS}
            values["input_size"] = tuple(int(x) for x in d["input_size"])
            values["env"] = dict(d.get("env") or {})
        except (KeyError, TypeError, ValueError) as exc:
            raise BackboneError(f"not a benchmark result: missing or bad field {exc}") from exc
        return cls(**values)


# --------------------------------------------------------------------------- helpers


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


def resolve_device(device: str | torch.device | None = "cpu") -> torch.device:
    """``cpu`` or ``cuda[:N]``; :class:`DeviceError` (one line) when the device is not there."""
    text = str(device if device is not None else "cpu").strip().lower()
    try:
        dev = torch.device(text)
    except RuntimeError as exc:
        raise DeviceError(f"unknown device {text!r}; use cpu or cuda") from exc
    if dev.type == "cpu":
        return torch.device("cpu")
    if dev.type != "cuda":
        raise DeviceError(f"device {text!r} is not supported for measurements; use cpu or cuda")
    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
        raise DeviceError(
            f"cuda requested but no CUDA GPU is available on this machine (torch {torch.__version__}, "
            f"{build}); use --device cpu"
        )
    index = dev.index or 0
    if index >= torch.cuda.device_count():
        raise DeviceError(f"{text} requested but this machine has {torch.cuda.device_count()} CUDA device(s)")
    return torch.device("cuda", index)


def _check_positive(name: str, value, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BackboneError(f"{name} must be a positive integer, got {value!r}")


def _check_input_size(input_size) -> tuple[int, int, int]:
    try:
        size = tuple(int(x) for x in input_size)
    except (TypeError, ValueError) as exc:
        raise BackboneError(f"input size must be three integers C H W, got {input_size!r}") from exc
    if len(size) != 3 or min(size) < 1:
        raise BackboneError(f"input size must be three positive integers C H W, got {input_size!r}")
    return size  # type: ignore[return-value]


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """Set ``torch.set_num_threads`` inside the block and restore the previous value afterwards."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


def _unwrap(model) -> tuple[nn.Module, contextlib.AbstractContextManager]:
    """The module to run and the lock guarding it (a LoadedModel carries one; CAM hooks use it)."""
    inner = getattr(model, "model", None)
    if isinstance(inner, nn.Module) and not isinstance(model, nn.Module):
        return inner, getattr(model, "lock", None) or contextlib.nullcontext()
    if not isinstance(model, nn.Module):
        raise BackboneError(f"cannot measure a {type(model).__name__}: expected a torch module or a loaded model")
    return model, contextlib.nullcontext()


def _model_device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def _prepared(model: nn.Module, device: torch.device, channels_last: bool) -> nn.Module:
    """The model on ``device`` in the requested memory format, copied so the caller's model is untouched."""
    current = _model_device(model)
    if current.type == "meta":
        raise BackboneError("this model has no real weights (meta device); build it with build_architecture")
    if current == device and not channels_last:
        return model
    clone = copy.deepcopy(model).to(device)
    return clone.to(memory_format=torch.channels_last) if channels_last else clone


def _example_input(batch_size: int, input_size, device: torch.device, channels_last: bool) -> torch.Tensor:
    # A fixed seed: the same input every time (some ops are data dependent).
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, *input_size, generator=gen).to(device)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------- latency


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

    ``model`` is an ``nn.Module`` or a :class:`~backbones.models.LoadedModel` (its lock is held).
    At least ``warmup`` untimed runs (and ``warmup_s`` seconds, by default a tenth of the
    budget up to 0.5 s) come first; then timed runs until ``runs`` are done or ``budget_s``
    seconds of timed runs have passed, whichever comes first, but at least ``min_runs``
    (capped by ``runs``). Everything runs under ``torch.inference_mode`` with
    ``torch.set_num_threads(threads)`` (restored afterwards); on CUDA runs are queued in
    chunks of ``CUDA_CHUNK``, each timed with CUDA events, synchronising after every chunk.
    ``should_stop()`` is polled between runs (:class:`CancelledError`). The caller's model is not moved or changed.
    """
    dev = resolve_device(device)
    size = _check_input_size(input_size)
    _check_positive("batch size", batch_size)
    _check_positive("threads", threads, allow_none=True)
    _check_positive("runs", runs, allow_none=True)
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

    module, model_lock = _unwrap(model)
    with MEASUREMENT_LOCK, model_lock, torch_threads(threads) as used_threads, torch.inference_mode():
        was_training = module.training
        module.eval()
        try:
            net = _prepared(module, dev, channels_last)
            x = _example_input(batch_size, size, dev, channels_last)
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


def _stop_requested(should_stop: StopFn | None) -> bool:
    return bool(should_stop is not None and should_stop())


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
        if _stop_requested(should_stop):
            raise CancelledError("measurement cancelled")
        net(x)
        warmups += 1
    _sync(dev)

    samples: list[float] = []
    timed_start = time.perf_counter()
    while len(samples) < target:
        if _stop_requested(should_stop):
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


# --------------------------------------------------------------------------- size


class _CountingWriter:
    """A write-only file that counts bytes, so that serialization allocates nothing."""

    def __init__(self):
        self.size = 0

    def write(self, data) -> int:
        n = len(memoryview(data).cast("B"))
        self.size += n
        return n

    def flush(self) -> None:
        pass


def serialized_size(model: nn.Module) -> int:
    """Exact byte size of ``torch.save(model.state_dict())`` (what a .pth file of it takes)."""
    writer = _CountingWriter()
    torch.save(model.state_dict(), writer)
    return writer.size


def _tensor_bytes(tensors) -> int:
    seen: set[int] = set()
    total = 0
    for t in tensors:
        if id(t) in seen:
            continue
        seen.add(id(t))
        total += t.numel() * t.element_size()
    return total


def _storage_ptr(t: torch.Tensor) -> int:
    try:
        return t.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):
        return -1


def _tensors_in(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _tensors_in(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _tensors_in(item)


def estimate_activation_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes of every leaf module's output over one forward pass of ``x`` (``(N, C, H, W)``).

    An output sharing storage with the module's input (in-place ReLU, views such as
    Flatten) is not counted again. Functional ops inside ``forward`` (additions,
    ``F.relu``) are not seen, and under inference most outputs are freed early, so this
    is an estimate of the activation traffic, not the peak resident memory.
    """
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        inside = {_storage_ptr(t) for t in _tensors_in(inputs)}
        for t in _tensors_in(output):
            if _storage_ptr(t) not in inside:
                total += t.numel() * t.element_size()

    handles = [m.register_forward_hook(hook) for m in model.modules() if not any(True for _ in m.children())]
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return total


def _cuda_activation_bytes(model: nn.Module, x: torch.Tensor, dev: torch.device) -> int:
    torch.cuda.synchronize(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    before = torch.cuda.memory_allocated(dev)
    with torch.inference_mode():
        model(x)
    torch.cuda.synchronize(dev)
    return int(torch.cuda.max_memory_allocated(dev) - before)


def measure_size(
    model,
    *,
    input_size: Sequence[int] | None = (3, 224, 224),
    batch_size: int = 1,
    device: str | torch.device = "cpu",
) -> SizeReport:
    """Parameters, bytes of parameters and buffers, serialized size and activation memory.

    Activation memory is measured for one forward pass of ``(batch_size, *input_size)``:
    estimated from module outputs on CPU, ``torch.cuda.max_memory_allocated`` on CUDA.
    ``input_size=None`` skips it.
    """
    from backbones.zoo.models import count_parameters

    module, model_lock = _unwrap(model)
    with model_lock:
        total, trainable = count_parameters(module)
        param_bytes = _tensor_bytes(module.parameters())
        buffer_bytes = _tensor_bytes(module.buffers())
        stored = serialized_size(module)
        activation = method = None
        if input_size is not None:
            dev = resolve_device(device)
            size = _check_input_size(input_size)
            _check_positive("batch size", batch_size)
            with MEASUREMENT_LOCK:
                was_training = module.training
                module.eval()
                try:
                    net = _prepared(module, dev, False)
                    x = _example_input(batch_size, size, dev, False)
                    if dev.type == "cuda":
                        activation, method = _cuda_activation_bytes(net, x, dev), ACTIVATION_METHOD_CUDA
                    else:
                        activation, method = estimate_activation_bytes(net, x), ACTIVATION_METHOD_CPU
                finally:
                    module.train(was_training)
    return SizeReport(
        params=total,
        trainable_params=trainable,
        param_bytes=param_bytes,
        buffer_bytes=buffer_bytes,
        state_dict_bytes=stored,
        activation_bytes=activation,
        activation_method=method,
        activation_batch_size=batch_size if activation is not None else None,
    )


# --------------------------------------------------------------------------- compute


def _count_flops(model: nn.Module, x: torch.Tensor) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(x)
    return int(counter.get_total_flops())


def count_macs(model, *, input_size: Sequence[int] | None = None) -> ComputeReport:
    """MACs of one forward pass of one image ``(1, *input_size)``.

    ``model`` is a catalog name (counted on the meta device: nothing is allocated, large
    models take milliseconds), an ``nn.Module`` or a LoadedModel (one real forward pass on
    its device, or a meta pass if its parameters are meta tensors). ``input_size`` defaults to
    the catalog entry's. ``macs`` is ``None`` when the model cannot be counted.
    """
    from backbones.zoo.catalog import get_entry
    from backbones.zoo.models import build_architecture, build_empty

    if isinstance(model, str):
        entry = get_entry(model)
        size = _check_input_size(input_size or entry.input_size)
        try:
            net = build_empty(entry)
            with torch.device("meta"):
                flops = _count_flops(net, torch.empty(1, *size))
        except (NotImplementedError, RuntimeError):
            # Some builders (RegNet) compute with real tensors: count on a real CPU model.
            net = build_architecture(entry)
            flops = _count_flops(net, torch.zeros(1, *size))
        return ComputeReport(macs=flops // 2, input_size=size, method=MACS_METHOD)

    module, model_lock = _unwrap(model)
    entry = getattr(model, "entry", None)
    size = _check_input_size(input_size or (entry.input_size if entry is not None else (3, 224, 224)))
    dev = _model_device(module)
    with model_lock:
        was_training = module.training
        module.eval()
        try:
            flops = _count_flops(module, torch.zeros(1, *size, device=dev))
        except (NotImplementedError, RuntimeError) as exc:
            return ComputeReport(macs=None, input_size=size, method=f"{MACS_METHOD}; failed: {str(exc)[:120]}")
        finally:
            module.train(was_training)
    return ComputeReport(macs=flops // 2, input_size=size, method=MACS_METHOD)


# --------------------------------------------------------------------------- environment


@functools.cache
def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo``, ``sysctl`` on macOS, else ``platform``)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if platform.system() == "Darwin":
        import subprocess

        try:
            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=2
            ).stdout.strip()
            if out:
                return out
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or "unknown CPU"


def collect_env(
    *,
    device: str | torch.device = "cpu",
    threads: int | None = None,
    batch_size: int | None = None,
    input_size: Sequence[int] | None = None,
    **extra,
) -> dict:
    """The environment fingerprint stored with each result: versions, hardware, settings, time."""
    import torchvision

    from backbones.store import machine_label

    dev = torch.device(device)
    try:
        import timm

        timm_version = timm.__version__
    except ImportError:  # timm models are optional for torchvision-only users
        timm_version = None
    env = {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm_version,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_model(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cuda": torch.version.cuda if dev.type == "cuda" else None,
        "threads": threads if threads is not None else torch.get_num_threads(),
        "batch_size": batch_size,
        "input_size": list(input_size) if input_size is not None else None,
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "machine": machine_label(),
    }
    env.update(extra)
    return env


# --------------------------------------------------------------------------- benchmarks


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

    dev = resolve_device(device)
    _check_positive("threads", threads, allow_none=True)
    if isinstance(model, str):
        entry = get_entry(model)
        name, weights = entry.name, "none"
        target = build_architecture(entry)
    else:
        entry = getattr(model, "entry", None)
        name = getattr(model, "name", type(model).__name__)
        weights = getattr(model, "weights", "unknown")
        target = model
    size = _check_input_size(input_size or (entry.input_size if entry is not None else (3, 224, 224)))

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
        device=str(dev),
        batch_size=batch_size,
        threads=used_threads,
        input_size=size,
        median_ms=latency.median_ms,
        p10_ms=latency.p10_ms,
        p90_ms=latency.p90_ms,
        mean_ms=latency.mean_ms,
        std_ms=latency.std_ms,
        runs=latency.runs,
        throughput_ips=latency.throughput_ips,
        params=sizes.params,
        macs=compute.macs,
        size_mib=sizes.state_dict_mib,
        env=env,
        latency=latency,
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
    **options,
) -> list[BenchmarkResult]:
    """Benchmark several models one after another (see :func:`bench_model` for ``options``).

    ``progress(done, total, message)`` is called before and after each model;
    ``should_stop()`` is polled between runs and models and raises :class:`CancelledError`.
    Each result goes to ``store`` (a :class:`~backbones.store.ResultsStore`, kind
    ``"latency"``) and ``on_result`` as soon as it is measured, so a sweep that is
    cancelled or killed keeps what it finished.
    """
    from backbones.zoo.catalog import get_entry

    # Unknown names fail before anything is measured, not twenty minutes in.
    for m in models:
        if isinstance(m, str):
            get_entry(m)
    resolve_device(options.get("device", "cpu"))
    total = len(models)
    results: list[BenchmarkResult] = []
    with MEASUREMENT_LOCK:
        for i, m in enumerate(models):
            label = m if isinstance(m, str) else getattr(m, "name", "model")
            if _stop_requested(should_stop):
                raise CancelledError(f"sweep cancelled after {i} of {total} models")
            if progress:
                progress(i, total, f"measuring {label}")
            result = bench_model(m, should_stop=should_stop, **options)
            if store is not None:
                store.add("latency", result.model, result.to_record(), env=result.env)
            results.append(result)
            if on_result:
                on_result(result)
            if progress:
                progress(i + 1, total, f"{label}: {result.median_ms:.2f} ms median over {result.runs} runs")
    return results
