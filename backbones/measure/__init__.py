"""Latency, size and compute of a backbone, measured on this machine, and sweeps that store them.

Three independent measurements and one sweep that combines them::

    from backbones.measure import bench_model, bench_models, measure_latency, measure_size, count_macs

    result = bench_model("resnet18", threads=2)            # BenchmarkResult (random weights)
    result.median_ms, result.throughput_ips, result.macs

    results = bench_models(["resnet18", "mobilenet_v3_large"], progress=print_progress,
                           should_stop=event.is_set, store=ResultsStore())

Modules: ``latency`` (timed forward passes), ``size`` (parameters, stored bytes,
activation memory), ``compute`` (MACs; ``python -m backbones.measure.compute`` regenerates
``backbones/data/counted.json``), ``environment`` (the fingerprint stored with each
result), ``sweep`` (:func:`bench_model`, :func:`bench_models`, the results store) and
``common`` (the lock, argument checks, device and example input they share).

Latency needs no trained weights (random weights run exactly as fast), so catalog
names are built with ``weights=None``. Measurements hold one process-wide lock:
two measurements at once halve each other's speed and both numbers would be wrong.

Units are named in every field: ``_ms`` milliseconds, ``_ips`` images per second,
``macs`` multiply-accumulates (FLOPs = 2 x MACs), ``_bytes`` bytes, ``_mib`` MiB (2**20 bytes).
"""

from __future__ import annotations

from backbones.lazy import lazy_exports

#: Public name -> the module of this package that defines it.
_EXPORTS = {
    "MEASUREMENT_LOCK": "common",
    "ProgressFn": "common",
    "StopFn": "common",
    "resolve_device": "common",
    "torch_threads": "common",
    "LatencyStats": "latency",
    "CUDA_CHUNK": "latency",
    "measure_latency": "latency",
    "percentile": "latency",
    "summarize_times": "latency",
    "ACTIVATION_METHOD_CPU": "size",
    "ACTIVATION_METHOD_CUDA": "size",
    "MIB": "size",
    "STATE_DICT_METHOD": "size",
    "SizeReport": "size",
    "estimate_activation_bytes": "size",
    "measure_size": "size",
    "serialized_size": "size",
    "MACS_METHOD": "compute",
    "ComputeReport": "compute",
    "count_architecture": "compute",
    "count_macs": "compute",
    "write_counted_figures": "compute",
    "collect_env": "environment",
    "cpu_model": "environment",
    "BENCHMARK_FIELDS": "sweep",
    "LATENCY_FIELDS": "sweep",
    "BenchmarkResult": "sweep",
    "bench_model": "sweep",
    "bench_models": "sweep",
    "SweepLimits": "plan",
    "SweepPlan": "plan",
    "plan_sweep": "plan",
    "machine_gmacs_per_second": "plan",
}

__all__ = sorted(_EXPORTS)


# Imported on first use rather than here, so that `python -m backbones.measure.compute` runs that module once
# (as __main__, not also as an already imported submodule) and `import backbones.measure` stays cheap for callers
# that only need one measurement.
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
