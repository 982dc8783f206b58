"""``python -m viz``: explanations from the command line.

    python -m viz cam IMG [--model M] [--method gradcam] [--layer L] [--target INDEX|LABEL]
                          [--out overlay.png] [--npy heat.npy] [--json]
    python -m viz features IMG [--model M] [--layer L] [--top N] [--out grid.png] [--json]
    python -m viz layers [--model M] [--depth D] [--json]
    python -m viz methods [--json]

User errors print ``error: <one line>`` on stderr and exit 2 (``backbones.cli.run``);
``--json`` prints exactly one JSON document on stdout.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from backbones.cli import ArgumentParser, run
from backbones.cli.common import add_model_arguments, emit_json, format_table, load_from_args
from backbones.errors import BackboneError
from viz.overlay import COLORMAPS


def build_parser() -> argparse.ArgumentParser:
    from viz.cam import METHODS

    parser = ArgumentParser(prog="python -m viz", description="Backbone Lens: where CNN backbones look (Grad-CAM, saliency, feature maps).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)

    p = sub.add_parser("cam", help="a heatmap of where the model looks for a class")
    p.add_argument("image", metavar="IMG")
    add_model_arguments(p)
    p.add_argument("--method", default="gradcam", help=f"one of {', '.join(METHODS)} (default gradcam)")
    p.add_argument("--layer", default=None, help="dotted layer name for the Grad-CAM methods (default: the model's last spatial layer)")
    p.add_argument("--target", default=None, metavar="INDEX|LABEL", help="class index or label (default: the top-1 class)")
    p.add_argument("--out", default=None, metavar="PNG", help="write the heatmap blended onto the image")
    p.add_argument("--npy", default=None, metavar="NPY", help="write the heatmap: float32 (H, W) of the image, values in [0, 1]")
    p.add_argument("--colormap", default="jet", help=f"matplotlib colormap for --out (e.g. {', '.join(COLORMAPS[:4])})")
    p.add_argument("--alpha", type=float, default=0.5, help="heatmap opacity for --out, 0..1 (default 0.5)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_cam)

    p = sub.add_parser("features", help="a layer's feature maps, channels ranked by mean activation")
    p.add_argument("image", metavar="IMG")
    add_model_arguments(p)
    p.add_argument("--layer", default=None, help="dotted layer name (default: the model's last spatial layer)")
    p.add_argument("--top", type=int, default=16, help="channels to keep and draw (default 16)")
    p.add_argument("--out", default=None, metavar="PNG", help="write the channel grid")
    p.add_argument("--colormap", default="viridis")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_features)

    p = sub.add_parser("layers", help="layers with a spatial output (valid --layer names)")
    add_model_arguments(p)
    p.add_argument("--depth", type=int, default=None, help="only names with at most this many dotted parts")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_layers)

    p = sub.add_parser("methods", help="the attribution methods")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_methods)
    return parser


def _write(path: str, write) -> None:
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write(path)
    except OSError as exc:
        raise BackboneError(f"cannot write {path}: {exc.strerror or exc}") from exc


def cmd_cam(args) -> int:
    from backbones.inference.images import load_image
    from viz.cam import explain
    from viz.overlay import overlay_image

    image = load_image(args.image)
    loaded = load_from_args(args)
    exp = explain(loaded, image, method=args.method, layer=args.layer, target=args.target)
    if args.out:
        img = overlay_image(image, exp.heatmap, cmap=args.colormap, alpha=args.alpha, crop_box=exp.crop_box)
        _write(args.out, lambda p: img.save(p, format="PNG"))
    if args.npy:
        _write(args.npy, lambda p: np.save(p, exp.heatmap.astype(np.float32), allow_pickle=False))
    if args.json:
        emit_json(exp.to_dict())
        return 0
    t = exp.target
    where = f" at {exp.layer}" if exp.layer else ""
    print(f"{loaded.describe()}: {exp.method}{where}")
    print(f"target: {t.label} (class {t.index}, p={t.prob:.3f})")
    peak = exp.peak
    print(f"heatmap: {exp.shape[0]}x{exp.shape[1]} (H x W), peak at row {peak[0]}, col {peak[1]}" if peak else
          f"heatmap: {exp.shape[0]}x{exp.shape[1]} (H x W), empty (no positive evidence for this class)")
    for path in (args.out, args.npy):
        if path:
            print(f"wrote {path}")
    return 0


def cmd_features(args) -> int:
    from backbones.inference.images import load_image
    from viz.features import feature_maps, render_feature_grid

    if args.top < 1:
        raise BackboneError(f"--top must be at least 1, got {args.top}")
    image = load_image(args.image)
    loaded = load_from_args(args)
    fm = feature_maps(loaded, image, args.layer, top=args.top)
    if args.out:
        grid = render_feature_grid(fm, cmap=args.colormap)
        _write(args.out, lambda p: grid.save(p, format="PNG"))
    if args.json:
        emit_json(fm.to_dict())
        return 0
    c, h, w = fm.output_shape
    print(f"{loaded.describe()}: layer {fm.layer}, output {c} x {h} x {w} (C x H x W)")
    rows = [[str(s.index), f"{s.mean:.4g}", f"{s.max:.4g}", f"{s.std:.4g}", f"{s.fraction_active:.0%}"] for s in fm.top]
    print(format_table(rows, ["channel", "mean", "max", "std", "active"]))
    if args.out:
        print(f"wrote {args.out}")
    return 0


def cmd_layers(args) -> int:
    from viz.layers import default_layer, spatial_layers

    loaded = load_from_args(args)
    layers = spatial_layers(loaded, max_depth=args.depth)
    default = default_layer(loaded)
    if args.json:
        emit_json({"model": loaded.name, "default": default, "layers": [i.to_dict() for i in layers]})
        return 0
    rows = [[i.name + (" (default)" if i.name == default else ""), i.type, " x ".join(map(str, i.output_shape))] for i in layers]
    print(format_table(rows, ["layer", "type", "output (C x H x W)"]))
    return 0


def cmd_methods(args) -> int:
    from viz.cam import list_methods

    methods = list_methods()
    if args.json:
        emit_json([m.to_dict() for m in methods])
        return 0
    print(format_table([[m.name, m.title, "yes" if m.uses_layer else "no", m.passes] for m in methods], ["method", "name", "layer", "cost"]))
    return 0


def main(argv=None) -> int:
    return run(build_parser(), argv)
