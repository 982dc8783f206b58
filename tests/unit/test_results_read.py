"""Rows put into the database by other means (plain SQL) that do not fit the schema: skipped with a notice.

Issue 18, finding 5: one such row used to make the Compare page raise for every visitor and
`python -m backbones compare` fail until it was deleted by hand.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from backbones.results.comparison import comparison_rows
from backbones.results.store import ResultsStore, StoreWarning
from tests.unit import pg
from tests.unit.results_files import ENV, evaluation_payload, latency_payload

new_db, pg_cluster = pg.new_db, pg.pg_cluster  # fixtures: SQLite and PostgreSQL in turn

ROOT = Path(__file__).resolve().parents[2]

BAD_ROWS = [  # (kind, model, source, env JSON, payload JSON)
    ("evaluation", "resnet18", "here", json.dumps(ENV), json.dumps(evaluation_payload(top1="0.9"))),
    ("latency", "resnet18", "here", "[1, 2]", json.dumps(latency_payload())),
    ("latency", "resnet18", "here", json.dumps(ENV), "not json"),
    ("latency", "resnet18", "<a href='https://evil.example'>click</a>", json.dumps(ENV), json.dumps(latency_payload())),
    ("latency", "resnet18\u202e", "here", json.dumps(ENV), json.dumps(latency_payload())),
    ("latency", "resnet18", "here", json.dumps(ENV), json.dumps(latency_payload(median_ms=-5.0))),
    ("latency", "resnet18", "here", json.dumps(ENV), json.dumps(latency_payload()).replace("10.0", "NaN", 1)),
    ("latency", "resnet18", "here", json.dumps(ENV), '{"details": ' + "[" * 5000 + "]" * 5000 + "}"),
    ("bogus", "resnet18", "here", json.dumps(ENV), "{}"),
    ("latency", b"resnet18", "here", json.dumps(ENV), json.dumps(latency_payload())),  # a BLOB, not text
    ("latency", "resnet18", "here", json.dumps(ENV), json.dumps(latency_payload(device="x" * 100_000))),
]


def _bad_rows(store: ResultsStore) -> list[tuple]:
    # A BLOB cannot be put in a PostgreSQL text column at all: that row is SQLite's own.
    return [r for r in BAD_ROWS if not (store.path is None and isinstance(r[1], bytes))]


def _insert_raw(store: ResultsStore, rows: list[tuple], created: str = "2099-01-01T00:00:00+00:00") -> None:
    """Rows put in by plain SQL (through the backend: no schema check), uids bad0, bad1, ..."""

    def insert(cursor):
        for i, (kind, model, source, env, payload) in enumerate(rows):
            cursor.execute("INSERT INTO results (uid, kind, model, created, source, env, payload) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?)", (f"bad{i}", kind, model, created, source, env, payload))

    store.backend.write(insert)


def _store_with_bad_rows(location) -> ResultsStore:
    store = ResultsStore(location)
    store.add("latency", "resnet18", latency_payload(median_ms=12.0), env=ENV)
    store.add("evaluation", "resnet18", evaluation_payload(top1=0.75), env=ENV)
    _insert_raw(store, _bad_rows(store))
    store.add("latency", "vgg16", latency_payload("vgg16", median_ms=40.0), env=ENV)
    return ResultsStore(location)


def test_query_skips_bad_rows_with_one_notice(new_db):
    store = _store_with_bad_rows(new_db())
    bad = _bad_rows(store)
    with pytest.warns(StoreWarning, match=rf"skipped {len(bad)} stored result\(s\)") as caught:
        rows = store.query()
    assert [(r.kind, r.model) for r in rows] == [("latency", "resnet18"), ("evaluation", "resnet18"), ("latency", "vgg16")]
    assert len(caught) == 1 and len(store.notices) == 1
    notice = store.notices[0]
    assert "\n" not in notice and "first: id 3: payload.top1 must be a number, got str" in notice
    assert "evil" not in notice
    assert store.count() == len(bad) + 3  # counted, not read
    # The raw rows' "here" and the added rows' source; the HTML source is not offered.
    assert set(store.sources()) == {"here", pg.here_label(store, "gpu-box")}


def test_each_bad_row_alone_is_skipped(new_db):
    for bad in _bad_rows(ResultsStore(new_db())):
        location = new_db()
        ResultsStore(location).add("latency", "vgg16", latency_payload("vgg16"), env=ENV)
        _insert_raw(ResultsStore(location), [bad])
        with pytest.warns(StoreWarning, match="skipped 1 stored result"):
            assert [r.model for r in ResultsStore(location).query()] == ["vgg16"], bad[:3]


def test_comparison_shows_the_good_rows(new_db):
    store = _store_with_bad_rows(new_db())
    series = "measured here" if store.path is not None else "measured on gpu-box"
    with pytest.warns(StoreWarning):
        rows = comparison_rows(["resnet18", "vgg16"], store=store, threads=1)
    assert [(r.model, r.series, r.latency_ms) for r in rows] == [("resnet18", series, 12.0), ("vgg16", series, 40.0)]
    assert rows[0].accuracy_on == {"flowers": 0.75}
    assert len(store.notices) == 1


def _cli(*args: str, db: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), BACKBONES_RESULTS_DB=str(db))
    env.pop("PYTHONWARNINGS", None)
    return subprocess.run([sys.executable, "-m", "backbones", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_compare_and_results_skip_bad_rows_with_one_stderr_line(tmp_path):
    db = tmp_path / "r.sqlite"
    _store_with_bad_rows(db)
    compare = _cli("compare", "resnet18", "vgg16", "--threads", "1", "--json", db=db)
    assert compare.returncode == 0, compare.stderr
    rows = json.loads(compare.stdout)
    assert [(r["model"], r["latency_ms"]) for r in rows] == [("resnet18", 12.0), ("vgg16", 40.0)]
    lines = compare.stderr.splitlines()
    # 8: the SQL filter (kind, model) never reads the bogus kind and the two bad model names.
    assert len(lines) == 1 and "skipped 8 stored result(s)" in lines[0] and "StoreWarning" in lines[0], lines

    results = _cli("results", "--json", db=db)
    assert results.returncode == 0, results.stderr
    assert len(json.loads(results.stdout)) == 3
    assert results.stderr.startswith("warning: skipped 11 stored result(s)") and results.stderr.count("\n") == 1
