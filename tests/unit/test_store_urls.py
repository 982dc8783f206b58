"""Issue 21, findings 3 and 4: results database and MLflow tracking URIs are parsed, not guessed.

Each accepted form is used for what it is (a file, a PostgreSQL database by URL or by libpq
keywords, an MLflow URI passed through as it is); anything else is one line. For every form: where
the data lands, what the command line prints, that no password appears in any output (messages,
``repr``, ``where``), and that nothing new appears in the current folder unless the user named it.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from backbones.cli import main
from backbones.errors import StoreError
from backbones.results.backend import DatabaseURL, parse_database_url, redact_url
from backbones.results.store import ResultsStore
from tests.corpus import REFUSED_DATABASE_URLS, REFUSED_TRACKING_URIS, URL_SECRET
from tests.unit import pg

pg_cluster = pg.pg_cluster  # fixture

SECRET = URL_SECRET  # a password holding every character a URL splits on
TRICKY = "p/a@s:s w'rd"  # for the libpq keyword form: a space and a quote too


@pytest.fixture(autouse=True)
def _in_empty_folder(tmp_path, monkeypatch):
    """Every test runs in an empty current folder, its cache elsewhere."""
    monkeypatch.setenv("BACKBONES_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("BACKBONES_RESULTS_DB", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("BACKBONES_MACHINE", "this-box")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def _cwd_listing() -> list[str]:
    return sorted(os.listdir("."))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again on return: connecting is refused at once


# ------------------------------------------------------------------ the parse function


def test_each_accepted_form_is_used_for_what_it_is():
    assert parse_database_url("r.sqlite") == DatabaseURL("sqlite", "r.sqlite", "r.sqlite")
    assert parse_database_url("./a=b:c.sqlite").target == "./a=b:c.sqlite"  # named as a file
    assert parse_database_url("sqlite:///rel/r.sqlite").target == "rel/r.sqlite"
    assert parse_database_url("sqlite:////abs/r.sqlite").target == "/abs/r.sqlite"
    url = parse_database_url(f"postgresql://lens:{quote(SECRET, safe='')}@db.lab:6543/board?sslmode=disable")
    assert (url.scheme, url.where) == ("postgresql", "postgresql://lens@db.lab:6543/board")
    assert parse_database_url("postgres://u@h/db").where == "postgresql://u@h:5432/db"
    quoted = TRICKY.replace("\\", "\\\\").replace("'", "\\'")
    keywords = parse_database_url(f"host=db.lab port=6543 dbname=board user=lens password='{quoted}'")
    assert (keywords.scheme, keywords.where) == ("postgresql", "postgresql://lens@db.lab:6543/board")
    for parsed in (url, keywords):
        assert SECRET not in repr(parsed) and TRICKY not in repr(parsed) and "password" not in str(parsed.to_dict())


@pytest.mark.parametrize("text", REFUSED_DATABASE_URLS)
def test_other_forms_are_refused_in_one_line_without_the_password(text, capsys, monkeypatch):
    with pytest.raises(StoreError) as info:
        ResultsStore(text)
    message = str(info.value)
    for secret in (SECRET, "hunter", "nter2", quote(SECRET, safe="")):
        assert secret not in message
    assert "\n" not in message
    assert main(["results", "--db", text]) == 2
    if text.strip():  # a blank variable is an unset one: the default
        monkeypatch.setenv("BACKBONES_RESULTS_DB", text)
        assert main(["results", "--json"]) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err.count("\n") == (2 if text.strip() else 1) and out.err.startswith("error: ")
    assert "hunter" not in out.err and "nter2" not in out.err and SECRET not in out.err
    assert _cwd_listing() == []  # no file named after the text, no folder 'postgresql:'


def test_redact_url_hides_a_password_typed_without_percent_encoding():
    assert redact_url(f"http://u:{SECRET}@host:5000/x") == "http://u:***@host:5000/x"
    assert redact_url("http://u:pw@host/a?b=c@d") == "http://u:***@host/a?b=c@d"
    assert redact_url("http://host:5000/x") == "http://host:5000/x"
    assert redact_url("file:///a:b@c") == "file:///a:b@c"


# ------------------------------------------------------------------ where the data lands


def test_a_plain_path_and_a_sqlite_url_are_files_the_user_named(capsys):
    for db, expected in (("named.sqlite", "named.sqlite"), ("sqlite:///sub.sqlite", "sub.sqlite")):
        ResultsStore(db).add("latency", "resnet18", {"median_ms": 1.0})
        assert main(["results", "--db", db]) == 0
        assert f"1 result(s) in {expected}" in capsys.readouterr().out
    assert _cwd_listing() == ["named.sqlite", "sub.sqlite"]


@pytest.fixture(scope="module")
def tricky_role(pg_cluster):
    """A second login whose password holds '/', '@', ':', a space and a quote; its own database."""
    with pg_cluster.admin() as conn:
        conn.execute("CREATE ROLE tricky LOGIN PASSWORD 'p/a@s:s w''rd'")
        conn.execute("CREATE DATABASE tricky_db OWNER tricky")
    return pg_cluster


def _forms(cluster) -> dict[str, str]:
    quoted = TRICKY.replace("\\", "\\\\").replace("'", "\\'")
    return {
        "url": f"postgresql://tricky:{quote(TRICKY, safe='')}@127.0.0.1:{cluster.port}/tricky_db",
        "keywords": f"host=127.0.0.1 port={cluster.port} dbname=tricky_db user=tricky password='{quoted}'",
    }


def test_url_and_keyword_forms_land_on_the_server(tricky_role, capsys, monkeypatch):
    where = f"postgresql://tricky@127.0.0.1:{tricky_role.port}/tricky_db"
    for n, (form, text) in enumerate(_forms(tricky_role).items(), start=1):
        store = ResultsStore(text)
        assert store.where == where and TRICKY not in repr(store)
        store.add("latency", "resnet18", {"median_ms": float(n)}, run_id=f"{form}-row")
        monkeypatch.setenv("BACKBONES_RESULTS_DB", text)
        assert main(["results"]) == 0
        out = capsys.readouterr()
        assert f"{n} result(s) in {where}" in out.out and TRICKY not in out.out + out.err
    import psycopg

    with psycopg.connect(host="127.0.0.1", port=tricky_role.port, user="tricky", password=TRICKY,
                         dbname="tricky_db") as conn:
        assert sorted(r[0] for r in conn.execute("SELECT uid FROM results")) == ["keywords-row", "url-row"]
    assert _cwd_listing() == []  # the keyword form was once an SQLite file of that name, here


def test_a_server_that_is_down_is_not_claimed_to_hold_the_result(capsys, monkeypatch, tmp_path):
    import warnings

    port = _closed_port()
    text = f"host=127.0.0.1 port={port} dbname=lens user=lens password='{SECRET}'"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["bench", "squeezenet1_1", "--threads", "1", "--input-size", "3", "32", "32", "--runs", "2",
                     "--budget", "0", "--warmup", "1", "--db", text]) == 0
    err = capsys.readouterr().err
    where = f"postgresql://lens@127.0.0.1:{port}/lens"
    assert f"stored 1 result(s) in {where}" not in err and "stored" not in err
    local = tmp_path / "cache" / "results.sqlite"
    assert f"kept 1 result(s) in {local} for {where}" in err
    assert SECRET not in err and "hun" not in err
    assert len(ResultsStore(str(local)).query()) == 1
    assert _cwd_listing() == []


# ------------------------------------------------------------------ MLflow tracking URIs


@pytest.fixture()
def one_result(tmp_path):
    pytest.importorskip("mlflow")
    db = str(tmp_path / "r.sqlite")
    ResultsStore(db).add("latency", "resnet18", {"median_ms": 1.0, "device": "cpu"})
    return db


def _experiment_runs(folder: Path) -> int:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=folder.as_uri())
    found = client.get_experiment_by_name("backbone-lens")
    return 0 if found is None else len(client.search_runs([found.experiment_id]))


def test_file_uris_with_one_or_three_slashes_are_the_same_folder(one_result, tmp_path, capsys):
    target = tmp_path / "runs"
    assert main(["results", "--db", one_result, "--to-mlflow", f"file:{target}"]) == 0
    assert f"exported 1 new run(s) to MLflow experiment 'backbone-lens' at {target.as_uri()}" in capsys.readouterr().err
    assert main(["results", "--db", one_result, "--to-mlflow", target.as_uri()]) == 0
    err = capsys.readouterr().err
    assert "exported 0 new run(s)" in err and "(1 already there)" in err
    assert _experiment_runs(target) == 2  # the result's run and the comparison chart's
    assert _cwd_listing() == []


def test_a_plain_folder_is_the_folder_the_user_named_and_the_default_is_the_cache(one_result, tmp_path, capsys,
                                                                                   monkeypatch):
    assert main(["results", "--db", one_result, "--to-mlflow", "named"]) == 0
    assert _cwd_listing() == ["named"] and _experiment_runs(Path("named").resolve()) == 2
    assert main(["results", "--db", one_result, "--to-mlflow"]) == 0
    assert f"at {(tmp_path / 'cache' / 'mlruns').as_uri()}" in capsys.readouterr().err
    assert _cwd_listing() == ["named"]  # no ./mlruns the user did not name
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "envfolder")
    assert main(["results", "--db", one_result, "--to-mlflow"]) == 0
    assert _cwd_listing() == ["envfolder", "named"]


def test_tracking_uris_are_resolved_once(tmp_path):
    from backbones.results.mlflow_export import resolve_tracking_uri

    assert resolve_tracking_uri(f"file:{tmp_path}") == resolve_tracking_uri(tmp_path.as_uri()) == tmp_path.as_uri()
    assert resolve_tracking_uri("file://localhost/abs") == "file:///abs"
    for uri in ("http://mlflow.lab:5000", "https://u:p@mlflow.lab/base", "databricks", "databricks://profile"):
        assert resolve_tracking_uri(uri) == uri  # a URI with a scheme goes to MLflow as it is
    assert resolve_tracking_uri("runs") == (Path.cwd() / "runs").as_uri()
    assert _cwd_listing() == []  # resolving creates nothing


@pytest.mark.parametrize(("uri", "expected"), REFUSED_TRACKING_URIS)
def test_uris_that_name_no_folder_honestly_are_refused_and_create_nothing(one_result, uri, expected, capsys):
    assert main(["results", "--db", one_result, "--to-mlflow", uri]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and expected in err and err.count("\n") == 1
    assert _cwd_listing() == []  # once: a 'mlflow.lab:5000' folder, a 'file:' folder, ...


@pytest.mark.parametrize("password", ["s3cret", "s3/cr@t:x"])
def test_an_unreachable_server_fails_in_seconds_without_the_password(one_result, password, capsys):
    uri = f"http://user:{password}@127.0.0.1:{_closed_port()}/"
    started = time.monotonic()
    assert main(["results", "--db", one_result, "--to-mlflow", uri]) == 2
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    assert elapsed < 15, f"took {elapsed:.1f} s"  # MLflow's defaults: 254 s
    assert err.startswith("error: ") and err.count("\n") == 1 and "user:***@127.0.0.1" in err
    assert password not in err and quote(password, safe="") not in err and "cr@t" not in err
    assert "MLFLOW_HTTP_REQUEST_TIMEOUT" not in os.environ  # the export's settings do not outlive it
    assert _cwd_listing() == []
