"""Retake the README's screenshots: every page at 1440x900 in Debian's chromium, one download in progress, Chinese.

    .venv/bin/python dashboard/screenshots/take.py [--only compare explain ...]

Runs `streamlit run dashboard/app.py` on a free port with a temporary cache (offline, so the first screen is what a
fresh machine shows), and a second one pointed at a loopback Hugging Face endpoint whose transfer stalls half-way,
for the download screenshot. Writes dashboard/screenshots/*.png. Needs /usr/bin/chromium and, for the Chinese
screenshot, a CJK font (Debian fonts-noto-cjk).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, start_app, stop_app  # noqa: E402

OUT = Path(__file__).resolve().parent
VIEWPORT = {"width": 1440, "height": 900}
# (file name, URL path, text that shows the page has finished its first screen)
PAGES = [
    ("compare", "compare", "Accuracy vs cost"),  # a first visit: the classic comparison of the curated backbones
    ("architecture", "architecture?models=alexnet", "Step through the layers"),
    ("predict", "predict", "What the model saw"),
    ("explain", "explain", "Deletion AUC"),
    ("evaluate", "evaluate", "Confusion"),
    ("transfer", "transfer", "Scores on"),
    ("architecture-erf", "architecture?models=resnet50", "Step through the layers"),
    ("training", "training", "Overfitting gap"),
    ("models", "models", "Download weights for"),
    ("explain-zh", "explain?lang=zh", "AUC"),
]


#: Pages whose screenshot shows the result of a button: (button label, text that shows the result).
CLICKS = {"architecture-erf": ("Measure ERF", "ERF map of layer")}


def shoot(page, url: str, ready_text: str, path: Path, *, scroll: int = 0, timeout_s: float = 300,
          click: tuple[str, str] | None = None) -> None:
    page.goto(url)
    page.get_by_text(ready_text).first.wait_for(timeout=timeout_s * 1000)
    time.sleep(8.0)  # tables and charts finish drawing
    if click:
        page.get_by_role("button", name=click[0]).first.click()
        page.get_by_text(click[1]).first.wait_for(timeout=timeout_s * 1000)
        page.get_by_text(click[1]).first.scroll_into_view_if_needed()
        time.sleep(6.0)
        page.mouse.move(900, 500)
        page.mouse.wheel(0, 520)  # the map under the table
        time.sleep(1.0)
    if scroll:
        page.mouse.move(900, 500)
        page.mouse.wheel(0, scroll)
        time.sleep(1.0)
    page.screenshot(path=str(path))
    print("wrote", path.relative_to(ROOT))


def download_screenshot(browser, tmp: Path) -> None:
    """A timm model served by a loopback Hub that stalls half-way: the progress bar, caught mid-transfer.

    Lite4 (52 MB): huggingface_hub reports progress per 10 MB, so half the file shows on the bar before the stall.
    """
    import timm
    import torch
    from safetensors.torch import save

    from tests.loopback import LoopbackServer

    torch.manual_seed(0)
    state = timm.create_model("tf_efficientnet_lite4", pretrained=False).state_dict()
    server = LoopbackServer(stall_s=60.0).start()
    server.add_hf_file("timm/tf_efficientnet_lite4.in1k", "model.safetensors", save({k: v.contiguous() for k, v in state.items()}))
    server.fail("stall-body", methods=("GET",))
    env = {"BACKBONES_OFFLINE": "0", "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": server.base_url, "HF_HOME": str(tmp / "hf"),
           "HF_HUB_DISABLE_TELEMETRY": "1", "BACKBONES_DOWNLOAD_TIMEOUT": "90", "NO_PROXY": "127.0.0.1,localhost"}
    proc, url, _ = start_app(tmp / "download", extra_env=env)
    try:
        page = browser.new_context(viewport=VIEWPORT).new_page()
        page.goto(f"{url}/predict?models=efficientnet_lite0,timm:tf_efficientnet_lite4")
        button = page.get_by_role("button", name="Download weights")
        button.first.wait_for(timeout=300_000)
        time.sleep(2.0)
        button.first.click()
        page.get_by_text("MB/s").first.wait_for(timeout=120_000)
        time.sleep(1.5)
        page.screenshot(path=str(OUT / "download.png"))
        print("wrote dashboard/screenshots/download.png")
    finally:
        stop_app(proc)
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="file names to retake (default: all, and the download)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="screenshots-"))
    for sub in ("app", "download"):
        (tmp / sub).mkdir()
    proc, url, _ = start_app(tmp / "app", extra_env={"BACKBONES_OFFLINE": "1"})
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_context(viewport=VIEWPORT).new_page()
            for name, path, ready in PAGES:
                if args.only and name not in args.only:
                    continue
                shoot(page, f"{url}/{path}", ready, OUT / f"{name}.png", click=CLICKS.get(name),
                      scroll={"explain": 450, "evaluate": 450, "training": 1100, "transfer": 420}.get(name, 0))
            if not args.only or "download" in args.only:
                download_screenshot(browser, tmp)
            browser.close()
    finally:
        stop_app(proc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
