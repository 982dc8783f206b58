"""The comparison table (one read of the store, filtered in SQL) and the Pareto front."""

from __future__ import annotations

import pytest

from backbones.results.comparison import X_AXES, comparison_rows
from backbones.results.pareto import pareto_front
from backbones.results.store import ResultsStore
from tests.unit import pg
from tests.unit.results_files import ENV, evaluation_payload, latency_payload

new_db, pg_cluster = pg.new_db, pg.pg_cluster  # fixtures: SQLite and PostgreSQL in turn


def test_pareto_front_worked_by_hand():
    # (x cost, y accuracy): (1, 50) and (2, 70) and (4, 80) beat the rest.
    points = [(2, 70), (3, 60), (1, 50), (4, 80), (5, 80), (2, 65)]
    assert pareto_front(points) == [2, 0, 3]
    assert pareto_front([]) == []
    assert pareto_front([(1.0, 1.0)]) == [0]
    assert pareto_front([(1, 5), (1, 5)]) == [0]  # a tie is not beaten, but drawn once


def test_axes_say_their_units():
    assert X_AXES["macs"] == ("gmacs", "GMACs per image (multiply-accumulates)")
    assert set(X_AXES) == {"latency", "macs", "params", "size"}


def _store(location) -> ResultsStore:
    # The series tests stay on SQLite: on a shared server "here" rows are stored under their machine
    # (gpu-box in ENV), which would merge them with the gpu-box series below.
    store = ResultsStore(location)
    store.add("latency", "resnet18", latency_payload(median_ms=30.0), env=ENV)
    store.add("latency", "resnet18", latency_payload(median_ms=20.0), env=ENV)  # latest wins
    store.add("latency", "resnet18", latency_payload(median_ms=5.0, threads=4), env=ENV)
    store.add("latency", "resnet18", latency_payload(median_ms=2.0, device="cuda:0", threads=4), env=ENV)
    store.add("latency", "resnet18", latency_payload(median_ms=8.0), env=ENV, source="gpu-box")
    store.add("evaluation", "resnet18", evaluation_payload(top1=0.7), env=ENV)
    store.add("latency", "other", latency_payload("other", median_ms=1.0), env=ENV)
    return store


def test_rows_per_series_latest_first_matching_settings(tmp_path):
    store = _store(tmp_path / "r.sqlite")
    rows = comparison_rows(["resnet18", "squeezenet1_1"], store=store, threads=1)
    assert [(r.model, r.series, r.latency_ms) for r in rows] == [
        ("resnet18", "measured here", 20.0),
        ("resnet18", "measured on gpu-box", 8.0),
        ("squeezenet1_1", "published only", None),
    ]
    assert rows[0].accuracy_on == {"flowers": 0.7} and rows[0].published_top1 == pytest.approx(69.758)
    assert rows[0].device_name == "NVIDIA H100"
    cuda = comparison_rows(["resnet18"], store=store, device="cuda", threads=1)
    assert [(r.series, r.latency_ms) for r in cuda] == [("measured here", 2.0)]  # threads only filter CPU rows
    assert [r.to_dict()["gmacs"] for r in cuda] == [pytest.approx(1.814073344)]


def test_one_read_of_the_store_for_only_the_models_asked(new_db, monkeypatch):
    store = _store(new_db())
    statements = []
    original = ResultsStore._select

    def spy(self, sql, args):
        statements.append((sql, list(args)))
        return original(self, sql, args)

    monkeypatch.setattr(ResultsStore, "_select", spy)
    comparison_rows(["resnet18", "vgg16"], store=store, threads=1)
    assert len(statements) == 1
    sql, args = statements[0]
    assert "kind IN (?, ?, ?)" in sql and "model IN (?, ?)" in sql
    assert sorted(args) == sorted(["latency", "evaluation", "transfer", "resnet18", "vgg16"])


def test_query_filters_in_sql(tmp_path):
    store = _store(tmp_path / "r.sqlite")
    assert {r.model for r in store.query(model=["other", "nothing"])} == {"other"}
    assert [r.kind for r in store.query(kind=("evaluation",))] == ["evaluation"]
    assert store.query(model=[]) == []
    assert len(store.query(source=["here", "gpu-box"])) == 7
    assert [r.payload["median_ms"] for r in store.query(kind="latency", source="gpu-box")] == [8.0]
    assert store.count() == 7 and store.sources() == ["here", "gpu-box"]


def test_check_health_is_the_named_health_check(tmp_path):
    path = tmp_path / "r.sqlite"
    path.write_bytes(b"not a database " * 100)
    store = ResultsStore(path)
    with pytest.warns(UserWarning, match="corrupt"):
        store.check_health()
    assert len(store.notices) == 1 and list(tmp_path.glob("r.sqlite.corrupt-*"))
    store.check_health()  # once per store
    assert len(store.notices) == 1
