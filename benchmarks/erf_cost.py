"""What the effective receptive field costs per layer, in forward + backward passes of the same model (issue 24).

For each model (untrained unless its weights are here, as ``summary --erf`` does), in one run, on the CPU:

* ``step``: one forward + backward pass of ``--images`` sample photos to the input (the unit: what one
  layer's measurement at most costs, a backward from the output);
* ``erf``: :func:`backbones.summary.erf.measure_erf` over the model's stages (its default layers),
  divided by the number of layers measured: seconds per layer.

The candidates run interleaved, round after round, so drift in machine load hits them alike; the
table gives medians, seconds per layer per image and each model's ratio of ``erf`` per layer to ``step``::

    python benchmarks/erf_cost.py                                   # resnet18 resnet50 mobilenet_v2, 4 images
    python benchmarks/erf_cost.py --models resnet18 vit_b_16 --images 2 --repeats 3 --threads 2 --json
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

from backbones.inference.logits import logits_of  # noqa: E402
from backbones.summary.erf import make_inputs, measure_erf  # noqa: E402
from backbones.zoo.catalog import get_entry  # noqa: E402
from backbones.zoo.models import build_architecture  # noqa: E402


def time_step(model, x: torch.Tensor) -> float:
    """One forward + backward of ``x`` to the input, seconds."""
    x = x.clone().requires_grad_()
    start = time.perf_counter()
    logits_of(model(x)).sum().backward()
    return time.perf_counter() - start


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["resnet18", "resnet50", "mobilenet_v2"])
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    built = {}
    for name in args.models:
        entry = get_entry(name)
        model = build_architecture(entry).eval()
        for param in model.parameters():
            param.requires_grad_(False)  # the step's backward goes to the input only, like the ERF's
        x, _ = make_inputs(entry.preprocessing, entry.input_size, args.images)
        built[name] = (model, x)
    times: dict[str, dict[str, list[float]]] = {n: {"step": [], "erf_per_layer": []} for n in args.models}
    layers: dict[str, int] = {}
    for model, x in built.values():  # warm-up, untimed: first-call allocations and kernel choices
        time_step(model, x)
    for _ in range(args.repeats):
        for name, (model, x) in built.items():
            times[name]["step"].append(time_step(model, x))
            erf = measure_erf(model, images=args.images, input_size=tuple(x.shape[1:]))
            layers[name] = len(erf.layers)
            times[name]["erf_per_layer"].append(erf.seconds / len(erf.layers))
    rows = []
    for name in args.models:
        step = statistics.median(times[name]["step"])
        per_layer = statistics.median(times[name]["erf_per_layer"])
        rows.append({
            "model": name, "layers": layers[name], "images": args.images, "step_s": round(step, 4),
            "erf_per_layer_s": round(per_layer, 4), "erf_per_layer_per_image_s": round(per_layer / args.images, 4),
            "ratio_to_step": round(per_layer / step, 3),
        })
    meta = {"threads": args.threads, "repeats": args.repeats, "torch": torch.__version__, "machine": platform.machine()}
    if args.json:
        json.dump({"meta": meta, "rows": rows}, sys.stdout, indent=2)
        print()
        return 0
    print(f"ERF cost per layer on the CPU ({args.threads} threads, median of {args.repeats}, {args.images} images)")
    print(f"{'model':<16}{'layers':>7}{'step s':>9}{'ERF s/layer':>13}{'s/layer/image':>15}{'ratio':>7}")
    for r in rows:
        print(f"{r['model']:<16}{r['layers']:>7}{r['step_s']:>9.3f}{r['erf_per_layer_s']:>13.3f}"
              f"{r['erf_per_layer_per_image_s']:>15.3f}{r['ratio_to_step']:>7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
