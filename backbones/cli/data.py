"""``eval`` (accuracy on your labelled images) and ``logs`` (training runs from log files)."""

from __future__ import annotations

import argparse
import sys
import unicodedata

from backbones.cli.common import (
    ProgressPrinter,
    add_model_arguments,
    emit_json,
    load_from_args,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="top-1/top-5 accuracy of a model on a folder of class sub-folders or a path,label CSV",
    )
    p.add_argument("dataset", metavar="DATASET", help="folder with one sub-folder per class, a .zip of such folders, or a CSV of path,label rows")
    add_model_arguments(p)
    p.add_argument("--batch-size", type=int, default=16, help="images per forward pass (default 16)")
    p.add_argument("--limit", type=int, default=None, help="evaluate at most N images, spread over the classes")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="processes decoding images (default: from the CPU count; 0 decodes in this process)")
    p.add_argument("--amp", nargs="?", const="bf16", default=None, choices=("bf16", "fp16"),
                   help="mixed precision on cuda: autocast to bf16 (the default with --amp) or fp16")
    p.add_argument("--channels-last", action="store_true", help="channels_last memory format (faster on most GPUs)")
    p.add_argument("--no-store", action="store_true", help="do not save the result in the results store")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_eval)

    p = sub.add_parser("logs", help="read training logs (text, CSV, TensorBoard) and compare the runs")
    p.add_argument("files", nargs="+", metavar="FILE", help="log file, CSV, TensorBoard event file or log directory")
    p.add_argument(
        "--name", action="extend", nargs="+", default=None, metavar="NAME",
        help="names for the runs of each FILE, in order (--name 'VGG19 baseline' 'NIN')",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_logs)


def _width(text: str) -> int:
    # Run names are often Chinese headings: wide characters take two terminal columns.
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def format_table(rows: list[list[str]], headers: list[str]) -> str:
    """Like :func:`backbones.cli.common.format_table`, aligned for wide (CJK) characters."""
    widths = [max(_width(str(x)) for x in col) for col in zip(headers, *rows)]

    def line(cells) -> str:
        return "  ".join(str(c) + " " * (w - _width(str(c))) for c, w in zip(cells, widths)).rstrip()

    return "\n".join([line(headers), "  ".join("-" * w for w in widths)] + [line(r) for r in rows])


def _pct(value) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def read_dataset_argument(text: str):
    """A folder, a CSV, or a ``.zip`` of class folders unpacked exactly as the Evaluate page does."""
    from pathlib import Path

    from backbones.data.archives import unpack_dataset
    from backbones.data.datasets import read_dataset

    path = Path(text).expanduser()
    if path.suffix.lower() == ".zip" and path.is_file():
        return read_dataset(unpack_dataset(path, label=path.name), name=path.stem)
    return read_dataset(path)


def cmd_eval(args) -> int:
    """Under ``torchrun`` every process evaluates its share; rank 0 alone prints and stores the whole result."""
    from backbones.data.distributed import process_group
    from backbones.data.evaluation import evaluate_dataset

    dataset = read_dataset_argument(args.dataset)  # before loading the model: a wrong path fails fast
    with process_group(args.device) as (device, launch):
        main = launch is None or launch.is_main
        loaded = load_from_args(args, device=device)
        result = evaluate_dataset(
            loaded, dataset, batch_size=args.batch_size, limit=args.limit, workers=args.workers, amp=args.amp,
            channels_last=args.channels_last, progress=ProgressPrinter(enabled=main),
        )
    if not main:
        return 0
    return print_evaluation(args, loaded, result)


def print_evaluation(args, loaded, result) -> int:
    """Store ``result`` (unless ``--no-store``) and print it: a table, or ``--json``."""
    from backbones.data.evaluation import save_evaluation

    if not loaded.trained and not args.no_store:
        # Chance-level accuracy of random weights does not belong beside published figures.
        print("note: untrained weights: result not saved", file=sys.stderr)
    elif not args.no_store:
        from backbones.cli.measure import warnings_on_stderr
        from backbones.results.store import ResultsStore

        store = ResultsStore(keep_locally=True)
        with warnings_on_stderr():  # a results server that is down: kept locally, with a warning line
            row = save_evaluation(result, store=store)
        print(f"{store.describe_stored(1)} (id {row})", file=sys.stderr)
    if args.json:
        emit_json(result.to_dict())
        return 0
    print(f"{result.model} on {result.dataset}: {result.n} images, {result.skipped} skipped, "
          f"{result.excluded} excluded ({result.images_per_second:.1f} images/s)")
    print(f"top-1 accuracy {_pct(result.top1)} (error {_pct(result.top1_error)}), "
          f"top-{result.topk} accuracy {_pct(result.top5)} (error {_pct(result.top5_error)})")
    n_of = dict(result.per_class_n)
    print()
    print(format_table([[label, str(n_of[label]), _pct(acc)] for label, acc in result.per_class],
                       ["class", "images", "top-1"]))
    for u in result.unmatched:
        print(f"unmatched class {u.label!r} ({u.images} images excluded): {u.note}")
    for s in result.skipped_files:
        print(f"skipped {s.path}: {s.reason}")
    for note in result.notes:
        print(f"note: {note}")
    if result.misclassified:
        print(f"\n{len(result.misclassified)} misclassified:")
        for m in result.misclassified:
            print(f"  {m.path}: {m.label} -> {m.predicted} ({m.top5[0].prob * 100:.1f}%)")
    if not loaded.trained:
        print("note: untrained weights (--weights none): this accuracy is chance level")
    return 0


def cmd_logs(args) -> int:
    from backbones.data.logs import read_logs
    from backbones.errors import LogFormatError

    if args.name and len(args.name) > len(args.files):
        raise LogFormatError(f"{len(args.name)} --name options for {len(args.files)} files")
    runs = read_logs(args.files, names=args.name)
    if args.json:
        emit_json([r.to_dict() for r in runs])
        return 0
    rows = []
    for r in runs:
        s = r.summary()
        rows.append([
            s["name"],
            f"{s['first_epoch']}-{s['last_epoch']}",
            _pct(s["best_test_acc"]),
            "-" if s["best_epoch"] is None else str(s["best_epoch"]),
            _pct(s["final_test_acc"]),
            "-" if s["mean_epoch_time_s"] is None else f"{s['mean_epoch_time_s']:.1f}",
            "-" if s["gap_at_best"] is None else f"{s['gap_at_best'] * 100:+.1f}",
            "-" if s["gap_at_last"] is None else f"{s['gap_at_last'] * 100:+.1f}",
        ])
    print(format_table(rows, ["run", "epochs", "best test", "at epoch", "last test", "s/epoch", "gap@best", "gap@last"]))
    print("\ngap = train accuracy - test accuracy, in percentage points")
    for r in runs:
        for note in r.notes:
            print(f"note: {r.name}: {note}")
    return 0
