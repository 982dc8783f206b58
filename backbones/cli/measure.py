"""``bench`` (latency, size and MACs measured here) and ``results`` (the results store)."""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings

from backbones.cli.common import ProgressPrinter, emit_json, format_table, human_count
from backbones.errors import BackboneError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="measure latency, size and MACs on this machine (random weights) and store the results",
        description="Measure latency (warm-up, then timed runs), size and MACs of each model on this "
        "machine. Progress goes to stderr; every result is stored unless --no-store.",
    )
    p.add_argument("models", nargs="+", metavar="M", help="catalog names (see `python -m backbones list`)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--batch-size", type=int, default=1, metavar="B", help="images per forward pass (default 1)")
    p.add_argument("--threads", type=int, default=None, metavar="T",
                   help="torch CPU threads (default: torch's current setting)")
    p.add_argument("--input-size", type=int, nargs=3, default=None, metavar=("C", "H", "W"),
                   help="input size (default: each model's own)")
    p.add_argument("--channels-last", action="store_true", help="channels_last memory format")
    p.add_argument("--runs", type=int, default=None, metavar="N", help="at most N timed runs")
    p.add_argument("--budget", type=float, default=2.0, metavar="SECONDS",
                   help="time budget of timed runs per model (default 2; at least 3 runs)")
    p.add_argument("--warmup", type=int, default=3, metavar="N", help="warm-up runs (default 3)")
    p.add_argument("--checkpoint", default=None, metavar="PATH",
                   help="measure your fine-tuned checkpoint of the one architecture M")
    p.add_argument("--no-store", action="store_true", help="do not store the results")
    p.add_argument("--db", default=None, metavar="PATH", help="results database: a file or a postgresql:// URL "
                   "(default $BACKBONES_RESULTS_DB or the cache directory's results.sqlite)")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(handler=cmd_bench)

    p = sub.add_parser("results", help="stored measurements; export or import them as JSON")
    p.add_argument("--json", action="store_true", help="print a JSON list of stored rows")
    p.add_argument("--export", default=None, metavar="FILE", help="write every stored row to FILE (JSON)")
    p.add_argument("--import", dest="import_file", default=None, metavar="FILE",
                   help="merge rows from FILE (an export, or a `bench --json` list)")
    p.add_argument("--source", default=None, metavar="LABEL",
                   help="with --import: label the imported rows (default: the machine they were measured on); "
                   "otherwise: show only rows from LABEL ('here' for this machine)")
    p.add_argument("--kind", default=None, help="only rows of this kind (latency, evaluation, transfer)")
    p.add_argument("--model", default=None, help="only rows of this model")
    p.add_argument("--db", default=None, metavar="PATH", help="results database: a file, sqlite:///FILE, "
                   "a postgresql:// URL or libpq keywords 'host=H dbname=D ...'")
    p.add_argument("--push", action="store_true",
                   help="send the results bench/eval kept locally while the --db server was unreachable")
    p.add_argument("--to-mlflow", nargs="?", const="", default=None, metavar="TRACKING_URI",
                   help="export every stored result as an MLflow run: http(s)://HOST:PORT, file:///FOLDER, "
                   "any URI MLflow takes, or a folder (default: $MLFLOW_TRACKING_URI, else the cache directory's "
                   "mlruns); re-exporting adds no duplicates")
    p.add_argument("--experiment", default=None, metavar="NAME",
                   help="with --to-mlflow: the MLflow experiment (default backbone-lens)")
    p.set_defaults(handler=cmd_results)


@contextlib.contextmanager
def warnings_on_stderr():
    """Store warnings (a corrupt database moved aside) as ``warning: ...`` lines, not Python's format."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for w in caught:
                print(f"warning: {w.message}", file=sys.stderr)


def cmd_bench(args) -> int:
    from backbones.measure import bench_models
    from backbones.measure.common import MEASURED_DEVICE_TYPES, resolve_device
    from backbones.results.store import ResultsStore

    resolve_device(args.device, types=MEASURED_DEVICE_TYPES, purpose="measurements")  # before anything slow: no GPU -> exit 2 at once
    if args.runs is not None and args.runs < 1:
        raise BackboneError(f"--runs must be >= 1, got {args.runs}")
    if args.budget is not None and args.budget < 0:
        raise BackboneError(f"--budget must be >= 0 seconds, got {args.budget}")
    targets: list = list(args.models)
    if args.checkpoint:
        from backbones.zoo.models import load_checkpoint

        if len(args.models) != 1:
            raise BackboneError("--checkpoint goes with exactly one model (its architecture)")
        targets = [load_checkpoint(args.models[0], args.checkpoint)]

    with warnings_on_stderr():
        # keep_locally: a results server that is down does not cost the sweep its results.
        store = None if args.no_store else ResultsStore(args.db, keep_locally=True)
        if store is not None:
            store.ensure_writable()  # a read-only database fails now, not after the sweep
        results = bench_models(
            targets,
            device=args.device,
            batch_size=args.batch_size,
            threads=args.threads,
            input_size=args.input_size,
            channels_last=args.channels_last,
            runs=args.runs,
            budget_s=args.budget,
            warmup=args.warmup,
            store=store,
            progress=ProgressPrinter(),
        )
    if args.json:
        emit_json([r.to_dict() for r in results])
    else:
        rows = [
            [
                r.model,
                r.device,
                str(r.batch_size),
                str(r.threads),
                f"{r.median_ms:.2f}",
                f"{r.p10_ms:.2f}-{r.p90_ms:.2f}",
                str(r.runs),
                f"{r.throughput_ips:.1f}",
                human_count(r.params),
                human_count(r.macs),
                f"{r.size_mib:.1f}",
            ]
            for r in results
        ]
        headers = ["model", "device", "batch", "threads", "median ms", "p10-p90 ms", "runs", "images/s",
                   "params", "MACs (1 image)", "state_dict MiB"]
        print(format_table(rows, headers))
    if store is not None:
        print(store.describe_stored(len(results)), file=sys.stderr)
    return 0


def _summary(row) -> str:
    p = row.payload
    if row.kind == "latency" and "median_ms" in p:
        shape = "x".join(str(x) for x in (p.get("input_size") or [])[1:])
        return (
            f"{p.get('device')} batch {p.get('batch_size')} threads {p.get('threads')} {shape}: "
            f"median {p['median_ms']:.2f} ms (p10 {p.get('p10_ms') or 0:.2f}, p90 {p.get('p90_ms') or 0:.2f}), "
            f"{p.get('runs')} runs"
        )
    if row.kind == "transfer" and isinstance(p.get("top1"), (int, float)):
        knn = f", k-NN {p['knn_top1'] * 100:.1f}%" if isinstance(p.get("knn_top1"), (int, float)) else ""
        logme = f", LogME {p['logme']:.3f}" if isinstance(p.get("logme"), (int, float)) else ""
        return f"{p.get('dataset')}: linear probe top-1 {p['top1'] * 100:.1f}%{knn}{logme}"[:100]
    scalars = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in p.items()
               if isinstance(v, (int, float, str)) and not isinstance(v, bool)]
    return ", ".join(scalars[:5])[:100]


def cmd_results(args) -> int:
    from backbones.results.store import ResultsStore

    if args.experiment is not None and args.to_mlflow is None:
        raise BackboneError("--experiment goes with --to-mlflow")
    with warnings_on_stderr():
        store = ResultsStore(args.db)
        if args.push:
            sent = store.push()
            print(f"pushed {sent} kept result(s) to {store.where}", file=sys.stderr)
        if args.import_file:
            added = store.import_json(args.import_file, source=args.source)
            print(f"imported {added} result(s) from {args.import_file} into {store.where}", file=sys.stderr)
        if args.export:
            n = store.export_json(args.export, kind=args.kind)
            print(f"exported {n} result(s) from {store.where} to {args.export}", file=sys.stderr)
        if args.to_mlflow is not None:
            from backbones.results.mlflow_export import DEFAULT_EXPERIMENT, export_to_mlflow

            done = export_to_mlflow(store, args.to_mlflow or None, experiment=args.experiment or DEFAULT_EXPERIMENT)
            print(f"exported {done.created} new run(s) to MLflow experiment {done.experiment!r} at {done.tracking_uri} "
                  f"({done.existing} already there)", file=sys.stderr)
        if (args.import_file or args.export or args.push or args.to_mlflow is not None) and not args.json:
            return 0
        source_filter = None if args.import_file else args.source
        rows = store.query(kind=args.kind, model=args.model, source=source_filter)
    if args.json:
        emit_json([r.to_dict() for r in rows])
        return 0
    if not rows:
        print(f"no stored results in {store.where} (measure with: python -m backbones bench MODEL)")
        return 0
    table = [[str(r.id), r.kind, r.model, r.source_label, r.created.replace("+00:00", "Z"), _summary(r)] for r in rows]
    print(format_table(table, ["id", "kind", "model", "source", "created (UTC)", "result"]))
    print(f"\n{len(rows)} result(s) in {store.where}")
    return 0
