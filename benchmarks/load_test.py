"""N simultaneous browser sessions against `streamlit run`: top-5 on /predict, then a CAM on /explain.

One Debian chromium, N browser contexts (one per user) driven with Playwright's async API, so the
browser side stays light on a small machine. Each session opens /predict, uploads a real photo and
waits for the top-5 chart, then opens /explain, adds a backbone in the sidebar (rotating the three
with offline weights: EfficientNet-Lite0/1/2), picks it and a method (rotating Grad-CAM/Saliency),
uploads the photo and waits for the overlay. A sampler reads the server's RSS (process tree, from
/proc) every 0.5 s.

    .venv/bin/python benchmarks/load_test.py --sessions 10

Prints a markdown table; exit code 1 if any session failed or the peak RSS exceeds --max-rss-mb.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, start_app, stop_app  # noqa: E402

#: The bound documented for the README: the whole server process tree, 10 sessions.
DEFAULT_MAX_RSS_MB = 4096
BACKBONES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
DISPLAY = {"efficientnet_lite0": "EfficientNet-Lite0", "efficientnet_lite1": "EfficientNet-Lite1", "efficientnet_lite2": "EfficientNet-Lite2"}
METHOD_TITLES = {"gradcam": "Grad-CAM", "saliency": "Saliency"}
ERROR_SELECTORS = ('[data-testid="stException"]', '[data-testid="stAlertContentError"]')


def default_photo() -> Path:
    import matplotlib

    return Path(matplotlib.__file__).resolve().parent / "mpl-data" / "sample_data" / "grace_hopper.jpg"


@dataclass
class SessionResult:
    """One simulated user: per-action seconds (upload -> result shown) and what went wrong."""

    index: int
    backbone: str
    method: str
    times: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        return {"index": self.index, "backbone": self.backbone, "method": self.method, "times": dict(self.times), "ok": self.ok, "error": self.error}


@dataclass
class LoadResult:
    sessions: list[SessionResult]
    peak_rss_mb: float
    peak_hwm_mb: float
    wall_s: float

    @property
    def succeeded(self) -> int:
        return sum(s.ok for s in self.sessions)

    def action_times(self, action: str) -> list[float]:
        return [s.times[action] for s in self.sessions if action in s.times]

    def to_markdown(self) -> str:
        n = len(self.sessions)
        rows = [
            "| metric | value |",
            "|---|---|",
            f"| sessions succeeded | {self.succeeded}/{n} |",
        ]
        for action in ("predict", "explain", "session"):
            times = self.action_times(action)
            if times:
                rows.append(f"| {action} p50 / p95 (s) | {percentile(times, 50):.1f} / {percentile(times, 95):.1f} (n={len(times)}) |")
        rows.append(f"| server peak RSS, process tree (MiB) | {self.peak_rss_mb:.0f} |")
        rows.append(f"| server VmHWM, main process (MiB) | {self.peak_hwm_mb:.0f} |")
        rows.append(f"| wall time (s) | {self.wall_s:.0f} |")
        return "\n".join(rows)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank-interpolated percentile (statistics.quantiles needs >= 2 values)."""
    if len(values) == 1:
        return values[0]
    cuts = statistics.quantiles(sorted(values), n=100, method="inclusive")
    return cuts[int(q) - 1]


# --- memory ---------------------------------------------------------------------------------
def _status_kb(pid: int, field_name: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _descendants(pid: int) -> list[int]:
    """pid and every process below it (streamlit may start helpers; torch may fork)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may contain spaces: the ppid follows the last ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


class RssSampler(threading.Thread):
    """Samples the RSS of a process tree every ``interval`` seconds; keeps the peak (kB)."""

    def __init__(self, pid: int, interval: float = 0.5):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_rss_kb = 0
        self.peak_hwm_kb = 0
        self._halt = threading.Event()

    def sample(self) -> None:
        total = sum(_status_kb(p, "VmRSS") for p in _descendants(self.pid))
        self.peak_rss_kb = max(self.peak_rss_kb, total)
        self.peak_hwm_kb = max(self.peak_hwm_kb, _status_kb(self.pid, "VmHWM"))

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)
        self.sample()


# --- one browser session --------------------------------------------------------------------
async def _busy(page) -> int:
    counts = [await page.locator(f'[data-testid="{t}"]').count() for t in ("stStatusWidget", "stSpinner", "stSkeleton")]
    return sum(counts)


async def wait_idle(page, timeout_s: float) -> None:
    """Async twin of tests.e2e.conftest.wait_idle: no 'Running…' widget, no spinner, twice in a row."""
    deadline = time.time() + timeout_s
    await page.wait_for_selector('[data-testid="stApp"]', timeout=timeout_s * 1000)
    await asyncio.sleep(1.0)
    while time.time() < deadline:
        if await _busy(page) == 0:
            await asyncio.sleep(0.7)
            if await _busy(page) == 0:
                return
        await asyncio.sleep(0.5)
    raise TimeoutError(f"the app kept running for {timeout_s:.0f} s")


async def shown_errors(page) -> list[str]:
    found = []
    for selector in ERROR_SELECTORS:
        boxes = page.locator(selector)
        for i in range(await boxes.count()):
            found.append(" ".join((await boxes.nth(i).inner_text()).split())[:300])
    return found


async def _pick(page, container, text: str, timeout_ms: float) -> None:
    """Open a Streamlit select/multiselect, type to filter, click the option whose label contains text."""
    field_input = container.locator("input").first
    await field_input.click(timeout=timeout_ms)
    await field_input.fill(text.split()[-1])
    await page.get_by_role("option", name=re.compile(re.escape(text))).first.click(timeout=timeout_ms)
    await page.keyboard.press("Escape")


async def run_session(browser, url: str, photo: Path, *, index: int, backbone: str, method: str = "gradcam", action_timeout_s: float = 600) -> SessionResult:
    """One user: top-5 on /predict, then a ``method`` map from ``backbone`` on /explain. Never raises."""
    result = SessionResult(index, backbone, method)
    timeout_ms = action_timeout_s * 1000
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    start = time.perf_counter()
    step = "open /predict"
    try:
        page = await context.new_page()
        page.set_default_timeout(timeout_ms)
        await page.goto(f"{url}/predict", timeout=timeout_ms)
        await wait_idle(page, action_timeout_s)

        step = "predict"
        t0 = time.perf_counter()
        await page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(str(photo))
        # A sample photo is preselected, so its chart is already there: wait for our photo's heading.
        await page.get_by_role("heading", name=photo.name).wait_for(timeout=timeout_ms)
        await wait_idle(page, action_timeout_s)
        await page.locator('[data-testid="stPlotlyChart"]').first.wait_for(timeout=timeout_ms)
        result.times["predict"] = time.perf_counter() - t0
        if errors := await shown_errors(page):
            raise RuntimeError(f"error shown: {errors[0]}")

        step = "open /explain"
        await page.goto(f"{url}/explain", timeout=timeout_ms)
        await wait_idle(page, action_timeout_s)
        step = "select backbone"
        if backbone != "efficientnet_lite0":
            sidebar = page.locator('[data-testid="stSidebar"] [data-testid="stMultiSelect"]').first
            if DISPLAY[backbone] not in await sidebar.inner_text():  # the Lite models start selected offline
                await _pick(page, sidebar, DISPLAY[backbone], timeout_ms)
                await wait_idle(page, action_timeout_s)
            await _pick(page, page.locator('[data-testid="stSelectbox"]').filter(has_text="Backbone").first, DISPLAY[backbone], timeout_ms)
            await wait_idle(page, action_timeout_s)
        if method != "gradcam":
            step = "select method"
            await _pick(page, page.locator('[data-testid="stSelectbox"]').filter(has_text="Method").first, METHOD_TITLES[method], timeout_ms)
            await wait_idle(page, action_timeout_s)
        step = "check the choices"
        chosen = await page.locator('[data-testid="stSelectbox"]').filter(has_text="Backbone").first.locator("input").first.input_value()
        if DISPLAY[backbone] not in chosen:
            raise RuntimeError(f"backbone picker shows {chosen!r}, wanted {DISPLAY[backbone]}")

        step = "explain"
        t0 = time.perf_counter()
        await page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(str(photo))
        # The photo's caption names the upload; the sample's overlay was there before it.
        await page.get_by_text(f"{photo.name} (").first.wait_for(timeout=timeout_ms)
        await wait_idle(page, action_timeout_s)
        await page.locator('[data-testid="stImage"] img').nth(1).wait_for(timeout=timeout_ms)
        await page.get_by_text("Target:").first.wait_for(timeout=timeout_ms)
        result.times["explain"] = time.perf_counter() - t0
        captions = await page.locator('[data-testid="stImage"]').nth(1).inner_text()
        if METHOD_TITLES[method] not in captions:
            raise RuntimeError(f"overlay caption {captions!r} does not name {METHOD_TITLES[method]}")
        if errors := await shown_errors(page):
            raise RuntimeError(f"error shown: {errors[0]}")
        result.times["session"] = time.perf_counter() - start
    except Exception as exc:  # noqa: BLE001 - a failed session is a result, not a crash
        result.error = f"{step}: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
    finally:
        try:
            await context.close()
        except Exception:  # noqa: BLE001 - the browser may already be gone after a timeout
            pass
    return result


async def drive_sessions(url: str, sessions: int, photo: Path, *, action_timeout_s: float, methods: tuple[str, ...]) -> list[SessionResult]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            jobs = [
                run_session(browser, url, photo, index=i, backbone=BACKBONES[i % len(BACKBONES)], method=methods[i % len(methods)], action_timeout_s=action_timeout_s)
                for i in range(sessions)
            ]
            return list(await asyncio.gather(*jobs))
        finally:
            await browser.close()


def run_load(sessions: int = 10, *, tmp: Path | None = None, photo: Path | None = None, timeout_s: float = 900, action_timeout_s: float = 600, methods: tuple[str, ...] = ("gradcam", "saliency")) -> LoadResult:
    """Start the app on an isolated cache, drive ``sessions`` users at once, always stop the server."""
    photo = photo or default_photo()
    with tempfile.TemporaryDirectory(prefix="load-test-") as scratch:
        base = Path(tmp or scratch)
        started = time.perf_counter()
        proc, url, log = start_app(base)
        sampler = RssSampler(proc.pid)
        sampler.start()
        try:
            try:
                results = asyncio.run(asyncio.wait_for(drive_sessions(url, sessions, photo, action_timeout_s=action_timeout_s, methods=methods), timeout_s))
            except TimeoutError:
                results = [SessionResult(i, BACKBONES[i % len(BACKBONES)], "?", error=f"overall timeout {timeout_s:.0f} s") for i in range(sessions)]
        finally:
            sampler.stop()
            stop_app(proc)
        if proc.returncode not in (0, -15, None) and not all(r.ok for r in results):
            print(f"server log tail:\n{log.read_text(errors='replace')[-2000:]}", file=sys.stderr)
        return LoadResult(results, sampler.peak_rss_kb / 1024, sampler.peak_hwm_kb / 1024, time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10, help="simultaneous browser sessions (default 10)")
    parser.add_argument("--timeout", type=float, default=900, help="overall limit in seconds (default 900)")
    parser.add_argument("--action-timeout", type=float, default=600, help="limit per page action in seconds (default 600)")
    parser.add_argument("--max-rss-mb", type=float, default=DEFAULT_MAX_RSS_MB, help=f"fail above this server peak RSS (default {DEFAULT_MAX_RSS_MB})")
    parser.add_argument("--photo", type=Path, default=None, help="photo to upload (default: matplotlib's grace_hopper.jpg)")
    parser.add_argument("--methods", default="gradcam,saliency", help="CAM methods to rotate (default gradcam,saliency)")
    args = parser.parse_args(argv)
    if args.sessions < 1:
        parser.error("--sessions must be at least 1")
    result = run_load(args.sessions, photo=args.photo, timeout_s=args.timeout, action_timeout_s=args.action_timeout, methods=tuple(args.methods.split(",")))
    print(result.to_markdown())
    print()
    print("| session | backbone | method | predict (s) | explain (s) | result |")
    print("|---|---|---|---|---|---|")
    for s in result.sessions:
        cells = [f"{s.times[a]:.1f}" if a in s.times else "-" for a in ("predict", "explain")]
        print(f"| {s.index} | {s.backbone} | {s.method} | {cells[0]} | {cells[1]} | {'ok' if s.ok else s.error} |")
    failed = result.succeeded < len(result.sessions)
    too_big = result.peak_rss_mb > args.max_rss_mb
    if too_big:
        print(f"peak RSS {result.peak_rss_mb:.0f} MiB exceeds --max-rss-mb {args.max_rss_mb:.0f}", file=sys.stderr)
    return 1 if failed or too_big else 0


if __name__ == "__main__":
    sys.exit(main())
