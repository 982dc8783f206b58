"""``list``, ``predict``, ``compare``, ``weights``, ``import-weights`` and ``download``."""

from __future__ import annotations

import argparse
from pathlib import Path

from backbones.cli.common import (
    add_model_arguments,
    emit_json,
    format_table,
    human_count,
    load_from_args,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="the catalog with published figures and weights status")
    p.add_argument("--json", action="store_true")
    p.add_argument("--all", action="store_true", help="the whole catalog (default: the curated selection)")
    p.add_argument("--include", default=None, help="shell pattern, e.g. 'resnet*'")
    p.set_defaults(handler=cmd_list)

    p = sub.add_parser("predict", help="top-k classes for one or more images")
    p.add_argument("images", nargs="+", metavar="IMG")
    add_model_arguments(p)
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_predict)

    p = sub.add_parser("compare", help="published figures beside latency measured here (the Compare page's table)")
    p.add_argument("models", nargs="*", metavar="M", help="default: the curated selection")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="only CPU measurements taken with this many threads")
    p.add_argument("--db", default=None, help="results database (default: $BACKBONES_RESULTS_DB or the cache)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_compare)

    p = sub.add_parser("weights", help="weights status of a model, with the expected file paths")
    p.add_argument("model")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_weights)

    p = sub.add_parser("import-weights", help="check a downloaded weights file and copy it into the cache")
    p.add_argument("model")
    p.add_argument("file")
    p.add_argument("--weights", default="default", help="which weights the file holds (default: the default)")
    p.set_defaults(handler=cmd_import)

    p = sub.add_parser(
        "download",
        help="download missing trained weights (torch's hub cache, the Hugging Face cache); say what is already here",
        description="Download the trained weights of each model unless they are here already. Progress goes to "
        "stderr. Offline (BACKBONES_OFFLINE=1, or HF_HUB_OFFLINE=1 for timm models) nothing is fetched. "
        "BACKBONES_TORCHVISION_MIRROR, HF_ENDPOINT and BACKBONES_DOWNLOAD_TIMEOUT choose where from and how "
        "long to wait.",
    )
    p.add_argument("models", nargs="+", metavar="MODEL", help="catalog names (see `python -m backbones list`)")
    p.add_argument("--weights", default="default", help="which weights (default: each model's default)")
    p.add_argument("--json", action="store_true", help="one JSON list of {model, weights, status, path, bytes, sha256}")
    p.set_defaults(handler=cmd_download)


def cmd_list(args) -> int:
    from backbones.zoo.catalog import list_models

    entries = list_models(include=args.include, default_only=not (args.all or args.include))
    from backbones.zoo.listing import catalog_rows

    rows = catalog_rows(entries)
    if args.json:
        emit_json(rows)
        return 0
    table = [
        [
            r["name"],
            r["source"],
            human_count(r["params"]),
            human_count(r["macs"]),
            f"{r['published_top1']:.2f}" if r["published_top1"] is not None else "-",
            "x".join(map(str, r["input_size"][1:])),
            r["weights"][0]["status"] if r["weights"] else "none",
        ]
        for r in rows
    ]
    print(format_table(table, ["model", "source", "params", "MACs", "top-1 %", "input", "weights"]))
    if not (args.all or args.include):
        print("\n(curated selection; --all lists all catalog entries)")
    return 0


def cmd_predict(args) -> int:
    from backbones.inference.images import load_image
    from backbones.inference.predict import predict

    images = [load_image(path) for path in args.images]
    loaded = load_from_args(args)
    results = predict(loaded, images, names=list(args.images), topk=args.topk)
    if args.json:
        emit_json([r.to_dict() for r in results])
        return 0
    for r in results:
        print(f"{r.image}  [{loaded.describe()}]")
        for t in r.topk:
            print(f"  {t.rank}. {t.label:<30} {t.prob * 100:6.2f}%  (class {t.index})")
    if not loaded.trained:
        print("note: untrained weights (--weights none): these predictions are meaningless")
    return 0


def cmd_weights(args) -> int:
    from backbones.zoo.weights import weights_status

    statuses = weights_status(args.model)
    if args.json:
        emit_json([s.to_dict() for s in statuses])
        return 0
    print(format_table([[s.name, s.status, s.path or "-", s.url or "-"] for s in statuses], ["weights", "status", "path", "url"]))
    return 0


def cmd_import(args) -> int:
    from backbones.zoo.importing import import_weights

    dest = import_weights(args.model, Path(args.file), weights=args.weights)
    print(f"imported {args.file} -> {dest}")
    return 0


def cmd_download(args) -> int:
    from backbones.zoo.catalog import get_entry
    from backbones.zoo.fetching import download_weights
    from backbones.zoo.progress import ProgressBar, format_bytes
    from backbones.zoo.weights import resolve_weights

    for name in args.models:  # a wrong name or weights name fails before the first byte moves
        resolve_weights(get_entry(name), args.weights)
    results = []
    for name in args.models:
        bar = ProgressBar(f"downloading {name}")
        try:
            result = download_weights(name, args.weights, progress=bar)
        finally:
            bar.close()
        results.append(result)
        if not args.json:
            said = {"downloaded": "downloaded", "cached": "already here", "bundled": "bundled, already here"}
            size = format_bytes(result.bytes)
            print(f"{result.model} {result.weights}: {said[result.status]} ({size}) {result.path}")
    if args.json:
        emit_json([r.to_dict() for r in results])
    return 0


def cmd_compare(args) -> int:
    from backbones.results.comparison import comparison_rows
    from backbones.results.store import ResultsStore
    from backbones.zoo.catalog import CURATED

    names = args.models or list(CURATED)
    rows = comparison_rows(
        names, store=ResultsStore(args.db), device=args.device, batch_size=args.batch_size, threads=args.threads
    )
    if args.json:
        emit_json([r.to_dict() for r in rows])
        return 0

    def fmt(value, spec):
        return "-" if value is None else format(value, spec)

    table = [
        [
            r.model,
            r.series,
            fmt(r.published_top1, ".2f"),
            fmt(r.latency_ms, ".2f"),
            fmt(r.p10_ms, ".2f") + "-" + fmt(r.p90_ms, ".2f") if r.latency_ms is not None else "-",
            human_count(r.params),
            human_count(r.macs),
            fmt(r.size_mib, ".1f"),
        ]
        for r in rows
    ]
    headers = ["model", "series", "top-1 %", "median ms", "p10-p90 ms", "params", "MACs", "MiB"]
    print(format_table(table, headers))
    return 0
