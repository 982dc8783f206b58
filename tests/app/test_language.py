"""The Chinese interface: every page runs in ``?lang=zh``, and the sidebar toggle switches language."""

from __future__ import annotations

import pytest

from tests.app.conftest import errors, no_exception, open_page

# Pages whose strings come from the catalogues; Compare, Predict and Explain must at least run in Chinese.
TRANSLATED = ["architecture", "evaluate", "training", "models"]
UNTRANSLATED = ["compare", "predict", "explain"]


def has_cjk(text: str) -> bool:
    return any("\u4e00" <= c <= "\u9fff" for c in text)


@pytest.mark.parametrize("page", TRANSLATED + UNTRANSLATED)
def test_every_page_runs_in_chinese(app, page):
    app.query_params["lang"] = "zh"
    open_page(app, page)
    no_exception(app)
    assert not errors(app), errors(app)
    assert app.title, f"{page} shows no title"
    assert app.sidebar.segmented_control(key="lang_toggle").value == "zh"
    if page in TRANSLATED:
        assert has_cjk(app.title[0].value), app.title[0].value


def test_evaluate_in_chinese_keeps_its_source_values(app):
    app.query_params["lang"] = "zh"
    open_page(app, "evaluate")
    radio = app.radio(key="eval_source")
    assert radio.value == "sample" and all(has_cjk(o) for o in radio.options)
    radio.set_value("upload").run()
    no_exception(app)
    assert app.file_uploader(key="eval_zip")


def test_the_sidebar_toggle_switches_language(app):
    open_page(app, "architecture")
    assert app.title[0].value == "Architecture"
    app.sidebar.segmented_control(key="lang_toggle").set_value("zh").run()
    no_exception(app)
    assert has_cjk(app.title[0].value)
    assert app.query_params["lang"] == "zh"  # a copied link keeps the language
    open_page(app, "models")  # the choice holds on the next page
    assert has_cjk(app.title[0].value)
    app.sidebar.segmented_control(key="lang_toggle").set_value("en").run()
    no_exception(app)
    assert app.title[0].value == "Models"
