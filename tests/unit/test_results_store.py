"""The results store: durability, corruption recovery, read-only files, JSON exchange, SQL filters.

Tests that take ``new_db`` run on both backends (SQLite and a throwaway PostgreSQL cluster, see
tests/unit/pg.py); the file-level ones (corruption, permissions, killed writers) are SQLite's own.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backbones.errors import StoreError
from backbones.results.sqlite_backend import SqliteBackend
from backbones.results.store import DB_ENV, HERE, ResultsStore, StoredResult, StoreWarning
from tests.unit import pg
from tests.unit.pg import here_label

new_db, pg_cluster = pg.new_db, pg.pg_cluster  # fixtures: SQLite and PostgreSQL in turn

ROOT = Path(__file__).resolve().parents[2]


def _integrity(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def test_add_and_query(new_db):
    store = ResultsStore(new_db())
    here = here_label(store, "laptop")
    a = store.add("latency", "resnet18", {"median_ms": 12.5}, env={"machine": "laptop", "threads": 2})
    b = store.add("evaluation", "resnet18", {"top1": 0.75})
    c = store.add("latency", "vgg16", {"median_ms": float("nan")})
    assert a < b < c
    rows = store.query()
    assert [r.id for r in rows] == [a, b, c]
    first = rows[0]
    assert isinstance(first, StoredResult)
    assert (first.kind, first.model, first.source) == ("latency", "resnet18", here)
    assert first.payload == {"median_ms": 12.5} and first.env == {"machine": "laptop", "threads": 2}
    assert first.created.endswith("+00:00")
    assert first.source_label == ("measured here" if here == HERE else f"measured on {here}")
    assert rows[1].env["machine"]  # a minimal fingerprint when none is given
    assert rows[2].payload == {"median_ms": None}  # strict JSON: NaN is stored as null
    assert [r.model for r in store.query(kind="latency")] == ["resnet18", "vgg16"]
    assert [r.kind for r in store.query(model="resnet18")] == ["latency", "evaluation"]
    assert store.query(source="elsewhere") == []
    d = first.to_dict()
    assert {"id", "kind", "model", "created", "source", "env", "payload"} <= set(d)
    assert store.sources() == sorted({here, here_label(store)}, key=lambda s: (s != HERE, s))


def test_run_id_makes_add_idempotent(new_db):
    store = ResultsStore(new_db())
    first = store.add("latency", "resnet18", {"median_ms": 1.0}, run_id="run-1")
    assert store.add("latency", "resnet18", {"median_ms": 2.0}, run_id="run-1") == first
    assert [(r.uid, r.payload) for r in store.query()] == [("run-1", {"median_ms": 1.0})]


def test_delete_and_clear(new_db):
    store = ResultsStore(new_db())
    ids = [store.add("latency", m, {}) for m in ("a", "b", "c")]
    assert store.delete([ids[0]]) == 1
    assert store.delete(model="b") == 1
    with pytest.raises(StoreError):
        store.delete()
    assert store.clear() == 1 and store.query() == []


def test_paths_env_and_argument(tmp_path, monkeypatch):
    monkeypatch.setenv(DB_ENV, str(tmp_path / "from-env.sqlite"))
    assert ResultsStore().path == tmp_path / "from-env.sqlite"
    assert ResultsStore(tmp_path / "explicit.sqlite").path == tmp_path / "explicit.sqlite"
    monkeypatch.delenv(DB_ENV)
    monkeypatch.setenv("BACKBONES_CACHE_DIR", str(tmp_path / "cache"))
    assert ResultsStore().path == tmp_path / "cache" / "results.sqlite"


def test_reading_a_missing_database_creates_nothing(tmp_path):
    store = ResultsStore(tmp_path / "sub" / "none.sqlite")
    assert store.query() == [] and store.sources() == []
    assert not (tmp_path / "sub").exists()


def test_invalid_rows_refused(new_db):
    store = ResultsStore(new_db())
    with pytest.raises(StoreError):
        store.add("", "m", {})
    with pytest.raises(StoreError):
        store.add("latency", "m", ["not", "a", "dict"])
    with pytest.raises(StoreError):
        store.add("latency", "m", {"x": object()})
    assert store.query() == []


# ------------------------------------------------------------------ corruption


def test_garbage_file_is_moved_aside_and_rebuilt(tmp_path):
    path = tmp_path / "results.sqlite"
    junk = b"this is not a database " * 100
    path.write_bytes(junk)
    store = ResultsStore(path)
    with pytest.warns(StoreWarning, match="corrupt"):
        assert store.query() == []
    aside = list(tmp_path.glob("results.sqlite.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == junk  # kept for the user, untouched
    assert store.notices and aside[0].name in store.notices[0]
    store.add("latency", "resnet18", {"median_ms": 1.0})
    assert [r.model for r in ResultsStore(path).query()] == ["resnet18"]
    assert _integrity(path) == "ok"


def test_damaged_pages_are_moved_aside_and_readable_rows_kept(tmp_path):
    path = tmp_path / "results.sqlite"
    store = ResultsStore(path)
    for i in range(40):
        store.add("latency", f"m{i}", {"pad": "x" * 2000})
    page = 4096
    assert path.stat().st_size > 30 * page
    with open(path, "r+b") as f:
        f.seek(20 * page)
        f.write(b"\xff" * page)
    fresh = ResultsStore(path)
    with pytest.warns(StoreWarning, match="corrupt"):
        rows = fresh.query()
    assert len(list(tmp_path.glob("results.sqlite.corrupt-*"))) == 1
    # Rows before the damaged page come back, in order; nothing unreadable is invented.
    assert [r.model for r in rows] == [f"m{i}" for i in range(len(rows))]
    assert len(rows) < 40
    assert _integrity(path) == "ok"


# ------------------------------------------------------------------ read-only


def test_unwritable_directory_is_a_store_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a directory should be")
    store = ResultsStore(blocker / "results.sqlite")
    assert store.query() == []
    with pytest.raises(StoreError, match="cannot create the results directory") as info:
        store.add("latency", "m", {})
    assert "\n" not in str(info.value)


def _read_only_after_rows(tmp_path) -> tuple[Path, ResultsStore]:
    path = tmp_path / "results.sqlite"
    store = ResultsStore(path)
    store.add("latency", "kept1", {"median_ms": 1.0})
    store.add("latency", "kept2", {"median_ms": 2.0})
    return path, store


def test_read_only_database_simulated(tmp_path, monkeypatch):
    # SQLite opens a file it may not write read-only; root ignores permission bits, so
    # simulate exactly that open mode.
    path, _ = _read_only_after_rows(tmp_path)
    before = path.read_bytes()
    original = SqliteBackend._open
    monkeypatch.setattr(SqliteBackend, "_open", lambda self, read_only=False: original(self, read_only=True))
    store = ResultsStore(path)
    assert [r.model for r in store.query()] == ["kept1", "kept2"]
    with pytest.raises(StoreError, match="read-only") as info:
        store.add("latency", "lost", {})
    assert "--db" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(StoreError, match="read-only"):
        store.ensure_writable()
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [r.model for r in ResultsStore(path).query()] == ["kept1", "kept2"]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_database_permissions(tmp_path):
    path, _ = _read_only_after_rows(tmp_path)
    path.chmod(0o444)
    tmp_path.chmod(0o555)
    try:
        store = ResultsStore(path)
        assert [r.model for r in store.query()] == ["kept1", "kept2"]
        with pytest.raises(StoreError):
            store.add("latency", "lost", {})
    finally:
        tmp_path.chmod(0o755)
        path.chmod(0o644)
    assert [r.model for r in ResultsStore(path).query()] == ["kept1", "kept2"]


# ------------------------------------------------------------------ killed writers


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def test_killed_sweep_keeps_earlier_rows(tmp_path):
    """A real `bench` sweep killed with SIGKILL after two models: both stay stored and readable."""
    db = tmp_path / "sweep.sqlite"
    models = ["squeezenet1_1"] * 8
    cmd = [sys.executable, "-m", "backbones", "bench", *models, "--threads", "1", "--input-size", "3", "64", "64",
           "--runs", "200", "--budget", "0.3", "--warmup", "1", "--db", str(db), "--json"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    finished = []
    try:
        deadline = time.monotonic() + 120
        for line in proc.stderr:
            if "median over" in line:  # printed after a result is stored
                finished.append(line)
            if len(finished) == 2 or time.monotonic() > deadline:
                break
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert len(finished) == 2, "the sweep did not get to two models"
    assert _integrity(db) == "ok"
    rows = ResultsStore(db).query()
    assert 2 <= len(rows) < len(models), "killed mid-sweep: some rows, not all"
    for row in rows:
        assert row.kind == "latency" and row.model == "squeezenet1_1"
        assert row.payload["runs"] >= 3 and row.payload["median_ms"] > 0
        assert row.env["threads"] == 1


WRITER = """
import sys
from backbones.results.store import ResultsStore
store = ResultsStore(sys.argv[1])
i = 0
while True:
    store.add("latency", f"m{i}", {"i": i, "pad": "x" * 3000})
    print(i, flush=True)
    i += 1
"""


def test_writer_killed_mid_transaction_keeps_committed_rows(tmp_path):
    db = tmp_path / "loop.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(db)], cwd=tmp_path, env=_env(),
                            stdout=subprocess.PIPE, text=True)
    committed = -1
    try:
        for line in proc.stdout:
            committed = int(line)
            if committed >= 10:
                break
        proc.send_signal(signal.SIGKILL)  # most likely inside the next add
    finally:
        proc.kill()
        proc.wait()
    rows = ResultsStore(db).query()
    assert _integrity(db) == "ok"
    assert len(rows) >= committed + 1
    assert [r.payload["i"] for r in rows] == list(range(len(rows)))


# ------------------------------------------------------------------ JSON exchange


def _filled(path: str | Path) -> ResultsStore:
    store = ResultsStore(path)
    store.add("latency", "resnet18", {"median_ms": 3.5, "device": "cuda"}, env={"machine": "gpu-box", "time": "t1"})
    store.add("latency", "vgg16", {"median_ms": 9.0, "device": "cuda"}, env={"hostname": "gpu-box-2"})
    store.add("evaluation", "resnet18", {"top1": 0.71}, env={"machine": "gpu-box"})
    return store


def test_export_import_round_trip(tmp_path, new_db):
    src = _filled(new_db())
    out = tmp_path / "export.json"
    assert src.export_json(out) == 3
    document = json.loads(out.read_text())
    assert document["format"] == "backbone-lens-results" and len(document["results"]) == 3

    dst = ResultsStore(new_db())
    dst.add("latency", "resnet18", {"median_ms": 20.0})
    assert dst.import_json(out) == 3
    originals, imported = src.query(), dst.query()[1:]
    for a, b in zip(originals, imported):
        assert (a.kind, a.model, a.created, a.env, a.payload, a.uid) == (b.kind, b.model, b.created, b.env, b.payload, b.uid)
    # Imported rows are shown as their own series: the machine they were measured on.
    assert [r.source for r in imported] == ["gpu-box", "gpu-box-2", "gpu-box"]
    assert imported[0].source_label == "measured on gpu-box"
    assert dst.sources() == sorted({here_label(dst), "gpu-box", "gpu-box-2"}, key=lambda s: (s != HERE, s))
    assert dst.import_json(out) == 0, "importing the same file twice adds nothing"

    # Exported again from the second store, imported rows keep their machine; local ones get this machine's.
    again = tmp_path / "again.json"
    dst.export_json(again)
    third = ResultsStore(new_db())
    assert third.import_json(again, source=None) == 4
    assert [r.source for r in third.query()][1:] == ["gpu-box", "gpu-box-2", "gpu-box"]

    labelled = ResultsStore(new_db())
    assert labelled.import_json(out, source="colleague") == 3
    assert labelled.sources() == ["colleague"]


def test_import_bench_json_list(tmp_path, new_db):
    bench = [{"model": "resnet18", "median_ms": 4.0, "env": {"machine": "laptop", "time": "2024-01-01T00:00:00+00:00"}}]
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(bench))
    store = ResultsStore(new_db())
    assert store.import_json(path) == 1
    (row,) = store.query()
    assert (row.kind, row.model, row.source, row.created) == ("latency", "resnet18", "laptop", "2024-01-01T00:00:00+00:00")
    assert store.import_json(path) == 0


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "not valid JSON"),
        ("42", "expected an object or a list"),
        ('{"format": "other"}', "not a Backbone Lens results export"),
        ('{"format": "backbone-lens-results", "version": 99, "results": []}', "unsupported export version"),
        ('{"format": "backbone-lens-results", "version": 1, "results": {}}', "must be a list"),
        ('{"format": "backbone-lens-results", "version": 1, "results": [{"kind": "latency", "model": "m", "payload": {}},'
         ' {"kind": "latency", "model": "m"}]}', "bad.json: row 2: payload must be an object, got null"),
        ('[{"model": "m"}]', "not a benchmark result"),
    ],
)
def test_malformed_import_is_refused_whole(tmp_path, new_db, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    store = ResultsStore(new_db())
    store.add("latency", "kept", {})
    with pytest.raises(StoreError, match=message.replace("(", r"\(")) as info:
        store.import_json(path)
    assert "\n" not in str(info.value)
    assert [r.model for r in store.query()] == ["kept"]


def test_import_missing_file(tmp_path):
    with pytest.raises(StoreError, match="cannot read"):
        ResultsStore(tmp_path / "r.sqlite").import_json(tmp_path / "absent.json")


def test_cli_results_export_import(tmp_path, new_db, capsys):
    from backbones.cli import main

    a, b = new_db(), new_db()
    _filled(a)
    out = tmp_path / "x.json"
    assert main(["results", "--db", a, "--export", str(out)]) == 0
    assert "exported 3" in capsys.readouterr().err
    assert main(["results", "--db", b, "--import", str(out)]) == 0
    err = capsys.readouterr().err
    assert "imported 3" in err and "s3cret" not in err
    assert main(["results", "--db", b]) == 0
    table = capsys.readouterr().out
    assert "measured on gpu-box" in table and "vgg16" in table
    assert main(["results", "--db", b, "--json", "--kind", "evaluation"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in rows] == ["resnet18"] and rows[0]["payload"] == {"top1": 0.71}
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    assert main(["results", "--db", b, "--import", str(bad)]) == 2
    assert capsys.readouterr().err.startswith("error: bad.json")


def test_cli_results_reports_corrupt_database(tmp_path, capsys):
    from backbones.cli import main

    db = tmp_path / "r.sqlite"
    db.write_bytes(b"\x00garbage" * 50)
    assert main(["results", "--db", str(db)]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("warning: results database") and "corrupt" in captured.err
    assert "no stored results" in captured.out
