"""Real Chromium against `streamlit run`: every page, a photo upload, top-5 labels and a CAM image."""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import screenshot, wait_idle

pytestmark = pytest.mark.e2e

PAGES = [
    ("compare", "Compare backbones"),
    ("architecture", "Architecture"),
    ("predict", "Predict"),
    ("explain", "Explain predictions"),
    ("evaluate", "Evaluate on your images"),
    ("training", "Training runs"),
    ("transfer", "Which backbone for my data"),
    ("models", "Models"),
]


def no_exception_box(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0, page.locator('[data-testid="stException"]').first.inner_text()


@pytest.mark.parametrize("path,title", PAGES)
def test_every_page_opens_in_a_real_browser(page, app_url, path, title):
    page.goto(f"{app_url}/{'' if path == 'compare' else path}")  # Compare is the default page, at /
    wait_idle(page)
    page.get_by_role("heading", name=title).first.wait_for(timeout=60_000)
    no_exception_box(page)
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0
    screenshot(page, f"page-{path}")


def test_upload_a_photo_and_see_top5_and_a_cam(page, app_url, grace_hopper):
    page.goto(f"{app_url}/predict")
    wait_idle(page)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(str(grace_hopper))
    wait_idle(page)
    page.get_by_role("heading", name="grace_hopper.jpg").wait_for(timeout=120_000)
    chart = page.locator('[data-testid="stPlotlyChart"]').first
    chart.wait_for(timeout=120_000)
    assert "military uniform" in chart.inner_text()
    no_exception_box(page)
    screenshot(page, "predict-upload")

    page.goto(f"{app_url}/explain")
    wait_idle(page)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(str(grace_hopper))
    wait_idle(page)
    images = page.locator('[data-testid="stImage"] img')
    images.nth(1).wait_for(timeout=120_000)
    assert images.count() >= 2  # the photo and its Grad-CAM overlay
    assert page.get_by_text("academic gown").count() >= 1  # Lite0's top-1 for this photo is the CAM's target
    no_exception_box(page)
    screenshot(page, "explain-upload")


def test_a_bad_upload_shows_one_message_and_the_app_keeps_working(page, app_url, tmp_path, grace_hopper):
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a photo")
    page.goto(f"{app_url}/predict")
    wait_idle(page)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files([str(bad), str(grace_hopper)])
    wait_idle(page)
    page.get_by_text("not an image").first.wait_for(timeout=60_000)
    page.locator('[data-testid="stPlotlyChart"]').first.wait_for(timeout=120_000)
    no_exception_box(page)


def test_measure_latency_from_the_compare_page(page, app_url):
    # A shared link's selection (one small model): the first visit's classic comparison has 20 backbones.
    page.goto(f"{app_url}/?models=efficientnet_lite0")
    wait_idle(page)
    page.get_by_text("No latency measured yet").wait_for(timeout=60_000)
    budget = page.get_by_label("Seconds per model")
    budget.fill("0.5")
    budget.press("Enter")
    wait_idle(page)
    page.get_by_role("button", name=re.compile(r"^Measure \d+ backbone")).click()
    page.get_by_text("Done: results saved").wait_for(timeout=300_000)
    wait_idle(page)
    assert page.get_by_text("No latency measured yet").count() == 0
    page.get_by_role("tab", name="Latency").click()
    page.locator('[data-testid="stPlotlyChart"]:visible').first.wait_for(timeout=60_000)
    no_exception_box(page)
    page.get_by_role("tab", name="Accuracy vs cost").click()
    page.get_by_text("latency, median").first.click()
    wait_idle(page)
    screenshot(page, "page-compare-measured")


def test_slide_pack_from_the_explain_page(page, app_url, tmp_path):
    import io
    import json
    import zipfile

    from PIL import Image

    page.goto(f"{app_url}/explain")
    wait_idle(page)
    page.get_by_text("Deletion AUC").first.wait_for(timeout=240_000)
    with page.expect_download(timeout=240_000) as info:
        page.get_by_role("button", name="Download slide pack").click()
    data = (tmp_path / "pack.zip")
    info.value.save_as(data)
    with zipfile.ZipFile(data) as z:
        names = z.namelist()
        pngs = [n for n in names if n.endswith(".png")]
        assert pngs and all(Image.open(io.BytesIO(z.read(n))).width == 1920 for n in pngs)
        settings = json.loads(z.read("settings.json"))
        assert settings["models"] == ["efficientnet_lite0"] and settings["method"] == "gradcam"
        assert "python -m viz cam" in z.read("commands.sh").decode()
        assert any(n.startswith("tables/") for n in names)
