"""Issue 17: the results store on PostgreSQL beside SQLite, versioned schema, concurrent writers, a server
that goes away (local fallback, ``results --push``), credentials never shown, and the MLflow export.

The PostgreSQL cluster is a throwaway one started by tests/unit/pg.py (skipped without the server
binaries, except in CI).
"""

from __future__ import annotations

import sqlite3
import warnings

import pytest

from backbones.errors import StoreError
from backbones.results import backend
from backbones.results.backend import SCHEMA_VERSION, StoreUnavailable, parse_database_url
from backbones.results.store import ResultsStore, StoreWarning
from tests.unit import pg
from tests.unit.results_files import ENV, evaluation_payload, latency_payload

new_db, pg_cluster, pg_url = pg.new_db, pg.pg_cluster, pg.pg_url  # fixtures


@pytest.fixture(autouse=True)
def _local_default(tmp_path, monkeypatch):
    """The local SQLite default (where results are kept while a server is down) lives in this test's folder."""
    monkeypatch.setenv("BACKBONES_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("BACKBONES_RESULTS_DB", raising=False)
    monkeypatch.setenv("BACKBONES_MACHINE", "this-box")


# ------------------------------------------------------------------ URLs


def test_database_urls():
    assert parse_database_url("/data/r.sqlite") == backend.DatabaseURL("sqlite", "/data/r.sqlite", "/data/r.sqlite")
    assert parse_database_url("sqlite:///rel/r.sqlite").target == "rel/r.sqlite"
    assert parse_database_url("sqlite:////abs/r.sqlite").target == "/abs/r.sqlite"
    assert parse_database_url("postgresql://u:p@h/db").scheme == "postgresql"
    assert parse_database_url("postgres://u:p@h/db").scheme == "postgresql"
    with pytest.raises(StoreError, match="unsupported results database URL scheme 'mysql'"):
        parse_database_url("mysql://u:p@h/db")
    with pytest.raises(StoreError, match="sqlite:///"):
        parse_database_url("sqlite://")


def test_postgres_label_never_holds_the_password():
    store = ResultsStore(f"postgresql://lens:{pg.PASSWORD}@db.example:6543/board?sslmode=disable")
    assert store.where == "postgresql://lens@db.example:6543/board"
    assert pg.PASSWORD not in repr(store) and store.path is None
    assert backend.redact_url(f"https://u:{pg.PASSWORD}@mlflow.example/x") == "https://u:***@mlflow.example/x"


# ------------------------------------------------------------------ schema versions


def test_schema_version_is_recorded_and_a_newer_one_refused(new_db):
    url = new_db()
    store = ResultsStore(url)
    store.add("latency", "resnet18", latency_payload(), env=ENV)
    store.backend.write(lambda cur: cur.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,)))
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}, newer than") as info:
        ResultsStore(url).query()
    assert "\n" not in str(info.value) and "upgrade" in str(info.value)
    with pytest.raises(StoreError, match="newer than"):
        ResultsStore(url).add("latency", "resnet18", latency_payload(), env=ENV)


def test_a_version_1_sqlite_file_is_migrated_on_the_first_write(tmp_path):
    # What the previous release wrote: the results table, its version in SQLite's header, no other table.
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(backend.MIGRATIONS[1][0].format(id="INTEGER PRIMARY KEY AUTOINCREMENT"))
        conn.execute("INSERT INTO results (uid, kind, model, created, source, env, payload) VALUES "
                     "('old1', 'latency', 'vgg16', '2024-01-01T00:00:00+00:00', 'here', '{}', '{}')")
        conn.execute("PRAGMA user_version = 1")
    conn.close()
    store = ResultsStore(path)
    assert [r.uid for r in store.query()] == ["old1"]  # reading migrates nothing
    store.add("latency", "resnet18", {})
    conn = sqlite3.connect(path)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    version = conn.execute("SELECT version FROM schema_version").fetchall()
    conn.close()
    assert {"results", "pending_push", "schema_version"} <= tables and version == [(SCHEMA_VERSION,)]
    assert [r.model for r in store.query()] == ["vgg16", "resnet18"]


def test_a_new_migration_is_applied_once(new_db, monkeypatch):
    url = new_db()
    ResultsStore(url).add("latency", "resnet18", {})
    monkeypatch.setattr(backend, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    monkeypatch.setitem(backend.MIGRATIONS, SCHEMA_VERSION + 1,
                        ("CREATE INDEX IF NOT EXISTS results_created ON results (created)",))
    for _ in range(2):
        ResultsStore(url).add("latency", "vgg16", {})
    store = ResultsStore(url)
    assert store.backend.read("SELECT version FROM schema_version", []) == [(SCHEMA_VERSION + 1,)]
    assert [r.model for r in store.query()] == ["resnet18", "vgg16", "vgg16"]


# ------------------------------------------------------------------ concurrency


def test_four_writers_fifty_results_each_exactly_200_rows(new_db):
    url = new_db()
    pg.write_concurrently(url, processes=4, per_process=50, payload=latency_payload())
    store = ResultsStore(url)
    rows = store.query()
    assert store.count() == len(rows) == 200
    assert len({r.uid for r in rows}) == 200
    assert {r.payload["i"] for r in rows} == set(range(50))


# ------------------------------------------------------------------ a server that goes away


def _bench(models: list[str], store, on_result=None):
    from backbones.measure import bench_models

    return bench_models(models, threads=1, input_size=(3, 32, 32), runs=3, budget_s=0.0, warmup=1,
                        store=store, on_result=on_result)


def test_server_stopped_mid_sweep_keeps_the_result_locally_and_push_delivers_it(pg_cluster, pg_url, capsys):
    from backbones.cli import main

    store = ResultsStore(pg_url, keep_locally=True)
    store.ensure_writable()
    stopped = []

    def stop_after_first(result):
        if not stopped:
            pg_cluster.stop()
            stopped.append(result)

    try:
        with pytest.warns(StoreWarning, match="kept this result in") as caught:
            results = _bench(["squeezenet1_1", "squeezenet1_1"], store, on_result=stop_after_first)
        assert len(results) == 2
        message = next(str(w.message) for w in caught if w.category is StoreWarning)
        assert "\n" not in message and pg.PASSWORD not in message
        assert f"'{pg_url.rsplit('/', 1)[1]}' on 127.0.0.1:{pg_cluster.port}" in message
        assert "results --push" in message
        kept = ResultsStore().query()  # the local default holds the second result
        assert len(kept) == 1 and kept[0].payload["median_ms"] == results[1].median_ms
        assert main(["results", "--push", "--db", pg_url]) == 2  # still down: a clean error
        err = capsys.readouterr().err
        assert err.startswith("error: cannot reach the PostgreSQL results database") and pg.PASSWORD not in err
    finally:
        pg_cluster.start()
    assert main(["results", "--push", "--db", pg_url]) == 0
    assert "pushed 1 kept result(s) to postgresql://lens@127.0.0.1" in capsys.readouterr().err
    server = ResultsStore(pg_url).query()
    assert len(server) == 2 and server[1].uid == ResultsStore().query()[0].uid
    assert {r.source for r in server} == {"this-box"}  # measured here = on this machine, on a shared board
    assert main(["results", "--push", "--db", pg_url]) == 0  # nothing left to send, nothing sent twice
    assert "pushed 0" in capsys.readouterr().err
    assert ResultsStore(pg_url).count() == 2


def test_push_needs_a_server():
    with pytest.raises(StoreError, match="--push sends results kept in"):
        ResultsStore().push()


# ------------------------------------------------------------------ wrong password


def test_wrong_password_is_one_clean_line_without_the_password(pg_cluster, pg_url, tmp_path, capsys):
    from backbones.cli import main

    wrong = pg_url.replace(pg.PASSWORD, "not-" + pg.PASSWORD)
    dbname = pg_url.rsplit("/", 1)[1]
    store = ResultsStore(wrong)
    with pytest.raises(StoreUnavailable) as info:
        store.query()
    message = str(info.value)
    assert message == (f"cannot reach the PostgreSQL results database '{dbname}' on 127.0.0.1:{pg_cluster.port}: "
                       "the server refused the login of user 'lens' (wrong password?)")
    with pytest.raises(StoreUnavailable):
        store.add("latency", "resnet18", {})  # without keep_locally: an error, nothing kept

    outputs = []
    for args in (["results", "--db", wrong], ["results", "--db", wrong, "--json"],
                 ["results", "--db", wrong, "--push"], ["compare", "resnet18", "--db", wrong]):
        assert main(args) == 2
        outputs.append(capsys.readouterr())
        assert outputs[-1].err.startswith("error: cannot reach the PostgreSQL results database")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["bench", "squeezenet1_1", "--threads", "1", "--input-size", "3", "32", "32", "--runs", "3",
                     "--budget", "0", "--warmup", "1", "--db", wrong]) == 0
    outputs.append(capsys.readouterr())
    assert "warning: cannot reach the PostgreSQL results database" in outputs[-1].err
    assert "kept this result in" in outputs[-1].err
    for captured in outputs:
        assert pg.PASSWORD not in captured.out + captured.err
    assert len(ResultsStore().query()) == 1


# ------------------------------------------------------------------ MLflow


def test_mlflow_export_reads_back_equal_and_twice_adds_nothing(new_db, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    from backbones.results.mlflow_export import RUN_ID_TAG, export_to_mlflow, run_metrics, run_params

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    store = ResultsStore(new_db())
    store.add("latency", "resnet18", latency_payload(median_ms=12.0), env=ENV)
    store.add("latency", "vgg16", latency_payload("vgg16", median_ms=40.0), env=ENV)
    store.add("evaluation", "resnet18", evaluation_payload(top1=0.75), env=ENV)
    uri = (tmp_path / "mlruns").as_uri()
    first = export_to_mlflow(store, uri, experiment="lab")
    assert (first.created, first.existing) == (3, 0)

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("lab").experiment_id
    runs = {r.data.tags[RUN_ID_TAG]: r for r in client.search_runs([experiment], f"tags.`{RUN_ID_TAG}` != ''")}
    stored = {r.uid: r for r in store.query()}
    assert set(runs) == set(stored)
    for uid, row in stored.items():
        run = runs[uid]
        assert run.data.params == run_params(row)
        assert run.data.metrics == run_metrics(row)
        assert run.data.params["model"] == row.model and run.data.params["machine"] == "gpu-box"
    latency = runs[store.query(model="resnet18", kind="latency")[0].uid].data
    assert latency.metrics["latency_median_ms"] == 12.0 and latency.metrics["latency_p90_ms"] == pytest.approx(13.2)
    assert latency.params["batch_size"] == "1" and latency.params["weights"] == "none (random)"
    evaluation = runs[store.query(kind="evaluation")[0].uid]
    assert evaluation.data.metrics["top1"] == 0.75 and evaluation.data.metrics["top5"] == 0.95
    artifacts = {a.path for a in client.list_artifacts(evaluation.info.run_id)}
    assert artifacts == {"confusion_matrix.csv", "confusion_matrix.png"}
    total = len(client.search_runs([experiment]))
    assert total == 4  # three results and the comparison chart's run

    again = export_to_mlflow(store, uri, experiment="lab")
    assert (again.created, again.existing) == (0, 3)
    assert len(client.search_runs([experiment])) == total


def test_cli_to_mlflow(tmp_path, monkeypatch, capsys):
    pytest.importorskip("mlflow")
    from backbones.cli import main

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    db = tmp_path / "r.sqlite"
    ResultsStore(db).add("latency", "resnet18", latency_payload(), env=ENV)
    assert main(["results", "--db", str(db), "--to-mlflow", str(tmp_path / "mlruns"), "--experiment", "x"]) == 0
    err = capsys.readouterr().err
    assert "exported 1 new run(s) to MLflow experiment 'x'" in err
    assert main(["results", "--db", str(db), "--to-mlflow", str(tmp_path / "mlruns"), "--experiment", "x"]) == 0
    assert "exported 0 new run(s)" in capsys.readouterr().err
    assert main(["results", "--db", str(db), "--experiment", "x"]) == 2
    assert capsys.readouterr().err == "error: --experiment goes with --to-mlflow\n"
