"""``python -m viz``: explanations from the command line.

    python -m viz cam IMG [--model M] [--method gradcam|...|rollout] [--layer L] [--target INDEX|LABEL]
                          [--head-fusion mean|max] [--out overlay.png] [--npy heat.npy] [--json]
    python -m viz features IMG [--model M] [--layer L] [--top N] [--out grid.png] [--json]
    python -m viz layers [--model M] [--depth D] [--json]
    python -m viz methods [--json]
    python -m viz faithfulness IMG [--model M] [--method METHOD] [--layer L] [--target T] [--steps N] [--seed S] [--json]
    python -m viz sanity IMG [--model M] [--method METHOD] [--layer L] [--target T] [--seed S] [--max-steps N] [--json]
    python -m viz pack IMG --models A B ... [--methods gradcam ...] [--target T] [--faithfulness] --out pack.zip

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

    parser = ArgumentParser(prog="python -m viz", description="Backbone Lens: where CNN and transformer backbones look (Grad-CAM, saliency, attention rollout, feature maps).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)

    p = sub.add_parser("cam", help="a heatmap of where the model looks for a class")
    _add_explain_arguments(p, METHODS)
    p.add_argument("--out", default=None, metavar="PNG", help="write the heatmap blended onto the image")
    p.add_argument("--npy", default=None, metavar="NPY", help="write the heatmap: float32 (H, W) of the image, values in [0, 1]")
    p.add_argument("--colormap", default="jet", help=f"matplotlib colormap for --out (e.g. {', '.join(COLORMAPS[:4])})")
    p.add_argument("--alpha", type=float, default=0.5, help="heatmap opacity for --out, 0..1 (default 0.5)")
    p.add_argument("--head-fusion", default="mean", choices=("mean", "max"),
                   help="how --method rollout fuses a ViT's attention heads (default mean, as Abnar & Zuidema)")
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

    p = sub.add_parser("faithfulness", help="deletion / insertion scores of a heatmap, beside a random map's")
    _add_explain_arguments(p, METHODS)
    p.add_argument("--steps", type=int, default=32, help="deletion / insertion steps (default 32)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random reference map and of tie order (default 0)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_faithfulness)

    p = sub.add_parser("sanity", help="model-randomisation check: how the map changes as blocks are re-initialised")
    _add_explain_arguments(p, METHODS)
    p.add_argument("--seed", type=int, default=0, help="seed of the re-initialisation (default 0)")
    p.add_argument("--max-steps", type=int, default=None, metavar="N", help="stop after N blocks (default: all)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_sanity)

    p = sub.add_parser("pack", help="a slide pack: figures as 1920 px PNGs, numbers as CSV, settings.json, commands.sh")
    p.add_argument("image", metavar="IMG")
    p.add_argument("--models", nargs="+", required=True, metavar="M", help="catalog names")
    p.add_argument("--weights", default="default", help="weights for every model: 'default' or 'none'")
    p.add_argument("--methods", nargs="+", default=["gradcam"], metavar="METHOD", help="default gradcam")
    p.add_argument("--target", default=None, metavar="INDEX|LABEL", help="class index or label (default: each model's top-1)")
    p.add_argument("--faithfulness", action="store_true", help="add deletion / insertion scores (slower)")
    p.add_argument("--steps", type=int, default=32, help="steps for --faithfulness (default 32)")
    p.add_argument("--device", default="auto", help="auto (default: the GPU when PyTorch sees one), cpu, cuda, cuda:N or mps")
    p.add_argument("--out", required=True, metavar="ZIP")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_pack)

    p = sub.add_parser("methods", help="the attribution methods")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_methods)
    return parser


def _add_explain_arguments(p: argparse.ArgumentParser, methods) -> None:
    p.add_argument("image", metavar="IMG")
    add_model_arguments(p)
    p.add_argument("--method", default="gradcam", help=f"one of {', '.join(methods)} (default gradcam)")
    p.add_argument("--layer", default=None, help="dotted layer name for the Grad-CAM methods (default: the model's last spatial layer)")
    p.add_argument("--target", default=None, metavar="INDEX|LABEL", help="class index or label (default: the top-1 class)")


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
    exp = explain(loaded, image, method=args.method, layer=args.layer, target=args.target, head_fusion=args.head_fusion)
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
    rows = [
        [i.name + (" (default)" if i.name == default else ""), i.type, " x ".join(map(str, i.map_shape)),
         "" if i.layout.kind == "NCHW" else f"{i.layout.kind} {' x '.join(map(str, i.output_shape))}"]
        for i in layers
    ]
    print(format_table(rows, ["layer", "type", "map (C x H x W)", "read from"]))
    from viz.layers import describe_layers

    left_out = [i for i in describe_layers(loaded) if i.note]
    if left_out:
        print(f"{len(left_out)} layers left out ({left_out[0].name}, ...): {left_out[0].note}")
    return 0


def cmd_methods(args) -> int:
    from viz.cam import list_methods

    methods = list_methods()
    if args.json:
        emit_json([m.to_dict() for m in methods])
        return 0
    print(format_table([[m.name, m.title, "yes" if m.uses_layer else "no", m.passes] for m in methods], ["method", "name", "layer", "cost"]))
    return 0


def cmd_faithfulness(args) -> int:
    from backbones.inference.images import load_image
    from viz.quality import score_faithfulness

    image = load_image(args.image)
    loaded = load_from_args(args)
    f = score_faithfulness(loaded, image, method=args.method, layer=args.layer, target=args.target, steps=args.steps, seed=args.seed)
    if args.json:
        emit_json(f.to_dict())
        return 0
    where = f" at {f.layer}" if f.layer else ""
    print(f"{loaded.describe()}: {f.method}{where}, target {f.target.label} (class {f.target.index}, p={f.target.prob:.3f})")
    rows = [
        ["deletion (lower is better)", f"{f.score.deletion_auc:.3f}", f"{f.random.deletion_auc:.3f}"],
        ["insertion (higher is better)", f"{f.score.insertion_auc:.3f}", f"{f.random.insertion_auc:.3f}"],
    ]
    print(format_table(rows, ["AUC", f.method, "random map"]))
    print(f"{f.steps} steps, {f.forward_passes} batched forward passes")
    return 0


def cmd_sanity(args) -> int:
    from backbones.inference.images import load_image
    from viz.quality import run_sanity_check

    image = load_image(args.image)
    loaded = load_from_args(args)
    check = run_sanity_check(loaded, image, method=args.method, layer=args.layer, target=args.target, seed=args.seed,
                             max_steps=args.max_steps)
    if args.json:
        emit_json(check.to_dict())
        return 0
    print(f"{loaded.describe()}: {check.method}, target {check.target.label} (class {check.target.index})")
    print("blocks re-initialised cumulatively, from the classifier down; 1.0 = the map did not change")
    rows = [[s.randomized, f"{s.spearman:.3f}", f"{s.ssim:.3f}"] for s in check.steps]
    print(format_table(rows, ["randomised down to", "spearman", "ssim"]))
    return 0


def cmd_pack(args) -> int:
    from backbones.inference.images import load_image
    from backbones.inference.predict import predict
    from backbones.zoo.models import load_model
    from viz.cam import explain_methods
    from viz.inputs import get_device_dtype
    from viz.pack import build_pack, render_explanations_figure, safe_name
    from viz.quality import score_explanations

    image = load_image(args.image)
    figures, predictions, rows, settings = {}, [], [], {"image": args.image, "models": [], "weights": {}, "layer": {},
                                                       "target": args.target, "methods": args.methods, "device": {}}
    # Argument lists, quoted when the pack is written (viz.pack.format_command): names stay names.
    commands: list = [["python", "-m", "viz", "pack", args.image, "--models", *args.models, "--methods", *args.methods,
                       *(["--weights", args.weights] if args.weights != "default" else []),
                       *(["--target", args.target] if args.target else []),
                       *(["--faithfulness", "--steps", args.steps] if args.faithfulness else []), "--out", "pack.zip"]]
    for name in args.models:
        loaded = load_model(name, weights=args.weights, device=args.device)
        exps = explain_methods(loaded, image, methods=args.methods, target=args.target)
        scores = score_explanations(loaded, image, exps, steps=args.steps) if args.faithfulness else None
        captions = [f"deletion {s.score.deletion_auc:.2f} (random {s.random.deletion_auc:.2f})\n"
                    f"insertion {s.score.insertion_auc:.2f} (random {s.random.insertion_auc:.2f})" for s in scores or []]
        figures[safe_name(loaded.name)] = render_explanations_figure(image, exps, title=loaded.describe(), captions=captions or None)
        settings["models"].append(loaded.name)
        settings["weights"][loaded.name] = loaded.weights
        settings["layer"][loaded.name] = next((e.layer for e in exps if e.layer), None)
        settings["device"][loaded.name] = str(get_device_dtype(loaded.model)[0])
        predictions += [{"model": loaded.name, **t.to_dict()} for t in predict(loaded, [image])[0].topk]
        commands.append(f"figures/{safe_name(loaded.name)}.png: one heatmap overlay per panel")
        model_args = ["--model", loaded.name, "--weights", args.weights]
        for i, e in enumerate(exps):
            layer = ["--layer", e.layer] if e.layer else []
            commands.append(["python", "-m", "viz", "cam", args.image, *model_args, "--method", e.method, *layer,
                             "--target", e.target.index, "--out", f"{safe_name(loaded.name + '_' + e.method)}.png"])
            row = {"model": loaded.name, "method": e.method, "layer": e.layer, "target_index": e.target.index,
                   "target_label": e.target.label, "target_prob": e.target.prob}
            if scores:
                row.update({k: v for k, v in scores[i].to_dict().items() if k.endswith("_auc")})
                commands.append(["python", "-m", "viz", "faithfulness", args.image, *model_args, "--method", e.method,
                                 *layer, "--target", e.target.index, "--steps", args.steps, "--json"])
            rows.append(row)
    data = build_pack(figures, {"predictions": predictions, "explanations": rows}, settings, commands)
    _write(args.out, lambda p: Path(p).write_bytes(data))
    files = [f"figures/{n}.png" for n in figures] + ["tables/predictions.csv", "tables/explanations.csv", "settings.json", "commands.sh"]
    summary = {"out": args.out, "files": files}
    if args.json:
        emit_json(summary)
        return 0
    print(f"wrote {summary['out']}: {', '.join(summary['files'])}")
    return 0


def main(argv=None) -> int:
    return run(build_parser(), argv)
