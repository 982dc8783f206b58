"""Compare, Predict and Explain in Simplified Chinese (``?lang=zh``): they run, and their words are Chinese."""

from __future__ import annotations

import json

import pytest

from tests.app.conftest import errors, no_exception, open_page


def has_cjk(text: str) -> bool:
    return any("\u4e00" <= c <= "\u9fff" for c in text)


def chart_titles(at) -> list[str]:
    """Every chart's title, axis titles and trace names (the spec's JSON escapes non-ASCII characters)."""
    out = []
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        layout = spec.get("layout", {})
        for axis in ("xaxis", "yaxis"):
            title = layout.get(axis, {}).get("title", {})
            out.append(title.get("text", "") if isinstance(title, dict) else str(title))
        out += [trace.get("name", "") for trace in spec.get("data", [])]
    return out


@pytest.mark.parametrize("page", ["compare", "predict", "explain"])
def test_page_runs_in_chinese(app, page):
    app.query_params["lang"] = "zh"
    open_page(app, page)
    no_exception(app)
    assert not errors(app)
    assert app.title and has_cjk(app.title[0].value), app.title[0].value if app.title else None
    if page == "compare":
        assert any(has_cjk(t) for t in chart_titles(app)), chart_titles(app)
        assert has_cjk(app.radio(key="cmp_x").label)
        assert has_cjk(" ".join(app.dataframe[0].value.columns))
    elif page == "predict":
        assert has_cjk(app.slider(key="predict_topk").label)
        assert any(has_cjk(e.label) for e in app.expander)
    else:
        labels = [m.label for m in app.metric]
        assert any("AUC" in label and has_cjk(label) for label in labels), labels
        assert any(has_cjk(c.value) and "目标" in c.value for c in app.caption)
        app.toggle(key="explain_curves").set_value(True).run()
        no_exception(app)
        assert any(has_cjk(t) for t in chart_titles(app)), chart_titles(app)
