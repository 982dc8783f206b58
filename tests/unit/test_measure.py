"""Latency, size and compute measurement (backbones.measure) and the ``bench`` command.

Values are worked out by hand on a tiny net; nothing asserts on how fast anything is.
"""

from __future__ import annotations

import io
import json
import math
import threading
import time
import types

import pytest
import torch
from torch import nn

from backbones.errors import BackboneError, CancelledError, DeviceError
from backbones.measure import (
    BENCHMARK_FIELDS,
    MEASUREMENT_LOCK,
    BenchmarkResult,
    bench_model,
    bench_models,
    count_macs,
    estimate_activation_bytes,
    measure_latency,
    measure_size,
    percentile,
    resolve_device,
    serialized_size,
    summarize_times,
)
from backbones.results.store import ResultsStore

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")


class Tiny(nn.Module):
    """conv 3->8 (3x3, pad 1) -> BN -> ReLU(in place) -> global pool -> flatten -> linear 8->4.

    Parameters: conv 3*8*9 + 8 = 224, BN 8 + 8 = 16, linear 8*4 + 4 = 36: 276 in all.
    Buffers: BN running mean and var (8 float32 each) + num_batches_tracked (int64) = 72 bytes.
    """

    def __init__(self, log: list | None = None, delay_s: float = 0.0, fail: bool = False):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.fc = nn.Linear(8, 4)
        self.log = log if log is not None else []
        self.delay_s = delay_s
        self.fail = fail

    def forward(self, x):
        self.log.append((threading.get_ident(), time.perf_counter(), torch.get_num_threads(), torch.is_inference_mode_enabled()))
        if self.fail:
            raise RuntimeError("boom")
        if self.delay_s:
            time.sleep(self.delay_s)  # releases the GIL: without the lock two threads would interleave
        return self.fc(self.features(x))


@pytest.fixture
def keep_threads():
    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


SMALL = dict(input_size=(3, 8, 8), warmup_s=0.0)


def test_percentiles_and_summary_by_hand():
    assert percentile([4.0, 1.0, 3.0, 2.0], 10) == pytest.approx(1.3)
    assert percentile([1.0, 2.0, 3.0, 4.0], 90) == pytest.approx(3.7)
    assert percentile([5.0], 90) == 5.0
    s = summarize_times([1.0, 2.0, 3.0, 4.0], batch_size=2)
    assert s["median_ms"] == 2.5 and s["mean_ms"] == 2.5 and s["runs"] == 4
    assert s["std_ms"] == pytest.approx(math.sqrt(5 / 3))
    assert s["throughput_ips"] == pytest.approx(800.0)  # 2 images per 2.5 ms
    assert summarize_times([7.0])["std_ms"] == 0.0


def test_run_count_warmup_and_fields():
    log = []
    stats = measure_latency(Tiny(log), runs=5, budget_s=None, warmup=2, batch_size=3, **SMALL)
    assert stats.runs == 5 and len(stats.samples_ms) == 5
    assert len(log) == 2 + 5 and stats.warmup_runs == 2
    assert all(entry[3] for entry in log), "every run under torch.inference_mode"
    assert stats.p10_ms <= stats.median_ms <= stats.p90_ms
    assert min(stats.samples_ms) <= stats.mean_ms <= max(stats.samples_ms)
    assert stats.throughput_ips == pytest.approx(3 * 1000 / stats.mean_ms)
    assert stats.device == "cpu" and stats.batch_size == 3 and stats.input_size == (3, 8, 8)
    assert stats.timer == "time.perf_counter"


def test_zero_budget_still_takes_the_minimum_runs():
    stats = measure_latency(Tiny(), runs=None, budget_s=0.0, warmup=0, min_runs=3, **SMALL)
    assert stats.runs == 3
    assert measure_latency(Tiny(), runs=2, budget_s=0.0, warmup=0, min_runs=3, **SMALL).runs == 2


def test_threads_set_and_restored(keep_threads):
    torch.set_num_threads(1)
    log = []
    stats = measure_latency(Tiny(log), threads=2, runs=2, budget_s=None, warmup=1, **SMALL)
    assert stats.threads == 2
    assert {entry[2] for entry in log} == {2}
    assert torch.get_num_threads() == 1


def test_failure_restores_threads_mode_and_lock(keep_threads):
    torch.set_num_threads(1)
    net = Tiny(fail=True).train()
    with pytest.raises(RuntimeError, match="boom"):
        measure_latency(net, threads=2, runs=2, budget_s=None, **SMALL)
    assert torch.get_num_threads() == 1
    assert net.training, "the caller's train/eval mode comes back"
    free = []

    def probe():
        got = MEASUREMENT_LOCK.acquire(blocking=False)
        free.append(got)
        if got:
            MEASUREMENT_LOCK.release()

    t = threading.Thread(target=probe)
    t.start()
    t.join()
    assert free == [True]


def test_two_measurements_never_overlap():
    log: list = []
    errors = []

    def work():
        try:
            measure_latency(Tiny(log, delay_s=0.002), runs=8, budget_s=None, warmup=1, **SMALL)
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    order = [ident for ident, *_ in sorted(log, key=lambda e: e[1])]
    assert len(order) == 18
    switches = sum(a != b for a, b in zip(order, order[1:]))
    assert switches == 1, f"runs of the two measurements interleaved: {order}"


def test_cancellation():
    calls = []

    def should_stop():
        calls.append(1)
        return len(calls) > 4

    with pytest.raises(CancelledError):
        measure_latency(Tiny(), runs=100, budget_s=None, warmup=1, should_stop=should_stop, **SMALL)


def test_channels_last_leaves_the_callers_model_alone():
    net = Tiny()
    stats = measure_latency(net, channels_last=True, runs=2, budget_s=None, warmup=1, **SMALL)
    assert stats.channels_last and stats.runs == 2
    assert net.features[0].weight.is_contiguous()  # the caller's weights are not converted


def test_bad_options_are_user_errors():
    with pytest.raises(BackboneError):
        measure_latency(Tiny(), batch_size=0, **SMALL)
    with pytest.raises(BackboneError):
        measure_latency(Tiny(), threads=0, **SMALL)
    with pytest.raises(BackboneError):
        measure_latency(Tiny(), input_size=(3, 8), warmup_s=0.0)
    with pytest.raises(DeviceError, match="unknown device"):
        resolve_device("gpu0")


@no_gpu
def test_cuda_without_gpu_fails_cleanly():
    with pytest.raises(DeviceError) as info:
        resolve_device("cuda")
    assert "\n" not in str(info.value) and "cuda" in str(info.value)
    with pytest.raises(DeviceError):
        measure_latency(Tiny(), device="cuda", **SMALL)


def test_size_by_hand():
    net = Tiny()
    report = measure_size(net, input_size=(3, 8, 8), batch_size=2)
    assert report.params == report.trainable_params == 276
    assert report.param_bytes == 276 * 4
    assert report.buffer_bytes == 8 * 4 + 8 * 4 + 8
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    assert report.state_dict_bytes == len(buf.getvalue()) == serialized_size(net)
    # Per image: conv 8*8*8*4 = 2048, BN 2048, in-place ReLU and Flatten view 0, pool 32, linear 16.
    assert report.activation_bytes == 2 * (2048 + 2048 + 32 + 16)
    assert "estimate" in report.activation_method
    net.fc.weight.requires_grad_(False)
    assert measure_size(net, input_size=None).trainable_params == 276 - 32


def test_activation_estimate_leaves_no_hooks():
    net = Tiny()
    estimate_activation_bytes(net, torch.zeros(1, 3, 8, 8))
    assert all(not m._forward_hooks for m in net.modules())


def test_macs_by_hand():
    report = count_macs(Tiny(), input_size=(3, 8, 8))
    # conv: 8*8 positions * 8 filters * 3*3*3 = 13824; linear 8*4 = 32; BN and pooling are not counted.
    assert report.macs == 13824 + 32
    assert report.flops == 2 * report.macs
    assert "flop_counter" in report.method


@pytest.mark.parametrize("name", ["resnet18", "squeezenet1_1"])
def test_macs_match_torchvision_meta(name):
    from backbones.zoo.catalog import get_entry

    entry = get_entry(name)
    report = count_macs(name)  # meta device: nothing allocated
    assert report.input_size == entry.input_size
    assert report.macs == pytest.approx(entry.macs, rel=0.005)  # torchvision's "GFLOPS" are MACs, 3 decimals


def test_bench_model_real_architecture():
    from backbones.zoo.catalog import get_entry

    r = bench_model("squeezenet1_1", threads=1, runs=2, budget_s=0.0, warmup=1)
    entry = get_entry("squeezenet1_1")
    d = r.to_dict()
    assert tuple(d) == BENCHMARK_FIELDS
    assert r.params == entry.params
    assert r.macs == pytest.approx(entry.macs, rel=0.005)
    assert r.size_mib == pytest.approx(entry.file_size_mib, rel=0.01)  # the published .pth size
    assert r.runs == 2 and r.threads == 1 and r.input_size == (3, 224, 224)
    env = r.env
    for key in ("torch", "torchvision", "device_name", "cpu_model", "threads", "batch_size", "input_size", "time",
                "hostname", "machine"):
        assert key in env
    assert env["threads"] == 1 and env["weights"] == "none"
    assert BenchmarkResult.from_dict(r.to_record()) == r
    json.dumps(r.to_record(), allow_nan=False)


def test_sweep_progress_store_and_cancel(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    events = []
    stop = threading.Event()

    def progress(done, total, message):
        events.append((done, total, message))
        if done == 1:
            stop.set()  # cancel after the first model is stored

    opts = dict(threads=1, runs=1, budget_s=0.0, warmup=0, input_size=(3, 32, 32))
    with pytest.raises(CancelledError):
        bench_models(["squeezenet1_1", "squeezenet1_1"], progress=progress, should_stop=stop.is_set,
                     store=store, **opts)
    assert [e[:2] for e in events] == [(0, 2), (1, 2)]
    rows = store.query(kind="latency")
    assert len(rows) == 1 and rows[0].model == "squeezenet1_1"
    assert rows[0].payload["input_size"] == [3, 32, 32] and "details" in rows[0].payload
    with pytest.raises(BackboneError):
        bench_models(["squeezenet1_1", "no_such_model"], **opts)  # fails before measuring anything
    assert len(store.query()) == 1


def test_cli_bench_json(tmp_path, capsys):
    from backbones.cli import main

    db = tmp_path / "cli.sqlite"
    code = main(["bench", "squeezenet1_1", "--runs", "3", "--budget", "0.05", "--warmup", "1", "--threads", "1",
                 "--input-size", "3", "64", "64", "--db", str(db), "--json"])
    out, err = capsys.readouterr()
    assert code == 0
    data = json.loads(out)
    assert isinstance(data, list) and len(data) == 1
    row = data[0]
    assert tuple(row) == BENCHMARK_FIELDS
    assert row["model"] == "squeezenet1_1" and row["input_size"] == [3, 64, 64] and row["runs"] == 3
    assert row["threads"] == 1 and row["env"]["threads"] == 1
    assert "[1/1]" in err
    stored = ResultsStore(db).query()
    assert [r.model for r in stored] == ["squeezenet1_1"]

    code = main(["results", "--db", str(db), "--json"])
    listed = json.loads(capsys.readouterr().out)
    assert code == 0 and listed[0]["payload"]["median_ms"] == row["median_ms"]


def test_cli_bench_no_store(tmp_path, capsys):
    from backbones.cli import main

    db = tmp_path / "none.sqlite"
    code = main(["bench", "squeezenet1_1", "--runs", "1", "--budget", "0", "--warmup", "0", "--threads", "1",
                 "--input-size", "3", "32", "32", "--no-store", "--db", str(db)])
    out = capsys.readouterr().out
    assert code == 0 and "squeezenet1_1" in out and "median ms" in out
    assert not db.exists()


@no_gpu
def test_cli_cuda_without_gpu_exits_2(tmp_path, capsys):
    from backbones.cli import main

    code = main(["bench", "squeezenet1_1", "--device", "cuda", "--db", str(tmp_path / "x.sqlite"), "--json"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith("error: cuda requested") and err.count("\n") == 1
    assert not (tmp_path / "x.sqlite").exists()


def test_cli_unknown_model_exits_2(capsys):
    from backbones.cli import main

    assert main(["bench", "resnet_nonexistent", "--no-store"]) == 2
    assert "unknown model" in capsys.readouterr().err


def test_fair_lock_serves_waiters_in_arrival_order():
    from backbones.measure.common import FairLock

    lock, order = FairLock(), []
    lock.acquire()
    lock.acquire()  # re-entrant
    threads = []
    for i in range(5):
        t = threading.Thread(target=lambda i=i: (lock.acquire(), order.append(i), lock.release()))
        t.start()
        threads.append(t)
        while len(lock._queue) < i + 1:  # wait until thread i is queued before starting the next
            time.sleep(0.001)
    lock.release()
    assert order == []  # still held once
    lock.release()
    for t in threads:
        t.join(5)
    assert order == [0, 1, 2, 3, 4]
    assert lock.acquire(blocking=False)
    lock.release()
    with pytest.raises(RuntimeError):
        lock.release()


def test_sweeps_take_turns_model_by_model(monkeypatch):
    """Two sessions' sweeps interleave instead of one waiting for the whole other sweep."""
    import backbones.measure.sweep as sweep

    log = []

    def fake_bench(model, *, should_stop=None, **options):
        with sweep.MEASUREMENT_LOCK:
            log.append(model)
            time.sleep(0.05)
        raise_if = should_stop and should_stop()
        assert not raise_if
        return types.SimpleNamespace(model=model, median_ms=1.0, runs=1)

    monkeypatch.setattr(sweep, "bench_model", fake_bench)
    monkeypatch.setattr(sweep, "get_entry", lambda name: None, raising=False)
    import backbones.zoo.catalog

    monkeypatch.setattr(backbones.zoo.catalog, "get_entry", lambda name: None)
    a = threading.Thread(target=sweep.bench_models, args=(["a1", "a2", "a3"],))
    b = threading.Thread(target=sweep.bench_models, args=(["b1", "b2", "b3"],))
    a.start()
    time.sleep(0.02)
    b.start()
    a.join(10)
    b.join(10)
    assert sorted(log) == ["a1", "a2", "a3", "b1", "b2", "b3"]
    assert log.index("b1") < log.index("a3"), log  # b did not wait for all of a


def test_plan_refuses_runs_over_the_caps(monkeypatch):
    from backbones.errors import BackboneError
    from backbones.measure.plan import SweepLimits, plan_sweep

    monkeypatch.setattr("backbones.measure.plan.machine_gmacs_per_second", lambda *a: 10.0)  # 10 GMAC/s
    small = plan_sweep(["resnet18", "mobilenet_v3_large"], batch_size=1, budget_s=2.0)
    assert small.models == ("resnet18", "mobilenet_v3_large") and 4 < small.total_s < 10
    with pytest.raises(BackboneError, match="at most 3"):
        plan_sweep(["resnet18"] * 4, limits=SweepLimits(max_models=3))
    with pytest.raises(BackboneError, match="batch size 128"):
        plan_sweep(["resnet18"], batch_size=128)
    with pytest.raises(BackboneError, match="over this server's limit of 20 s per run"):
        plan_sweep(["resnet18"] * 8, budget_s=5.0, limits=SweepLimits(max_seconds=20))
    # ViT-H/14: 167 GMACs per image, 64 images per batch: refused alone on a fast machine, the rest goes on.
    monkeypatch.setattr("backbones.measure.plan.machine_gmacs_per_second", lambda *a: 1000.0)
    plan = plan_sweep(["vit_h_14", "resnet18"], batch_size=64, budget_s=1.0, limits=SweepLimits(max_seconds=1e6))
    assert plan.models == ("resnet18",) and plan.refused[0][0] == "vit_h_14" and "limit per model" in plan.refused[0][1]


def test_a_model_over_its_timeout_is_skipped_and_the_sweep_goes_on(monkeypatch):
    import backbones.measure.sweep as sweep
    from backbones.errors import CancelledError

    def fake_bench(model, *, should_stop=None, **options):
        while model == "slow":
            if should_stop():
                raise CancelledError("stopped")
            time.sleep(0.01)
        return types.SimpleNamespace(model=model, median_ms=1.0, runs=1)

    import backbones.zoo.catalog

    monkeypatch.setattr(backbones.zoo.catalog, "get_entry", lambda name: None)
    monkeypatch.setattr(sweep, "bench_model", fake_bench)
    skipped = []
    done = sweep.bench_models(["slow", "fast"], model_timeout_s=0.2, on_skip=lambda n, why: skipped.append((n, why)))
    assert [r.model for r in done] == ["fast"]
    assert skipped and skipped[0][0] == "slow" and "0.2 s limit" in skipped[0][1]
    with pytest.raises(CancelledError):  # a user's stop is not a timeout: the sweep ends
        sweep.bench_models(["slow", "fast"], model_timeout_s=5, should_stop=lambda: True)


def test_counted_figures_are_current():
    # backbones/data/counted.json is generated; regenerate with python -m backbones.measure.compute
    from backbones.measure.compute import count_architecture
    from backbones.zoo.catalog import counted_figures

    figures = counted_figures()
    for name in ("timm:rexnet_100", "efficientnet_lite0", "timm:ghostnet_100"):
        assert figures[name] == count_architecture(name)
