"""Server-side render time of each dashboard page, cold (empty caches) and warm (cached).

Runs every page with Streamlit's AppTest on the default selection and a sample photo,
in one process on this machine, and prints a markdown table. Cold = all st.cache_* and
the model cache cleared first; warm = the same page run again.

    .venv/bin/python benchmarks/app_latency.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PAGES = ["compare", "architecture", "predict", "explain", "evaluate", "training", "models"]


def run_page(page: str):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=900)
    at.switch_page(f"views/{page}.py")
    t0 = time.perf_counter()
    at.run()
    elapsed = time.perf_counter() - t0
    if at.exception:
        raise RuntimeError(f"{page}: {at.exception[0].message}")
    return at, elapsed


def clear_caches() -> None:
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="warm runs per page (median reported)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="app-latency-"))
    os.environ.setdefault("BACKBONES_CACHE_DIR", str(tmp / "cache"))
    os.environ.setdefault("BACKBONES_RESULTS_DB", str(tmp / "results.sqlite"))
    import torch

    rows = []
    for page in PAGES:
        clear_caches()
        _, cold = run_page(page)
        warm = []
        for _ in range(args.repeat):
            at, t = run_page(page)
            warm.append(t)
        rows.append((page, cold, statistics.median(warm)))
        print(f"{page}: cold {cold:.2f} s, warm {statistics.median(warm):.3f} s", file=sys.stderr)
    print(f"\nServer-side render time per page (AppTest, torch threads {torch.get_num_threads()}, {os.cpu_count()} cores)\n")
    print("| page | cold (s) | warm (s) | cold / warm |")
    print("|---|---:|---:|---:|")
    for page, cold, warm in rows:
        print(f"| {page} | {cold:.2f} | {warm:.3f} | {cold / warm:.0f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
