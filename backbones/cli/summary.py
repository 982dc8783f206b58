"""``summary``: the layer tree of a model with shapes, parameters, MACs and receptive fields (``--erf``: effective ones)."""

from __future__ import annotations

import argparse

from backbones.cli.common import emit_json
from backbones.errors import BackboneError


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
    p.add_argument(
        "--erf", action="store_true",
        help="also measure the effective receptive field (Luo et al. 2016) of each spatial layer: one backward pass "
        "per layer per image; the layers at --depth, or the model's stages without it",
    )
    p.add_argument("--images", type=int, default=None, metavar="N", help="inputs averaged for --erf (default 4: the sample photos)")
    p.add_argument(
        "--weights", default="default",
        help="weights for --erf: 'default' (trained when the file is here, else random, and it says so), 'none' or a name",
    )
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    p.set_defaults(handler=cmd_summary)


def cmd_summary(args) -> int:
    from backbones.summary import format_summary, summarize_model

    if args.depth is not None and args.depth < 0:
        raise BackboneError(f"--depth must be 0 or more, got {args.depth}")
    target = args.model
    if args.checkpoint:
        from backbones.zoo.models import load_checkpoint

        target = load_checkpoint(args.model, args.checkpoint)
    summary = summarize_model(target, input_size=args.input_size)
    if args.images is not None and not args.erf:
        raise BackboneError("--images goes with --erf")
    erf = _measure_erf(args, target, summary) if args.erf else None
    if args.json:
        doc = summary.to_dict(depth=args.depth)
        if erf is not None:
            from backbones.summary.erf import erf_row

            doc["erf"] = {k: v for k, v in erf.to_dict().items() if k != "layers"}
            for row in doc["layers"]:
                row["erf"] = erf_row(erf, row["name"], row["receptive_field"])
        emit_json(doc)
    else:
        print(format_summary(summary, depth=args.depth))
        if erf is not None:
            print()
            print(_format_erf(erf, summary))
    return 0


def _measure_erf(args, target, summary):
    from backbones.cli.common import ProgressPrinter
    from backbones.summary.erf import DEFAULT_IMAGES, measure_erf

    return measure_erf(
        target, weights=None if args.weights == "none" else args.weights, images=args.images or DEFAULT_IMAGES,
        input_size=summary.input_size, max_depth=args.depth, progress=ProgressPrinter(enabled=not args.json),
    )


def _format_erf(erf, summary) -> str:
    from backbones.cli.common import format_table
    from backbones.summary.erf import ratio

    rows = []
    for layer in erf.layers:
        try:
            rf = summary.find(layer.name).receptive_field
        except BackboneError:
            rf = None
        r = ratio(layer.side, rf)
        rows.append([
            layer.name, "x".join(map(str, layer.grid)), "-" if rf is None else str(rf),
            f"{layer.side}{'+' if layer.whole_input else ''}", f"{layer.radius:.1f}", "-" if r is None else f"{r:.2f}",
        ])
    trained = f"trained ({erf.weights})" if erf.trained else "untrained (random weights)"
    head = (f"Effective receptive field (Luo et al. 2016) of {erf.model}, {trained}, {erf.images} inputs ({erf.inputs}): "
            f"the centred square / disc holding {erf.share:.0%} of |d centre unit / d input|")
    table = format_table(rows, ["layer", "grid", "RF px", "ERF side px", "radius px", "ERF/RF"])
    notes = "".join(f"\nnote: {n}" for n in erf.notes)
    return f"{head}\n{table}\n{erf.passes} backward passes (per image) in {erf.seconds:.1f} s{notes}"
