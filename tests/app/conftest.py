"""AppTest helpers: run dashboard pages headlessly with isolated caches."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
TIMEOUT = 600  # first model loads on 2 cores take a while


@pytest.fixture()
def app(tmp_path, monkeypatch):
    """A fresh AppTest on the Compare page with its own cache and results database."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("BACKBONES_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("BACKBONES_RESULTS_DB", str(tmp_path / "results.sqlite"))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    return at


def open_page(at, page: str):
    at.switch_page(f"views/{page}.py")
    at.run()
    return at


def shown(markdown: str) -> str:
    """The text a visitor sees for a Markdown body the app escaped (names are rendered literally)."""
    return re.sub(r"\\(.)", r"\1", markdown)


def errors(at) -> list[str]:
    return [shown(e.value) for e in at.error]


def no_exception(at) -> None:
    assert not at.exception, [e.message for e in at.exception]
