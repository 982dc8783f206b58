"""Memory held by the dashboard's decoded-image cache, against the unbounded cache it replaced.

The security review uploaded 16 PNGs of 8000x8000 16-bit pixels (about 134 KB each: flat colour compresses
well) and the server went from 1.4 GB to 10.4 GB, staying at 9 GB after the tab closed: the decode cache kept
every full-resolution image. Each variant here runs in its own subprocess and reports the peak and the
final resident set size after decoding N such images through:

- ``bounded``: :class:`backbones.inference.images.DecodedImageCache` with the server default (256 MiB),
  which keeps 2048 px previews and evicts least recently used images;
- ``unbounded``: a plain dict of full decodes (what ``st.cache_data(max_entries=64)`` did).

    .venv/bin/python benchmarks/image_cache_memory.py [--images 16] [--side 8000] [--bound-mb 256]

The documented bound: RSS after N images stays under bound + the interpreter's baseline + one decode.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import io, json, resource, sys
import numpy as np
from PIL import Image
sys.path.insert(0, {root!r})
from backbones.inference.images import DecodedImageCache, load_image_with_info

def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")

variant, n, side, bound_mb = {variant!r}, {n}, {side}, {bound_mb}
base = rss_mb()
kept = DecodedImageCache(bound_mb * 2**20) if variant == "bounded" else {{}}
for i in range(n):
    arr = np.full((side, side), 1000 + i * 97, dtype=np.uint16)  # flat 16-bit grey: tiny PNG, huge decode
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    data = buf.getvalue()
    del arr, buf
    if variant == "bounded":
        kept.get(data, f"upload{{i}}.png")
    else:
        kept[i] = load_image_with_info(data, name=f"upload{{i}}.png")
import ctypes
ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed arenas back, so RSS counts what is still held
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
held = kept.nbytes / 2**20 if variant == "bounded" else sum(v[0].width * v[0].height * 3 for v in kept.values()) / 2**20
print(json.dumps({{"variant": variant, "base_mb": base, "final_mb": rss_mb(), "peak_mb": peak, "cached_mb": held,
                  "png_kb": len(data) / 1024}}))
"""


def measure(variant: str, n: int, side: int, bound_mb: int) -> dict:
    code = CHILD.format(root=str(ROOT), variant=variant, n=n, side=side, bound_mb=bound_mb)
    env = {"BACKBONES_MAX_IMAGE_PIXELS": str(side * side + 1), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--side", type=int, default=8000)
    parser.add_argument("--bound-mb", type=int, default=256)
    args = parser.parse_args()
    rows = [measure(v, args.images, args.side, args.bound_mb) for v in ("bounded", "unbounded")]
    print(f"{args.images} PNGs of {args.side}x{args.side} 16-bit ({rows[0]['png_kb']:.0f} KB each), bound {args.bound_mb} MiB\n")
    print("| cache | cached (MiB) | RSS after (MiB) | peak RSS (MiB) | RSS growth over baseline (MiB) |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['variant']} | {r['cached_mb']:.0f} | {r['final_mb']:.0f} | {r['peak_mb']:.0f} | {r['final_mb'] - r['base_mb']:.0f} |")
    bounded, unbounded = rows
    print(f"\nbounded / unbounded RSS growth: {(bounded['final_mb'] - bounded['base_mb']) / (unbounded['final_mb'] - unbounded['base_mb']):.3f}")
    one_decode = args.side * args.side * 3 * 2 / 2**20  # 16-bit decode, then its 8-bit RGB copy
    ok = bounded["final_mb"] - bounded["base_mb"] <= args.bound_mb + one_decode
    print(f"within the documented bound (bound + one decode = {args.bound_mb + one_decode:.0f} MiB): {ok}")


if __name__ == "__main__":
    main()
