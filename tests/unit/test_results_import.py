"""Hostile results imports (issue 18, finding 5): every row is checked, the whole file refused at the first bad one.

Each malicious file is generated here. A refused import is one line naming the file, the row (counted
from 1) and the field, and leaves the store exactly as it was.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from backbones.errors import StoreError
from backbones.results.exchange import DEFAULT_MAX_IMPORT_ROWS, MAX_IMPORT_BYTES, MAX_IMPORT_ROWS_ENV
from backbones.results.store import ResultsStore
from tests.unit import pg
from tests.unit.results_files import evaluation_payload, export, row, spoiled, write

new_db, pg_cluster = pg.new_db, pg.pg_cluster  # fixtures: SQLite and PostgreSQL in turn


@pytest.fixture()
def store(new_db) -> ResultsStore:
    store = ResultsStore(new_db())
    store.add("latency", "kept", {"median_ms": 1.0})
    return store


def _content(store: ResultsStore):
    """The whole database: the file's bytes (SQLite), else every stored row as the server holds it."""
    if store.path is not None:
        with open(store.path, "rb") as f:  # not Path.read_bytes: one test makes that fail
            return f.read()
    return store.backend.read("SELECT * FROM results ORDER BY id", [])


def refused(store: ResultsStore, path: Path, match: str) -> str:
    """Import ``path``, expect a refusal matching ``match``; check that nothing was written."""
    before = _content(store)
    with pytest.raises(StoreError, match=match) as info:
        store.import_json(path)
    message = str(info.value)
    assert "\n" not in message and len(message) < 400
    assert _content(store) == before, "a refused import must not write anything"
    assert [r.model for r in store.query()] == ["kept"]
    return message


def test_the_issue_example_names_file_row_and_field(store, tmp_path):
    rows = [row(i) for i in range(16)] + [row(16, kind="evaluation", payload=evaluation_payload(top1="0.9"))]
    path = write(tmp_path / "results.json", export(rows + [row(17)]))
    message = refused(store, path, ".")  # any: the exact text is checked next
    assert message == "results.json: row 17: payload.top1 must be a number, got str"


def test_a_good_file_still_imports(store, tmp_path):
    rows = [row(i) for i in range(5)] + [row(5, kind="evaluation")]
    path = write(tmp_path / "results.json", export(rows))
    assert store.import_json(path) == 6
    assert [r.source for r in store.query()][1:] == ["gpu-box"] * 6
    assert store.import_json(path) == 0


@pytest.mark.parametrize(
    "path, value, message",
    [
        # wrong types at different depths
        ("kind", 3, "row 4: kind must be one of latency, evaluation, transfer, got int"),
        ("kind", "delete-everything", "row 4: kind must be one of latency, evaluation, transfer, got an unknown name"),
        ("model", ["resnet18"], "row 4: model must be a string, got list"),
        ("env", ["not", "an", "object"], "row 4: env must be an object, got list"),
        ("env", "x", "row 4: env must be an object, got str"),
        ("env.threads", "8", "row 4: env.threads must be an integer, got str"),
        ("env.device_name", {"a": 1}, "row 4: env.device_name must be a string, got dict"),
        ("payload", "{}", "row 4: payload must be an object, got str"),
        ("payload.median_ms", "fast", "row 4: payload.median_ms must be a number, got str"),
        ("payload.batch_size", True, "row 4: payload.batch_size must be an integer, got bool"),
        ("payload.batch_size", 1.5, "row 4: payload.batch_size must be an integer, got float"),
        ("payload.input_size[1]", "224", r"row 4: payload.input_size\[1\] must be an integer, got str"),
        ("payload.env", 7, "row 4: payload.env must be an object, got int"),
        ("payload.details.latency.samples_ms[2]", {"x": 1}, None),  # any JSON inside details: accepted
        ("created", 20240501, "row 4: created must be a string, got int"),
        ("created", "yesterday", "row 4: created must be an ISO 8601 time"),
        ("uid", "../../etc/passwd", "row 4: uid must be 1 to 64 letters"),
        # NaN, infinity, out of range
        ("payload.median_ms", float("nan"), "row 4: payload.median_ms must be a finite number, got nan"),
        ("payload.p90_ms", float("inf"), "row 4: payload.p90_ms must be a finite number, got inf"),
        ("payload.details.extra", float("-inf"), "row 4: payload.details.extra must be a finite number, got -inf"),
        ("payload.median_ms", -3.0, "row 4: payload.median_ms must be between 0 and 1e.09, got -3"),
        ("payload.runs", -1, "row 4: payload.runs must be between 0 and"),
        ("payload.params", 10**30, "row 4: payload.params must be between 0 and"),
        # huge strings
        ("model", "m" * 5000, "row 4: model must be at most 200 characters, got 5000"),
        ("payload.device", "x" * 1_000_000, "row 4: payload.device must be at most 4096 characters, got 1000000"),
        ("payload.details.note", "x" * 10_000, "row 4: payload.details.note must be at most 4096 characters"),
        ("env.x", "\ud800", r"row 4: env.x holds a lone surrogate"),
        # HTML and control characters in names
        ("model", '<a href="https://evil.example">resnet18</a>', "row 4: model must be plain text .* U.003C at position 0"),
        ("source", "<img src=x onerror=alert(1)>", "row 4: source must be plain text"),
        ("env.machine", "gpu<b>box</b>", "row 4: env.machine must be plain text"),
        ("source", "gpu\u202ebox", "row 4: source must be plain text .* U.202E at position 3"),
        ("model", "resnet\x0018", "row 4: model must be plain text .* U.0000 at position 6"),
        ("model", "resnet18\n[click](https://evil.example)", "row 4: model must be plain text .* U.000A"),
        ("model", "\x1b[31mred", "row 4: model must be plain text .* U.001B"),
        ("model", "   ", "row 4: model must not be empty"),
    ],
)
def test_hostile_row_refuses_the_whole_file(store, tmp_path, path, value, message):
    document = spoiled(6, 4, path, value)
    file = write(tmp_path / "results.json", document)
    if message is None:
        assert store.import_json(file) == 6
        return
    text = refused(store, file, "^results.json: " + message)
    if isinstance(value, str) and len(value) > 2:
        assert value not in text, "messages name the field, never echo the offending text"


def test_hostile_evaluation_fields(store, tmp_path):
    cases = {
        "top1": ("0.9", "payload.top1 must be a number, got str"),
        "per_class": ({"daisy": "all"}, "payload.per_class.daisy must be a number, got str"),
        "confusion": ([[1, 2], [3, -4]], r"payload.confusion\[1\]\[1\] must be between 0 and"),
        "dataset": ("<script>alert(1)</script>", "payload.dataset must be plain text"),
        "labels": (["ok", 5], r"payload.labels\[1\] must be a string, got int"),
    }
    for field, (value, message) in cases.items():
        file = write(tmp_path / "results.json", export([row(0), row(1, kind="evaluation", payload=evaluation_payload(**{field: value}))]))
        refused(store, file, "^results.json: row 2: " + message)
    top1_over = write(tmp_path / "results.json", export([row(0, kind="evaluation", payload=evaluation_payload(top1=80.0))]))
    refused(store, top1_over, "row 1: payload.top1 must be between 0 and 1, got 80")


def test_keys_from_the_file_are_not_echoed_unless_plain(store, tmp_path):
    file = write(tmp_path / "results.json", spoiled(2, 2, "payload.details", {"[x](https://evil.example)": float("nan")}))
    message = refused(store, file, r"row 2: payload.details\[key 0\] must be a finite number")
    assert "evil" not in message


def test_markdown_in_a_name_is_kept_as_plain_text(store, tmp_path):
    # Names are shown in tables and legends that render HTML, not Markdown: only < > and controls are refused.
    name = "**bold** [link](https://evil.example) `code`"
    file = write(tmp_path / "results.json", spoiled(1, 1, "model", name))
    assert store.import_json(file) == 1
    assert store.query()[-1].model == name


def test_deep_nesting_is_refused(store, tmp_path):
    def nested(depth: int):
        value: object = 1
        for _ in range(depth):
            value = {"a": value}
        return value

    shallow = write(tmp_path / "results.json", spoiled(3, 2, "payload.details", nested(40)))
    refused(store, shallow, "^results.json: row 2: payload.details(.a)+ is nested deeper than 32 levels$")
    # 1000 (and 100,000) levels: Python's JSON parser gives up; still one line, nothing written.
    for depth in (1000, 100_000):
        text = json.dumps(export([row(0)]))[:-2] + ", " + '{"a": ' * depth + "1" + "}" * depth + "]}"
        deep = tmp_path / "deep.json"
        deep.write_text(text)
        refused(store, deep, "^deep.json is nested too deeply")


def test_json_with_bare_words_and_giant_numbers(store, tmp_path):
    file = tmp_path / "results.json"
    file.write_text(json.dumps(export([row(0)])).replace('"median_ms": 10.0', '"median_ms": Infinity'))
    refused(store, file, "row 1: payload.median_ms must be a finite number, got inf")
    file.write_text(json.dumps(export([row(0)])).replace('"median_ms": 10.0', '"median_ms": 1e400'))
    refused(store, file, "row 1: payload.median_ms must be a finite number, got inf")
    file.write_text(json.dumps(export([row(0)])).replace('"runs": 9', '"runs": ' + "9" * 5000))
    refused(store, file, "^results.json is not valid JSON")


def test_a_file_over_the_size_cap_is_refused_before_it_is_read(store, tmp_path, monkeypatch):
    big = tmp_path / "big.json"
    with open(big, "wb") as f:
        f.truncate(MAX_IMPORT_BYTES + 1)  # sparse: no disk used, nothing to read
    assert big.stat().st_size > MAX_IMPORT_BYTES

    def no_reading(self, *args, **kwargs):
        raise AssertionError("the file was read")

    monkeypatch.setattr(Path, "read_text", no_reading)
    monkeypatch.setattr(Path, "read_bytes", no_reading)
    started = time.perf_counter()
    message = refused(store, big, r"^big.json is 50.0 MiB; results imports are limited to 50 MiB$")
    assert time.perf_counter() - started < 5, message


def test_a_file_just_under_the_size_cap_is_read(store, tmp_path):
    file = write(tmp_path / "results.json", export([row(0)]))
    with open(file, "ab") as f:
        f.write(b" " * (MAX_IMPORT_BYTES - file.stat().st_size))  # whitespace: still one JSON document
    assert file.stat().st_size == MAX_IMPORT_BYTES
    assert store.import_json(file) == 1


def test_too_many_rows(store, tmp_path, monkeypatch):
    monkeypatch.delenv(MAX_IMPORT_ROWS_ENV, raising=False)
    rows = [row(i) for i in range(DEFAULT_MAX_IMPORT_ROWS + 1)]
    file = write(tmp_path / "results.json", export(rows))
    refused(store, file, f"^results.json holds {DEFAULT_MAX_IMPORT_ROWS + 1} rows; at most {DEFAULT_MAX_IMPORT_ROWS} are")

    monkeypatch.setenv(MAX_IMPORT_ROWS_ENV, "5")
    five, six = (write(tmp_path / f"{n}.json", export(rows[:n])) for n in (5, 6))
    refused(store, six, "^6.json holds 6 rows; at most 5 are imported at once")
    bench_list = write(tmp_path / "bench.json", [r["payload"] for r in rows[:6]])
    refused(store, bench_list, "^bench.json holds 6 rows; at most 5")
    assert store.import_json(five) == 5

    for bad in ("0", "-3", "many", "1e9"):
        monkeypatch.setenv(MAX_IMPORT_ROWS_ENV, bad)
        with pytest.raises(StoreError, match=MAX_IMPORT_ROWS_ENV):
            store.import_json(five)


def test_bench_list_rows_are_checked_too(store, tmp_path):
    items = [row(i)["payload"] for i in range(3)]
    items[2]["median_ms"] = "slow"
    refused(store, write(tmp_path / "bench.json", items), "^bench.json: row 3: payload.median_ms must be a number, got str")
    items[2]["median_ms"] = 1.0
    items[1]["env"] = {"machine": "<b>laptop</b>"}
    refused(store, write(tmp_path / "bench.json", items), "^bench.json: row 2: env.machine must be plain text")


def test_a_bad_source_label_is_refused(store, tmp_path):
    file = write(tmp_path / "results.json", export([row(0)]))
    before = _content(store)
    with pytest.raises(StoreError, match="row 1: source must be plain text"):
        store.import_json(file, source="<a href=x>me</a>")
    assert _content(store) == before


def test_cli_import_refusal_is_one_line_and_exit_2(tmp_path, capsys):
    from backbones.cli import main

    rows = [row(i) for i in range(16)] + [row(16, kind="evaluation", payload=evaluation_payload(top1="0.9"))]
    file = write(tmp_path / "results.json", export(rows))
    db = tmp_path / "cli.sqlite"
    assert main(["results", "--db", str(db), "--import", str(file)]) == 2
    err = capsys.readouterr().err
    assert err == "error: results.json: row 17: payload.top1 must be a number, got str\n"
    assert not db.exists() or ResultsStore(db).count() == 0

