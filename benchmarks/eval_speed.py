"""Images per second of ``eval`` beside a plain torchvision evaluation loop, and 1 vs 2 processes under torchrun.

Writes an ImageFolder dataset of flips and crops of the sample photos
(:func:`backbones.samples.write_sample_dataset`), then, in one run and alternating,
times (wall clock, worker start-up included):

- ``plain``: ``torchvision.datasets.ImageFolder`` + ``DataLoader`` + a forward loop
  under ``inference_mode`` with top-5, the same model, transforms (the model's own
  preprocessing), batch size and workers, pinned memory and non-blocking copies on cuda;
- ``eval``: :func:`backbones.data.evaluation.evaluate_dataset`, what ``python -m backbones eval`` runs;

and ``python -m torch.distributed.run --standalone --nproc_per_node 1`` and ``2`` of
``python -m backbones eval`` (the images/s each reports, and the command's wall time
with process start-up and model loading). Prints a markdown table; the target is
eval / plain >= 0.95.

    python benchmarks/eval_speed.py                                  # CPU, small
    python benchmarks/eval_speed.py --device cuda --per-class 200 --batch-size 64 --workers 8 --torchrun-device cpu
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

import torch  # noqa: E402

from backbones.data.evaluation import evaluate_dataset  # noqa: E402
from backbones.data.loading import default_workers  # noqa: E402
from backbones.inference.logits import logits_of  # noqa: E402
from backbones.measure.environment import cpu_model  # noqa: E402
from backbones.samples import write_sample_dataset  # noqa: E402
from backbones.zoo.models import load_model  # noqa: E402


def plain_loop(loaded, root: Path, *, batch_size: int, workers: int) -> int:
    """timm-validate-style loop over torchvision's ImageFolder; returns the images scored."""
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder

    device = loaded.device
    loader = DataLoader(ImageFolder(str(root), transform=loaded.preprocessing), batch_size=batch_size,
                        num_workers=workers, pin_memory=device.type == "cuda")
    n = correct = 0
    with torch.inference_mode():
        for images, targets in loader:
            logits = logits_of(loaded.model(images.to(device, non_blocking=True)))
            top5 = torch.softmax(logits.float(), dim=1).topk(5, dim=1).indices.cpu()
            correct += int((top5[:, 0] == targets).sum())  # targets are folder indices: only the work counts
            n += len(targets)
    return n


def timed(fn) -> tuple[float, int]:
    start = time.perf_counter()
    n = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, n


def torchrun(root: Path, nproc: int, args) -> dict:
    """One ``torchrun ... -m backbones eval`` run: images/s it reports, its wall time."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "-m", "backbones", "eval", str(root), "--model", args.model, "--device", args.torchrun_device,
           "--batch-size", str(args.batch_size), "--workers", str(args.torchrun_workers), "--json", "--no-store"]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.torchrun_threads)}
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"torchrun with {nproc} processes failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout)
    return {"processes": nproc, "images": out["n"], "images_per_second": out["images_per_second"], "wall_s": wall,
            "top1": out["top1"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--per-class", type=int, default=24, help="images per class (3 classes)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=None, help="default: eval's own default for this machine")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each, alternating (median kept)")
    parser.add_argument("--torchrun-device", default=None, help="device of the torchrun runs (default --device)")
    parser.add_argument("--torchrun-workers", type=int, default=1, help="decoding workers per torchrun process")
    parser.add_argument("--torchrun-threads", type=int, default=1, help="OMP_NUM_THREADS of each torchrun process")
    parser.add_argument("--no-torchrun", action="store_true")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the numbers as JSON")
    args = parser.parse_args(argv)
    args.torchrun_device = args.torchrun_device or args.device
    workers = default_workers() if args.workers is None else args.workers

    with tempfile.TemporaryDirectory() as tmp:
        root = write_sample_dataset(Path(tmp) / "samples", per_class=args.per_class)
        loaded = load_model(args.model, device=args.device)
        runs = {
            "plain": lambda: plain_loop(loaded, root, batch_size=args.batch_size, workers=workers),
            "eval": lambda: evaluate_dataset(loaded, root, batch_size=args.batch_size, workers=workers).n,
        }
        for fn in runs.values():  # warm-up: page cache, allocator, cudnn's algorithm choice
            fn()
        times: dict[str, list[float]] = {name: [] for name in runs}
        images = {}
        for _ in range(args.repeats):
            for name, fn in runs.items():
                seconds, images[name] = timed(fn)
                times[name].append(seconds)
        rates = {name: images[name] / statistics.median(t) for name, t in times.items()}
        dist_rows = [] if args.no_torchrun else [torchrun(root, n, args) for n in (1, 2)]

    device_name = torch.cuda.get_device_name(loaded.device) if loaded.device.type == "cuda" else cpu_model()
    print(f"{args.model} on {device_name} ({args.device}), {images['eval']} images, batch {args.batch_size}, "
          f"{workers} workers, torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats}\n")
    print("| run | images/s | ratio to plain |")
    print("|---|---:|---:|")
    for name in runs:
        print(f"| {name} | {rates[name]:.1f} | {rates[name] / rates['plain']:.2f} |")
    if dist_rows:
        print(f"\ntorchrun on {args.torchrun_device}, {args.torchrun_workers} worker(s) and "
              f"{args.torchrun_threads} thread(s) per process:\n")
        print("| processes | images/s (eval's own) | speed-up | command wall s (start-up included) |")
        print("|---:|---:|---:|---:|")
        for row in dist_rows:
            speedup = row["images_per_second"] / dist_rows[0]["images_per_second"]
            print(f"| {row['processes']} | {row['images_per_second']:.1f} | {speedup:.2f} | {row['wall_s']:.1f} |")
        if len({row["top1"] for row in dist_rows}) != 1:
            print("\nwarning: top-1 differs between 1 and 2 processes", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "model": args.model, "device": args.device, "device_name": device_name, "images": images["eval"],
            "batch_size": args.batch_size, "workers": workers, "images_per_second": rates,
            "ratio": rates["eval"] / rates["plain"], "times_s": times, "torchrun": dist_rows,
        }, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
