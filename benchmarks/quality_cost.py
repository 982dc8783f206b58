"""What a faithfulness score and a sanity check cost, in forward passes of the same model (issue 15).

In one run, on EfficientNet-Lite0 (bundled weights), grace_hopper.jpg, the top-1 class, CPU:

* ``forward``: one inference pass at batch 1 (the unit);
* ``gradcam``: :func:`viz.cam.explain_tensor`, Grad-CAM at ``bn2``;
* ``faithfulness``: :func:`viz.quality.score_explanations` of that Grad-CAM: the map and its
  smooth random reference, deletion and insertion, ``--steps`` steps, batched
  (the explanation itself not included);
* ``sanity``: :func:`viz.quality.run_sanity_check` with Grad-CAM over every block
  (the original explanation included).

The candidates run interleaved, round after round, so drift in machine load hits
them alike; the table gives medians and each one's ratio to ``forward``::

    python benchmarks/quality_cost.py                    # 32 steps, 5 rounds
    python benchmarks/quality_cost.py --steps 32 --repeats 5 --threads 2 --json
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
from viz.quality import list_cascade_blocks, run_sanity_check, score_explanations  # noqa: E402


def _photo() -> Path:
    import matplotlib

    return Path(matplotlib.__file__).resolve().parent / "mpl-data" / "sample_data" / "grace_hopper.jpg"


def measure(name: str, *, steps: int, repeats: int, warmup: int) -> dict:
    image = load_image(_photo())
    loaded = load_model(name)
    x = loaded.preprocessing(image).unsqueeze(0)
    exp = explain(loaded, image)  # also warms the layer table of the model
    blocks = len(list_cascade_blocks(loaded))
    passes = score_explanations(loaded, image, [exp], steps=steps)[0].forward_passes

    def forward():
        with torch.inference_mode():
            loaded.model(x)

    candidates = {
        "forward": forward,
        "gradcam": lambda: explain_tensor(loaded, x, method="gradcam", target=exp.target.index),
        "faithfulness": lambda: score_explanations(loaded, image, [exp], steps=steps),
        "sanity": lambda: run_sanity_check(loaded, image, method="gradcam"),
    }
    times: dict[str, list[float]] = {k: [] for k in candidates}
    for round_ in range(warmup + repeats):
        for key, fn in candidates.items():
            start = time.perf_counter()
            fn()
            if round_ >= warmup:
                times[key].append((time.perf_counter() - start) * 1000)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "model": name,
        "steps": steps,
        "blocks": blocks,
        "faithfulness_forward_passes": passes,
        "faithfulness_images": 3 + 2 * 2 * (steps - 1),
        "median_ms": med,
        "over_forward": {k: v / med["forward"] for k, v in med.items()},
        "repeats": repeats,
    }


def markdown(r: dict, threads: int) -> str:
    lines = [
        f"{r['model']}, CPU, {threads} threads, torch {torch.__version__}, {platform.machine()}; "
        f"medians of {r['repeats']} interleaved rounds",
        "",
        "| what | median ms | x one forward pass |",
        "|---|---:|---:|",
    ]
    notes = {
        "faithfulness": f" ({r['steps']} steps: {r['faithfulness_images']} images in {r['faithfulness_forward_passes']} batched passes)",
        "sanity": f" (Grad-CAM, {r['blocks']} blocks)",
    }
    for k, ms in r["median_ms"].items():
        lines.append(f"| {k}{notes.get(k, '')} | {ms:.1f} | {r['over_forward'][k]:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", action="store_true", help="one JSON document instead of the table")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = measure(args.model, steps=args.steps, repeats=args.repeats, warmup=args.warmup)
    if args.json:
        json.dump({"threads": torch.get_num_threads(), **result}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(markdown(result, torch.get_num_threads()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
