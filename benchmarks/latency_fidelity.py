"""Does ``backbones.measure.measure_latency`` agree with ``torch.utils.benchmark``?

In one run, for each model: the same module, input shape, thread count and batch size,
timed by this project's code and by ``torch.utils.benchmark.Timer(...).blocked_autorange()``,
in the order A B B A so that drift in machine load hits both alike. Prints a markdown
table with both medians and their ratio (target 0.9 to 1.1) on stdout; writes no files.

    python benchmarks/latency_fidelity.py                   # resnet18, mobilenet_v3_large, efficientnet_lite0
    python benchmarks/latency_fidelity.py --device cuda --threads 2 --budget 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch.utils import benchmark  # noqa: E402

from backbones.measure import cpu_model, measure_latency, resolve_device  # noqa: E402
from backbones.zoo.catalog import get_entry  # noqa: E402
from backbones.zoo.models import build_architecture  # noqa: E402

MODELS = ("resnet18", "mobilenet_v3_large", "efficientnet_lite0")


def timer_median_ms(model, x, *, threads: int, budget_s: float) -> float:
    """torch.utils.benchmark's median (of block means) in milliseconds."""
    timer = benchmark.Timer(stmt="model(x)", globals={"model": model, "x": x}, num_threads=threads)
    with torch.inference_mode():
        return timer.blocked_autorange(min_run_time=budget_s).median * 1e3


def compare(name: str, *, device: str, threads: int, batch_size: int, budget_s: float) -> dict:
    dev = resolve_device(device)
    entry = get_entry(name)
    model = build_architecture(entry).to(dev)
    x = torch.randn(batch_size, *entry.input_size, generator=torch.Generator().manual_seed(0)).to(dev)
    ours, theirs = [], []
    for method in ("ours", "timer", "timer", "ours"):
        if method == "ours":
            stats = measure_latency(
                model, input_size=entry.input_size, batch_size=batch_size, device=dev, threads=threads,
                budget_s=budget_s, runs=None,
            )
            ours.append(stats.median_ms)
        else:
            timer_median_ms(model, x, threads=threads, budget_s=0.2)  # warm-up, as ours has its own
            theirs.append(timer_median_ms(model, x, threads=threads, budget_s=budget_s))
    a, b = statistics.fmean(ours), statistics.fmean(theirs)
    return {"model": name, "ours_ms": a, "timer_ms": b, "ratio": a / b, "rounds": (ours, theirs)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--budget", type=float, default=3.0, help="seconds of timed runs per method and round")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    rows = []
    for name in args.models:
        print(f"measuring {name} ...", file=sys.stderr, flush=True)
        rows.append(compare(name, device=args.device, threads=args.threads, batch_size=args.batch_size,
                            budget_s=args.budget))
    dev = resolve_device(args.device)
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_model()
    print(f"Latency fidelity on {where} ({args.device}), torch {torch.__version__}, batch {args.batch_size}, "
          f"{args.threads} threads, {args.budget:g} s per method and round, rounds A B B A "
          f"(A = backbones.measure, B = torch.utils.benchmark blocked_autorange):\n")
    print("| model | backbones.measure median (ms) | Timer.blocked_autorange median (ms) | ratio | within 0.9-1.1 |")
    print("|---|---:|---:|---:|:---:|")
    for r in rows:
        ok = "yes" if 0.9 <= r["ratio"] <= 1.1 else "no"
        print(f"| {r['model']} | {r['ours_ms']:.2f} | {r['timer_ms']:.2f} | {r['ratio']:.3f} | {ok} |")
    print(f"\n(total {time.perf_counter() - started:.0f} s; per-round medians: "
          + "; ".join(f"{r['model']} ours {', '.join(f'{v:.2f}' for v in r['rounds'][0])} / timer "
                      f"{', '.join(f'{v:.2f}' for v in r['rounds'][1])}" for r in rows) + ")")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
