"""How long a sweep of the curated default selection takes, and how much each model's latency spreads.

Runs ``backbones.measure.bench_models`` over ``list_models(default_only=True)`` (random
weights, batch 1, 2 CPU threads by default), exactly what ``python -m backbones bench``
does, and prints a markdown table on stdout: wall time per model (build + measure),
median, p10, p90 and the spread p90/p10, then the total. Nothing is stored unless
``--db`` is given.

    python benchmarks/sweep_time.py
    python benchmarks/sweep_time.py --threads 4 --budget 1 --models resnet18 vgg16
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from backbones.cli.common import ProgressPrinter, human_count  # noqa: E402
from backbones.measure import bench_models, cpu_model, resolve_device  # noqa: E402
from backbones.zoo.catalog import list_models  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=None, help="default: the curated default selection")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--budget", type=float, default=2.0, help="seconds of timed runs per model (bench's default)")
    parser.add_argument("--db", default=None, help="also store the results in this database")
    args = parser.parse_args(argv)

    names = args.models or [e.name for e in list_models(default_only=True)]
    store = None
    if args.db:
        from backbones.results.store import ResultsStore

        store = ResultsStore(args.db)
    marks = [time.perf_counter()]
    results = bench_models(
        names, device=args.device, threads=args.threads, batch_size=args.batch_size, budget_s=args.budget,
        progress=ProgressPrinter(), store=store, on_result=lambda r: marks.append(time.perf_counter()),
    )
    total = marks[-1] - marks[0]
    dev = resolve_device(args.device)
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_model()
    print(f"Sweep of {len(results)} models on {where} ({args.device}), torch {torch.__version__}, batch "
          f"{args.batch_size}, {args.threads} threads, {args.budget:g} s budget per model:\n")
    print("| model | wall s | runs | median ms | p10 ms | p90 ms | p90/p10 | MACs |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    spreads = []
    for r, t0, t1 in zip(results, marks, marks[1:]):
        spread = r.p90_ms / r.p10_ms if r.p10_ms > 0 else float("nan")
        spreads.append(spread)
        print(f"| {r.model} | {t1 - t0:.1f} | {r.runs} | {r.median_ms:.2f} | {r.p10_ms:.2f} | {r.p90_ms:.2f} | "
              f"{spread:.2f} | {human_count(r.macs)} |")
    print(f"\nTotal {total:.0f} s ({total / 60:.1f} min) for {len(results)} models; spread p90/p10 per model: "
          f"median {statistics.median(spreads):.2f}, min {min(spreads):.2f}, max {max(spreads):.2f}.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
