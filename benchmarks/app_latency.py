"""Server-side time of each dashboard page: the cold first render, and the warm rerun after one widget change.

Everything runs in one process with Streamlit's AppTest, on the default selection (and the default sample
photo), beside a trivial one-line page measured the same way in the same run, so the table reads as ratios:

- **cold**: every ``st.cache_*`` (and with it the shared model cache) cleared, a fresh cache folder and
  results database, a new session, and the page rendered first. Python modules are already imported, and
  installed Streamlit components scanned, as in a server that has started; the very first render in the
  process (imports included) is reported separately.
- **warm**: in that same session (not a new one), ONE representative widget on the page is changed and
  the script reruns, as when a user moves a slider. Each change sets a value the session has not had yet
  (while the widget has such values), so a cache keyed by that value cannot hide the work.

Each figure is the median over ``--repeat`` cold sessions (with ``--changes`` widget changes each).

``--first-paint`` measures what a visitor of a fresh server sees instead: a new ``streamlit run`` server
(fresh caches, offline, nothing imported yet) per try, then headless Chromium opens it and the clock runs
from the browser's first request to the page's title and to its table being painted; a trivial one-line
page on its own fresh server is timed the same way in the same run. Most of a fresh server's wait used to
be importing torch, timm and captum, which the first paint does not need.

    .venv/bin/python benchmarks/app_latency.py [--repeat 3] [--changes 3] [--pages explain predict]
    .venv/bin/python benchmarks/app_latency.py --first-paint [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

APP = ROOT / "dashboard" / "app.py"
TRIVIAL_PAGE = 'import streamlit as st; st.slider("x", 0, 10, key="x")\n'
TIMEOUT = 900  # first model loads on 2 cores take a while


@dataclass(frozen=True)
class Page:
    """A page of the app and the widget a user typically changes on it."""

    name: str  # views/<name>.py; "" is the trivial page
    widget: str
    change: Callable  # (AppTest, i) -> None: the i-th change of the widget (a value new to the session)


def _set(kind: str, key: str, values: tuple) -> Callable:
    return lambda at, i: getattr(at, kind)(key=key).set_value(values[i % len(values)])


def _click(key: str) -> Callable:
    return lambda at, i: at.button(key=key).click()


def _type(key: str, template: str) -> Callable:
    return lambda at, i: at.text_input(key=key).input(template.format(i + 1))


PAGES = [
    Page("compare", "x axis radio `cmp_x`", _set("radio", "cmp_x", ("params", "size", "macs"))),
    Page("architecture", "Next button `arch_next_s0`", _click("arch_next_s0")),
    Page("predict", "top-k slider `predict_topk`", _set("slider", "predict_topk", (3, 7, 10, 1, 4, 6))),
    Page("explain", "opacity slider `explain_alpha`", _set("slider", "explain_alpha", (0.7, 0.3, 0.9, 0.6, 0.4, 0.8))),
    Page("evaluate", "batch size `eval_batch`", _set("selectbox", "eval_batch", (32, 8, 16))),
    Page("training", "run name `train_name_0`", _type("train_name_0", "VGG19 baseline {}")),
    Page("models", "source radio `models_source`", _set("radio", "models_source", ("curated", "torchvision", "timm", "all"))),
]
TRIVIAL = Page("", "slider `x`", _set("slider", "x", (7, 3, 9, 1, 5, 8)))


def clear_caches() -> None:
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()  # holds the shared model cache and the decoded-image cache


def _run(at, what: str) -> float:
    t0 = time.perf_counter()
    at.run()
    elapsed = time.perf_counter() - t0
    if at.exception:
        raise RuntimeError(f"{what}: {at.exception[0].message}")
    return elapsed


_component_scan = []  # the first session's scan of installed Streamlit components, shared by the rest


def _session(script: Path):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(script), default_timeout=TIMEOUT)
    # AppTest scans every installed distribution for Streamlit components on each session's first run
    # (1-3 s here, more than most pages); a server scans once at startup, so the sessions here share one.
    if _component_scan and hasattr(at, "_bidi_component_manager"):
        at._bidi_component_manager = _component_scan[0]
    return at


def _keep_component_scan(at) -> None:
    if not _component_scan and getattr(at, "_bidi_component_manager", None) is not None:
        _component_scan.append(at._bidi_component_manager)


def new_session(page: Page, trivial_file: Path):
    if not page.name:
        return _session(trivial_file)
    at = _session(APP)
    at.switch_page(f"views/{page.name}.py")
    return at


def measure(page: Page, trivial_file: Path, scratch: Path, *, repeat: int, changes: int) -> tuple[list[float], list[float]]:
    """``(cold render times, warm rerun times)`` of one page, in seconds."""
    label = page.name or "trivial page"
    cold, warm = [], []
    for r in range(repeat):
        clear_caches()
        # A fresh cache folder and results database: nothing a previous session stored on disk helps.
        os.environ["BACKBONES_CACHE_DIR"] = str(scratch / f"cache-{label}-{r}")
        os.environ["BACKBONES_RESULTS_DB"] = str(scratch / f"results-{label}-{r}.sqlite")
        at = new_session(page, trivial_file)
        cold.append(_run(at, f"{label}, cold"))
        _keep_component_scan(at)
        for i in range(changes):
            page.change(at, i)
            warm.append(_run(at, f"{label}, change {i + 1} of {page.widget}"))
    return cold, warm


def first_render_in_process(trivial_file: Path, scratch: Path) -> float:
    """The app's default page rendered first in this process: imports (torch, timm, plotly) included."""
    os.environ["BACKBONES_CACHE_DIR"] = str(scratch / "cache-first")
    os.environ["BACKBONES_RESULTS_DB"] = str(scratch / "results-first.sqlite")
    return _run(_session(APP), "first render in process")


def paint_times(url: str, *, table: bool) -> tuple[float, float | None]:
    """Seconds from the browser's first request to the page's title, and to its first table, being painted."""
    from playwright.sync_api import sync_playwright

    from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            t0 = time.perf_counter()
            page.goto(url, wait_until="commit", timeout=120_000)
            page.wait_for_selector("h1, [data-testid='stSlider']", state="visible", timeout=120_000)
            title = time.perf_counter() - t0
            painted = None
            if table:
                page.wait_for_selector("[data-testid='stDataFrame'] canvas, [data-testid='stDataFrame'] table",
                                       state="visible", timeout=120_000)
                painted = time.perf_counter() - t0
            return title, painted
        finally:
            browser.close()


def first_paint(repeat: int, checkouts: list[Path]) -> int:
    """Fresh servers of the app (of each checkout) and of a trivial page, each opened once by headless Chromium."""
    from tests.e2e.conftest import start_app, stop_app

    scratch = Path(tempfile.mkdtemp(prefix="first-paint-"))
    trivial_dir = scratch / "trivial"
    (trivial_dir / "dashboard").mkdir(parents=True)
    (trivial_dir / "dashboard" / "app.py").write_text(TRIVIAL_PAGE)
    (trivial_dir / ".streamlit").mkdir()  # the app's server settings for both
    (trivial_dir / ".streamlit" / "config.toml").write_bytes((ROOT / ".streamlit" / "config.toml").read_bytes())
    servers = {"trivial": trivial_dir, **{str(c): c for c in checkouts}}
    results: dict[str, list] = {what: [] for what in servers}
    for r in range(repeat):  # interleaved, so a busy moment on the machine hits every server alike
        for what, cwd in servers.items():
            tmp = scratch / f"{len(results[what])}-{abs(hash(what))}"
            tmp.mkdir()
            # The checkout's own code first on the path (an editable install may point elsewhere).
            env = {"BACKBONES_OFFLINE": "1", "BACKBONES_RESULTS_DB": str(tmp / "results.sqlite"), "PYTHONPATH": str(cwd)}
            proc, url, _ = start_app(tmp, extra_env=env, cwd=cwd)
            try:
                results[what].append(paint_times(url, table=what != "trivial"))
            finally:
                stop_app(proc)
            print(f"{what} {r + 1}/{repeat}: {results[what][-1]}", file=sys.stderr)
    trivial = statistics.median(t for t, _ in results["trivial"])
    print(f"\nFirst paint of a fresh server (headless Chromium {chromium_version()}, {os.cpu_count()} cores; "
          f"median of {repeat} fresh servers each; from the browser's first request)\n")
    print("| page | title painted (s) | table painted (s) | title / trivial |")
    print("|---|---:|---:|---:|")
    print(f"| trivial one-line page | {trivial:.2f} | — | 1x |")
    for what in servers:
        if what == "trivial":
            continue
        title = statistics.median(t for t, _ in results[what])
        table = statistics.median(p for _, p in results[what])
        print(f"| Compare, first visit ({what}) | {title:.2f} | {table:.2f} | {title / trivial:.1f}x |")
    return 0


def chromium_version() -> str:  # noqa: N802 (reads like the constant it reports)
    import subprocess

    from tests.e2e.conftest import CHROMIUM

    try:
        return subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "chromium"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="cold sessions per page (median reported)")
    parser.add_argument("--changes", type=int, default=3, help="widget changes per session (median reported)")
    parser.add_argument("--pages", nargs="+", choices=[p.name for p in PAGES], default=None, help="only these pages")
    parser.add_argument("--first-paint", action="store_true", help="fresh servers in headless Chromium instead")
    parser.add_argument("--checkout", nargs="+", type=Path, default=[ROOT],
                        help="with --first-paint: the checkouts to serve side by side (e.g. this one and an older one)")
    args = parser.parse_args()
    if args.first_paint:
        return first_paint(args.repeat, [c.resolve() for c in args.checkout])
    scratch = Path(tempfile.mkdtemp(prefix="app-latency-"))
    trivial_file = scratch / "trivial_page.py"
    trivial_file.write_text(TRIVIAL_PAGE)

    # Streamlit's own imports first (the trivial page), so the app's first render counts only the app's.
    measure(TRIVIAL, trivial_file, scratch, repeat=1, changes=1)
    first = first_render_in_process(trivial_file, scratch)
    print(f"first render in process (compare, imports included): {first:.2f} s", file=sys.stderr)

    import streamlit
    import torch

    pages = [p for p in PAGES if args.pages is None or p.name in args.pages]
    results = {}
    for page in [TRIVIAL, *pages]:
        cold, warm = measure(page, trivial_file, scratch, repeat=args.repeat, changes=args.changes)
        results[page.name] = (statistics.median(cold), statistics.median(warm))
        print(f"{page.name or 'trivial page'}: cold {results[page.name][0]:.3f} s, "
              f"warm {results[page.name][1] * 1000:.0f} ms", file=sys.stderr)

    base_cold, base_warm = results[""]
    print(f"\nServer-side time per page (AppTest, streamlit {streamlit.__version__}, torch threads "
          f"{torch.get_num_threads()}, {os.cpu_count()} cores; median of {args.repeat} cold sessions × "
          f"{args.changes} widget changes)\n")
    print("| page | widget changed | cold first render (s) | cold / trivial | warm rerun (ms) | warm / trivial |")
    print("|---|---|---:|---:|---:|---:|")
    print(f"| trivial one-line page | {TRIVIAL.widget} | {base_cold:.3f} | 1x | {base_warm * 1000:.0f} | 1x |")
    for page in pages:
        cold, warm = results[page.name]
        print(f"| {page.name} | {page.widget} | {cold:.2f} | {cold / base_cold:.0f}x | "
              f"{warm * 1000:.0f} | {warm / base_warm:.1f}x |")
    print(f"\nFirst render in this process (Compare, Python imports included): {first:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
