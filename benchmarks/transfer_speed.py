"""Speed of ``transfer`` in one run: extraction vs a plain loop, the cached rerun, the probes, and flat memory.

Measures, in one run (wall clock, worker start-up included):

1. **extraction**: :func:`backbones.transfer.features.extract_features` (into a fresh cache each time, so
   it really extracts and writes) beside a plain ``torchvision.datasets.ImageFolder`` + ``DataLoader`` +
   forward-to-pre-logit-features loop with the same model, transforms, batch size and workers (the features
   copied to the CPU as float16, as the cache keeps them); alternating, median of ``--repeats``.
   Target: ratio >= 0.95.
2. **cached rerun**: :func:`backbones.transfer.ranking.rank_backbones` on the same dataset and backbones,
   first into an empty feature cache, then again. Target: >= 20x faster.
3. **probes**: the linear probe with its C search and LogME on 10,000 x 2,048 synthetic float16 features,
   100 classes. Targets: <= 30 s and <= 10 s on 2 cores.
4. **memory**: peak RSS (Linux ``VmHWM``, reset just before) of a fresh process extracting
   ``--rss-sizes`` generated images with a small untrained model, minus its RSS before extracting. Target: does not grow with the number of images.

    python benchmarks/transfer_speed.py                       # CPU, small sizes
    python benchmarks/transfer_speed.py --per-class 100 --rss-sizes 2000 10000 --device cuda --workers 8
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from backbones.data.datasets import read_dataset  # noqa: E402
from backbones.measure.environment import cpu_model  # noqa: E402
from backbones.samples import write_sample_dataset  # noqa: E402
from backbones.transfer.features import extract_features, pre_logit_module  # noqa: E402
from backbones.zoo.models import load_model  # noqa: E402


def plain_loop(loaded, root: Path, *, batch_size: int, workers: int) -> int:
    """ImageFolder + DataLoader + forward to the pre-logit features, kept as float16 on the CPU."""
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder

    device = loaded.device
    extractor = pre_logit_module(loaded)
    loader = DataLoader(ImageFolder(str(root), transform=loaded.preprocessing), batch_size=batch_size,
                        num_workers=workers, pin_memory=device.type == "cuda")
    kept = []
    with torch.inference_mode():
        for images, _targets in loader:
            kept.append(extractor(images.to(device, non_blocking=True)).float().cpu().numpy().astype(np.float16))
    return sum(len(k) for k in kept)


def extraction(args, root: Path, tmp: Path) -> dict:
    loaded = load_model(args.model, device=args.device)
    ds = read_dataset(root)
    count = iter(range(10**6))

    def ours() -> int:
        return extract_features(ds, loaded, batch_size=args.batch_size, workers=args.workers,
                                cache_dir=tmp / f"fresh-{next(count)}").n

    runs = {"plain": lambda: plain_loop(loaded, root, batch_size=args.batch_size, workers=args.workers),
            "extract_features": ours}
    for fn in runs.values():  # warm-up: page cache, allocator
        fn()
    times: dict[str, list[float]] = {name: [] for name in runs}
    images = {}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            images[name] = fn()
            times[name].append(time.perf_counter() - start)
    rates = {name: images[name] / statistics.median(t) for name, t in times.items()}
    return {"images": images["plain"], "images_per_s": rates, "ratio": rates["extract_features"] / rates["plain"],
            "times_s": times}


def cached_rerun(args, root: Path, tmp: Path) -> dict:
    from backbones.transfer.ranking import rank_backbones

    ds = read_dataset(root)
    models = args.rank_models
    out = {}
    for name in ("first", "cached"):
        start = time.perf_counter()
        report = rank_backbones(ds, models, device=args.device, batch_size=args.batch_size, workers=args.workers,
                                cache_dir=tmp / "rank-cache", save=False)
        out[name] = time.perf_counter() - start
        out[f"{name}_cached_flags"] = [r.cached for r in report.rows]
    out["speedup"] = out["first"] / out["cached"]
    return out


def probes(args) -> dict:
    from backbones.transfer.logme import logme
    from backbones.transfer.probes import TRAIN, VAL, assign_splits, fit_linear_probe

    rng = np.random.default_rng(0)
    n, d, k = args.probe_n, args.probe_dim, args.probe_classes
    centres = rng.normal(size=(k, d)).astype(np.float32)
    labels = rng.integers(0, k, n)
    features = (0.15 * centres[labels] + rng.normal(size=(n, d)).astype(np.float32)).astype(np.float16)
    splits = assign_splits(labels)
    start = time.perf_counter()
    linear = fit_linear_probe(features, labels, splits)
    linear_s = time.perf_counter() - start
    rows = np.flatnonzero((splits == TRAIN) | (splits == VAL))
    start = time.perf_counter()
    score = logme(features[rows], labels[rows])
    logme_s = time.perf_counter() - start
    return {"n": n, "dim": d, "classes": k, "linear_s": linear_s, "linear_top1": linear.top1, "C": linear.C,
            "logme_s": logme_s, "logme": score, "logme_rows": len(rows)}


def _write_generated(root: Path, n: int) -> Path:
    """``n`` small generated JPEGs in 4 classes (noise over a per-class colour)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / f"class{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        base = np.array([60 * (i % 4), 128, 255 - 60 * (i % 4)], dtype=np.int16)
        pixels = np.clip(base + rng.integers(-40, 40, size=(96, 96, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:06d}.jpg", quality=85)
    return root


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise SystemExit(f"/proc/self/status has no {field} (Linux only)")


def rss_child(n: int, folder: str, model: str, batch_size: int, workers: int) -> None:
    """In a fresh process: RSS just before extracting ``n`` generated images, and the peak while extracting
    (Linux's high-water mark, reset first by writing 5 to /proc/self/clear_refs)."""
    root = _write_generated(Path(folder) / "images", n)
    ds = read_dataset(root)
    loaded = load_model(model, weights="none", device="cpu")
    before = _status_mib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS now
    fs = extract_features(ds, loaded, batch_size=batch_size, workers=workers, cache_dir=Path(folder) / "cache")
    peak = _status_mib("VmHWM")
    print(json.dumps({"images": fs.n, "feature_mib": fs.n * fs.feature_dim * 2 / 2**20, "rss_before_mib": before,
                      "rss_peak_mib": peak, "growth_mib": peak - before}))


def memory(args) -> list[dict]:
    rows = []
    for n in args.rss_sizes:
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, __file__, "--rss-child", str(n), tmp, "--rss-model", args.rss_model,
                   "--batch-size", str(args.batch_size), "--workers", "0"]
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(f"the memory run with {n} images failed:\n{proc.stderr[-3000:]}")
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--per-class", type=int, default=24, help="images per class of the sample photos (3 classes)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rank-models", nargs="+", default=["efficientnet_lite0", "efficientnet_lite0@none"])
    parser.add_argument("--probe-n", type=int, default=10_000)
    parser.add_argument("--probe-dim", type=int, default=2048)
    parser.add_argument("--probe-classes", type=int, default=100)
    parser.add_argument("--rss-sizes", type=int, nargs="+", default=[500, 2000])
    parser.add_argument("--rss-model", default="mobilenet_v3_small")
    parser.add_argument("--rss-child", nargs=2, metavar=("N", "DIR"), help=argparse.SUPPRESS)
    parser.add_argument("--skip", nargs="*", default=[], choices=("extraction", "rerun", "probes", "memory"))
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the numbers as JSON")
    args = parser.parse_args(argv)
    if args.rss_child:
        rss_child(int(args.rss_child[0]), args.rss_child[1], args.rss_model, args.batch_size, args.workers)
        return 0

    results: dict = {"model": args.model, "device": args.device, "batch_size": args.batch_size,
                     "workers": args.workers, "torch": torch.__version__, "threads": torch.get_num_threads(),
                     "cpu": cpu_model(), "load_average": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        root = write_sample_dataset(tmp / "samples", per_class=args.per_class)
        if "extraction" not in args.skip:
            results["extraction"] = extraction(args, root, tmp)
        if "rerun" not in args.skip:
            results["rerun"] = cached_rerun(args, root, tmp)
    if "probes" not in args.skip:
        results["probes"] = probes(args)
    if "memory" not in args.skip:
        results["memory"] = memory(args)
    results["load_average_after"] = os.getloadavg()[0]

    print(f"{args.model} on {results['cpu']} ({args.device}), batch {args.batch_size}, {args.workers} worker(s), "
          f"torch {torch.__version__}, {results['threads']} threads, load average {results['load_average']:.1f} "
          f"-> {results['load_average_after']:.1f}\n")
    print("| measurement | value | target |")
    print("|---|---:|---|")
    if "extraction" in results:
        e = results["extraction"]
        print(f"| extraction images/s: extract_features / plain loop ({e['images']} images, median of "
              f"{args.repeats}) | {e['images_per_s']['extract_features']:.1f} / {e['images_per_s']['plain']:.1f} "
              f"= {e['ratio']:.2f} | >= 0.95 |")
    if "rerun" in results:
        r = results["rerun"]
        print(f"| ranking {len(args.rank_models)} backbones again from the cache | {r['first']:.1f} s -> "
              f"{r['cached']:.2f} s = {r['speedup']:.0f}x | >= 20x |")
    if "probes" in results:
        p = results["probes"]
        print(f"| linear probe with C search, {p['n']:,} x {p['dim']:,}, {p['classes']} classes | "
              f"{p['linear_s']:.1f} s | <= 30 s |")
        print(f"| LogME on the same ({p['logme_rows']:,} train+val rows) | {p['logme_s']:.1f} s | <= 10 s |")
    for m in results.get("memory", []):
        print(f"| peak RSS growth extracting {m['images']:,} images ({args.rss_model}, features "
              f"{m['feature_mib']:.1f} MiB) | {m['growth_mib']:.0f} MiB (peak {m['rss_peak_mib']:.0f}) | flat |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
