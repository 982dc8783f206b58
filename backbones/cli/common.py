"""Helpers shared by the command modules (and ``python -m viz``)."""

from __future__ import annotations

import argparse
import json
import sys

from backbones.jsonsafe import json_safe
from backbones.zoo.catalog import DEFAULT_MODEL


def add_model_arguments(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    """``--model``, ``--weights``, ``--checkpoint``, ``--classes``, ``--device``."""
    parser.add_argument(
        "--model", "-m", default=None, required=required,
        help=f"catalog name (default {DEFAULT_MODEL}, or the architecture a --checkpoint names); "
        "see `python -m backbones list`",
    )
    parser.add_argument("--weights", default="default", help="weights name, 'default' or 'none' (untrained)")
    parser.add_argument("--checkpoint", default=None, help="your fine-tuned checkpoint (.pth/.pt/.bin/.safetensors)")
    parser.add_argument("--classes", default=None, help="class names for --checkpoint (.txt one per line, or .json)")
    parser.add_argument(
        "--device", default="auto",
        help="auto (default: the GPU when PyTorch sees one), cpu, cuda, cuda:N or mps",
    )


def load_from_args(args: argparse.Namespace, *, device=None):
    """The model the arguments name, on ``device`` (default: ``--device``); missing trained weights are
    downloaded first, with a progress bar on stderr."""
    from backbones.errors import BackboneError
    from backbones.zoo.models import load_model
    from backbones.zoo.progress import ProgressBar

    if args.classes and not args.checkpoint:
        raise BackboneError("--classes goes with --checkpoint")
    # A checkpoint saved by this project names its own architecture; others need --model.
    name = args.model or (None if args.checkpoint else DEFAULT_MODEL)
    bar = ProgressBar(f"downloading {name}")  # draws nothing unless a download happens
    try:
        return load_model(
            name, weights=args.weights, checkpoint=args.checkpoint, classes=args.classes, progress=bar,
            device=args.device if device is None else device,
        )
    finally:
        bar.close()


def emit_json(obj) -> None:
    """Print one JSON document on stdout."""
    json.dump(json_safe(obj), sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def format_table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(headers, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def human_count(n: float | int | None, unit: str = "") -> str:
    if n is None:
        return "-"
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= factor:
            return f"{n / factor:.2f}{suffix}{unit}"
    return f"{n:g}{unit}"


class ProgressPrinter:
    """Progress of a long sweep on stderr: a rewritten line on a terminal, one line per step otherwise."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.tty = sys.stderr.isatty()

    def __call__(self, done: int, total: int, message: str = "") -> None:
        if not self.enabled:
            return
        if self.tty:
            end = "\n" if done >= total else ""
            sys.stderr.write(f"\r[{done}/{total}] {message[:70]:<70}{end}")
        else:
            sys.stderr.write(f"[{done}/{total}] {message}\n")
        sys.stderr.flush()
