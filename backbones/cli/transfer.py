"""``transfer``: rank backbones on your labelled images (linear probe, k-NN, LogME on pre-logit features)."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from backbones.cli.common import ProgressPrinter, emit_json
from backbones.cli.data import format_table, read_dataset_argument


def register(sub: argparse._SubParsersAction) -> None:
    from backbones.data.sample import TRANSFER_SAMPLE_NAME
    from backbones.transfer.ranking import PROBES

    p = sub.add_parser(
        "transfer",
        help="which backbone for my data: linear probe, k-NN and LogME on each backbone's features of a dataset",
    )
    p.add_argument("dataset", metavar="DATASET",
                   help="folder with one sub-folder per class (train/ val/ test/ sub-folders are used as splits), "
                        f"a .zip of such folders, a CSV of path,label rows, or {TRANSFER_SAMPLE_NAME} (built in)")
    p.add_argument("--models", "-m", nargs="+", default=None, metavar="M", help="catalog names to rank; NAME@WEIGHTS picks weights per model (efficientnet_lite0@none: untrained)")
    p.add_argument("--weights", default="default", help="weights of every model: 'default' or 'none' (untrained)")
    p.add_argument("--checkpoint", default=None, metavar="FILE",
                   help="rank your own checkpoint (its architecture from --models M, or from the file's metadata)")
    p.add_argument("--probes", default=",".join(PROBES), help=f"comma-separated, any of {','.join(PROBES)} (default all)")
    p.add_argument("--device", default="auto", help="auto (default: the GPU when PyTorch sees one), cpu, cuda, cuda:N or mps")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="processes decoding images (default: from the CPU count; 0 decodes in this process)")
    p.add_argument("--batch-size", type=int, default=32, metavar="B", help="images per forward pass (default 32)")
    p.add_argument("--amp", default=None, choices=("bf16", "fp16", "none"),
                   help="autocast on cuda (default: bf16 where the GPU supports it); none: full precision")
    p.add_argument("--save-probe", default=None, metavar="DIR",
                   help="save each backbone's linear probe as a checkpoint with the class names under DIR/<model>/")
    p.add_argument("--no-store", action="store_true", help="do not save the results in the results store")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_transfer)


def read_transfer_dataset(text: str):
    """The built-in transfer sample by name, else a folder, CSV or zip as ``eval`` reads it."""
    from backbones.data.datasets import read_dataset
    from backbones.data.sample import TRANSFER_SAMPLE_NAME, transfer_sample_dataset

    if text.strip().lower() == TRANSFER_SAMPLE_NAME and not Path(text).exists():
        return read_dataset(transfer_sample_dataset(), name=TRANSFER_SAMPLE_NAME)
    return read_dataset_argument(text)


def _pct(value) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _probe_folder(root: Path, model: str) -> Path:
    # timm:rexnet_100 -> timm-rexnet_100: one folder per backbone, a name every file system accepts.
    return root / (re.sub(r"[^A-Za-z0-9_.-]+", "-", model).strip("-.") or "model")


def cmd_transfer(args) -> int:
    """Under ``torchrun`` every process extracts its share of the features; rank 0 alone prints, stores and saves."""
    from backbones.data.distributed import process_group
    from backbones.errors import BackboneError
    from backbones.transfer.ranking import rank_backbones, save_probe

    if args.checkpoint is None and not args.models:
        raise BackboneError("give the backbones to rank with --models A B ... (or one --checkpoint)")
    if args.checkpoint is not None and args.models and len(args.models) > 1:
        raise BackboneError("--checkpoint goes with one architecture: --models M --checkpoint FILE")
    dataset = read_transfer_dataset(args.dataset)  # before any model: a wrong path fails fast
    probes = [p for p in args.probes.split(",")]
    if args.save_probe and "linear" not in [p.strip().lower() for p in probes]:
        raise BackboneError("--save-probe saves the linear probe: include linear in --probes")
    store = None
    with process_group(args.device) as (device, launch):
        main = launch is None or launch.is_main
        if main and not args.no_store:
            from backbones.results.store import ResultsStore

            store = ResultsStore(keep_locally=True)
        from backbones.cli.measure import warnings_on_stderr

        models = args.models
        if args.checkpoint is not None:
            from backbones.zoo.models import load_model

            models = [load_model(args.models[0] if args.models else None, checkpoint=args.checkpoint, device=device)]
        with warnings_on_stderr():  # a results server that is down: kept locally, with a warning line
            report = rank_backbones(
                dataset, models, probes=probes, weights=args.weights, device=device,
                batch_size=args.batch_size, workers=args.workers, amp=args.amp, store=store,
                save=main and not args.no_store, progress=ProgressPrinter(enabled=main),
            )
    if not main:
        return 0
    if not args.no_store and any(r.trained for r in report.rows):
        print("saved to the results store (Compare shows 'top-1 on "
              f"{report.dataset} (linear probe)')", file=sys.stderr)
    if args.save_probe:
        for row in report.rows:
            path = save_probe(row, _probe_folder(Path(args.save_probe), row.label), dataset=report.dataset)
            print(f"saved the {row.label} probe: {path}", file=sys.stderr)
    if args.json:
        emit_json(report.to_dict())
        return 0
    print_report(report)
    return 0


def print_report(report) -> None:
    s = report.splits
    print(f"{report.dataset}: {len(report.classes)} classes; train {s.get('train', 0)}, val {s.get('val', 0)}, "
          f"test {s.get('test', 0)} images" + (f"; {len(report.skipped)} skipped" if report.skipped else ""))
    rows = []
    for r in report.rows:
        lin, knn = r.linear, r.knn
        rows.append([
            r.label, r.weights, str(r.feature_dim),
            "-" if lin is None else f"{_pct(lin.top1)} [{lin.top1_ci[0] * 100:.1f}, {lin.top1_ci[1] * 100:.1f}]",
            "-" if lin is None else _pct(lin.top5), "-" if lin is None else _pct(lin.mean_class),
            "-" if lin is None else f"{lin.C:g}",
            "-" if knn is None else f"{_pct(knn.top1)} (k={knn.k})",
            "-" if r.logme is None else f"{r.logme:.3f}",
            f"{r.extract_images_per_s:.1f}", "yes" if r.cached else "no",
            "-" if r.latency_ms is None else f"{r.latency_ms:.1f}",
        ])
    print()
    print(format_table(rows, ["model", "weights", "features", "linear top-1 [95% CI]", "top-5", "mean/class", "C",
                              "k-NN top-1", "LogME", "images/s", "cached", "latency ms"]))
    scored = [r for r in report.rows if r.linear is not None]
    for i, a in enumerate(scored):
        for b in scored[i + 1:]:
            if a.linear.top1_ci[0] <= b.linear.top1_ci[1] and b.linear.top1_ci[0] <= a.linear.top1_ci[1]:
                print(f"note: {a.label} and {b.label} are within noise on this test split (95% intervals overlap)")
    for s_ in report.skipped:
        print(f"skipped {s_.path}: {s_.reason}")
    for r in report.rows:
        if not r.trained:
            print(f"note: {r.label} is untrained: not saved to the results store")
    print("\nlinear: logistic regression on standardised features, C chosen on val, refit on train+val, "
          "scored on test; k-NN: cosine, k chosen on val; LogME: train+val, higher is better")
