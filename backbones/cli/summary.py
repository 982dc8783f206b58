"""``summary``: the layer tree of a model with shapes, parameters, MACs and receptive fields."""

from __future__ import annotations

import argparse

from backbones.cli.common import emit_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "summary",
        help="layer-by-layer tree: shapes, parameters, MACs, receptive fields, derivations",
        description=(
            "The layer tree of a model (untrained architecture, or your checkpoint with its own head) "
            "for one input size: output shape, parameters, MACs, receptive field and jump, and worked "
            "derivations for convolution, pooling and linear layers. Parameters equal torchinfo's; MACs are "
            "torch.utils.flop_counter's (attention included), the figures every page shows."
        ),
    )
    p.add_argument("model", metavar="M", help="catalog name; see `python -m backbones list`")
    p.add_argument("--depth", type=int, default=None, metavar="D", help="rows down to this depth (default: all)")
    p.add_argument(
        "--input-size", type=int, nargs=3, default=None, metavar=("C", "H", "W"),
        help="input size (default: the model's own, e.g. 3 299 299 for inception_v3)",
    )
    p.add_argument("--checkpoint", default=None, help="summarise your fine-tuned checkpoint (its head, its class count)")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    p.set_defaults(handler=cmd_summary)


def cmd_summary(args) -> int:
    from backbones.errors import BackboneError
    from backbones.summary import format_summary, summarize_model

    if args.depth is not None and args.depth < 0:
        raise BackboneError(f"--depth must be 0 or more, got {args.depth}")
    target = args.model
    if args.checkpoint:
        from backbones.zoo.models import load_checkpoint

        target = load_checkpoint(args.model, args.checkpoint)
    summary = summarize_model(target, input_size=args.input_size)
    if args.json:
        emit_json(summary.to_dict(depth=args.depth))
    else:
        print(format_summary(summary, depth=args.depth))
    return 0
