"""How much does our Grad-CAM cost next to the physical floor and next to pytorch-grad-cam?

In one run, on the same model, layer, input and class, at batch 1 on CPU:

* ``fwd+bwd``: one forward pass and one backward pass of the class score (``.backward()``,
  parameter gradients included): what any gradient method must at least pay;
* ``ours``: :func:`viz.cam.explain_tensor` (captum LayerGradCam on a private view,
  bilinear upsampling, normalisation, the target's probability from the same pass);
* ``ours e2e``: :func:`viz.cam.explain` from the PIL photo (preprocessing and mapping
  the heatmap back onto the 512x600 original included);
* ``pytorch-grad-cam``: ``pytorch_grad_cam.GradCAM`` (PyPI ``grad-cam``), constructed
  once, called with ``ClassifierOutputTarget``.

The candidates run interleaved, round after round, so drift in machine load
hits all of them alike; the table gives medians and ratios::

    python benchmarks/cam_speed.py                       # resnet18 resnet50 efficientnet_lite0
    python benchmarks/cam_speed.py --repeats 30 --threads 2 --json

Target: ours <= 1.3x fwd+bwd, and no slower than pytorch-grad-cam. Ours is well
under the fwd+bwd floor because captum's Grad-CAM differentiates only down to the
layer (``torch.autograd.grad`` w.r.t. its output: no parameter gradients, no
backward through the trunk); ``ours / forward`` shows what that costs over a
plain inference pass.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backbones.inference.images import load_image  # noqa: E402
from backbones.zoo.models import load_model  # noqa: E402
from viz.cam import explain, explain_tensor  # noqa: E402
from viz.layers import default_layer  # noqa: E402

DEFAULT_MODELS = ("resnet18", "resnet50", "efficientnet_lite0")


def _photo() -> Path:
    import matplotlib

    return Path(matplotlib.__file__).resolve().parent / "mpl-data" / "sample_data" / "grace_hopper.jpg"


def _load(name: str):
    # Only the bundled models have real weights offline; speed does not depend on the values.
    return load_model(name) if name.startswith("efficientnet_lite") else load_model(name, weights="none")


def measure(name: str, *, repeats: int, warmup: int) -> dict:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    image = load_image(_photo())
    ours = _load(name)
    layer = default_layer(ours)
    x = ours.preprocessing(image).unsqueeze(0)
    with torch.inference_mode():
        target = int(ours.model(x)[0].argmax())

    # Separate instances for the peers: .backward() writes parameter gradients and
    # pytorch-grad-cam keeps hooks on its model; ours must stay untouched.
    floor_model = _load(name).model
    pgc_model = _load(name).model
    pgc = GradCAM(model=pgc_model, target_layers=[pgc_model.get_submodule(layer)])
    pgc_targets = [ClassifierOutputTarget(target)]

    def forward_backward():
        floor_model.zero_grad(set_to_none=True)
        floor_model(x)[0, target].backward()

    def ours_tensor():
        explain_tensor(ours, x, method="gradcam", layer=layer, target=target)

    def ours_e2e():
        explain(ours, image, method="gradcam", layer=layer, target=target)

    def pytorch_grad_cam():
        pgc_model.zero_grad(set_to_none=True)
        pgc(input_tensor=x, targets=pgc_targets)

    def forward():
        with torch.inference_mode():
            floor_model(x)

    candidates = {
        "forward": forward,
        "fwd+bwd": forward_backward,
        "ours": ours_tensor,
        "ours e2e": ours_e2e,
        "pytorch-grad-cam": pytorch_grad_cam,
    }
    times: dict[str, list[float]] = {k: [] for k in candidates}
    for round_ in range(warmup + repeats):
        for key, fn in candidates.items():
            start = time.perf_counter()
            fn()
            elapsed = time.perf_counter() - start
            if round_ >= warmup:
                times[key].append(elapsed * 1000)
    pgc.activations_and_grads.release()
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "model": name,
        "layer": layer,
        "median_ms": med,
        "ours_over_fwd_bwd": med["ours"] / med["fwd+bwd"],
        "ours_over_forward": med["ours"] / med["forward"],
        "ours_over_pytorch_grad_cam": med["ours"] / med["pytorch-grad-cam"],
        "repeats": repeats,
    }


def markdown(results: list[dict], threads: int) -> str:
    lines = [
        f"Grad-CAM at batch 1, CPU, {threads} threads, torch {torch.__version__}, {platform.machine()}; "
        "medians of interleaved runs (ms)",
        "",
        "| model | layer | forward | fwd+bwd | ours | ours / fwd+bwd | ours / forward | pytorch-grad-cam "
        "| ours / pytorch-grad-cam | ours e2e (photo in, 600x512 map out) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        m = r["median_ms"]
        lines.append(
            f"| {r['model']} | {r['layer']} | {m['forward']:.1f} | {m['fwd+bwd']:.1f} | {m['ours']:.1f} | "
            f"{r['ours_over_fwd_bwd']:.2f}x | {r['ours_over_forward']:.2f}x | {m['pytorch-grad-cam']:.1f} | {r['ours_over_pytorch_grad_cam']:.2f}x | "
            f"{m['ours e2e']:.1f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", default=list(DEFAULT_MODELS))
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", action="store_true", help="one JSON document instead of the table")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = []
    for name in args.models:
        print(f"measuring {name} ...", file=sys.stderr, flush=True)
        results.append(measure(name, repeats=args.repeats, warmup=args.warmup))
    if args.json:
        json.dump({"threads": torch.get_num_threads(), "results": results}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(markdown(results, torch.get_num_threads()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
