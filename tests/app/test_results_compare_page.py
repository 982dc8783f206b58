"""The Compare page over a results database holding rows that do not fit the schema (issue 18, finding 5)."""

from __future__ import annotations

import json
import sqlite3

import pytest

from backbones.errors import StoreError
from backbones.results.exchange import MAX_IMPORT_BYTES
from backbones.results.store import ResultsStore
from tests.app.conftest import no_exception, open_page
from tests.unit.results_files import ENV, evaluation_payload, latency_payload


def test_compare_page_skips_bad_rows_and_says_so(app, tmp_path):
    db = tmp_path / "results.sqlite"  # the app fixture's database
    store = ResultsStore(db)
    store.add("latency", "squeezenet1_1", latency_payload("squeezenet1_1", median_ms=7.0, threads=2), env=ENV)
    conn = sqlite3.connect(db)
    with conn:
        for i, (source, payload) in enumerate([
            ("here", json.dumps(evaluation_payload(top1="0.9", model="squeezenet1_1"))),
            ("<a href='https://evil.example'>gpu</a>", json.dumps(latency_payload("squeezenet1_1", threads=2))),
        ]):
            conn.execute(
                "INSERT INTO results (uid, kind, model, created, source, env, payload) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (f"bad{i}", "evaluation" if i == 0 else "latency", "squeezenet1_1", "2099-01-01T00:00:00+00:00",
                 source, json.dumps(ENV), payload),
            )
    conn.close()
    from dashboard import caches

    caches.comparison.clear()  # cached per process for a few seconds, whatever the database
    app.run()
    app.sidebar.multiselect[0].set_value(["squeezenet1_1"])
    open_page(app, "compare")
    no_exception(app)
    table = app.dataframe[0].value
    assert list(table["series"]) == ["measured here"] and list(table["latency median (ms)"]) == [7.0]
    assert not [c for c in table.columns if c.startswith("top-1 on ")]
    app.run()  # notices are shown in the sidebar on the next run
    warnings = [w.value for w in app.sidebar.warning]
    assert any("skipped 2 stored result(s)" in w for w in warnings), warnings
    assert not any("evil" in w for w in warnings)
    charts = "".join(c.proto.spec for c in app.get("plotly_chart"))
    assert "evil.example" not in charts


def test_export_is_built_only_when_asked(monkeypatch, tmp_path):
    from dashboard import actions

    monkeypatch.setenv("BACKBONES_RESULTS_DB", str(tmp_path / "r.sqlite"))
    ResultsStore().add("latency", "resnet18", latency_payload(), env=ENV)
    calls = []
    original = ResultsStore.query
    monkeypatch.setattr(ResultsStore, "query", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    build = actions.export_results()
    assert callable(build) and calls == []
    document = json.loads(build())
    assert [r["model"] for r in document["results"]] == ["resnet18"] and calls == [1]


def test_dashboard_import_checks_size_before_writing(monkeypatch, tmp_path):
    from dashboard import actions

    monkeypatch.setenv("BACKBONES_RESULTS_DB", str(tmp_path / "r.sqlite"))
    with pytest.raises(StoreError, match="^results.json is 50.0 MiB"):
        actions.import_results(b" " * (MAX_IMPORT_BYTES + 1))
    assert not (tmp_path / "r.sqlite").exists()
