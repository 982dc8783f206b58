"""Security regressions in real Chromium: hostile uploads leave every file outside the cache untouched."""

from __future__ import annotations

import pytest

from tests.app.test_security_pages import hostile_zip
from tests.e2e.conftest import wait_idle
from tests.unit.test_archives import REPO, tree_digest

pytestmark = pytest.mark.e2e


def errors_shown(page) -> list[str]:
    return [e.inner_text() for e in page.locator('[data-testid="stAlertContentError"]').all()]


def test_traversal_zip_and_renamed_uploads_change_no_file(page, app_url):
    before = tree_digest(REPO)
    page.goto(f"{app_url}/evaluate")
    wait_idle(page)
    assert page.get_by_text("a folder on the server").count() == 0  # no server paths without roots
    page.get_by_text("upload a .zip").click()
    wait_idle(page)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(
        files=[{"name": "dataset.zip", "mimeType": "application/zip", "buffer": hostile_zip()}]
    )
    wait_idle(page)
    shown = errors_shown(page)
    assert len(shown) == 1 and "archive refused" in shown[0], shown

    page.goto(f"{app_url}/models")
    wait_idle(page)
    page.get_by_role("tab", name="Import weights").click()
    wait_idle(page)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').last.set_input_files(
        files=[{"name": "..\\..\\..\\dashboard\\views\\evil.pth", "mimeType": "application/octet-stream",
                "buffer": b"import os; os.system('touch /tmp/pwned-by-upload')\n"}]
    )
    wait_idle(page)
    page.get_by_role("button", name="Import").click()
    wait_idle(page)
    assert len(errors_shown(page)) == 1
    assert tree_digest(REPO) == before
