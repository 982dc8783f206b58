"""Every hostile corpus item through the command line: exit 2 and one ``error:`` line, or exit 0.

Most items go through ``backbones.cli.runner`` in this process (cheap); a handful run
as real subprocesses (``python -m backbones ...``), which also catch warnings,
logging and tracebacks that only a real stderr shows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from backbones.cli import build_parser, main
from tests import corpus

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def items(tmp_path_factory) -> dict[str, corpus.CorpusItem]:
    return corpus.build_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "photo.png"
    path.write_bytes(corpus.encode(corpus.sample_image(), "PNG"))
    return path


def has_command(name: str) -> bool:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return name in sub.choices


def run_inprocess(capsys, argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def check_outcome(item: corpus.CorpusItem, code: int, out: str, err: str) -> str | None:
    """None when the command did what ``item`` expects, else what went wrong."""
    if "Traceback" in err or "Traceback" in out:
        return f"{item.name}: traceback printed"
    if item.ok:
        return None if code == 0 else f"{item.name}: exit {code}, stderr {err!r}"
    lines = err.strip().splitlines()
    if code != 2:
        return f"{item.name}: exit {code} (expected 2), stderr {err!r}"
    if len(lines) != 1 or not lines[0].startswith("error: "):
        return f"{item.name}: stderr is not one 'error:' line: {err!r}"
    if not item.matches(lines[0]):
        return f"{item.name}: message lacks {item.keyword!r}: {lines[0]}"
    if out.strip():
        return f"{item.name}: stdout not empty on error: {out[:200]!r}"
    return None


def kinds(items, kind):
    return [i for i in items.values() if i.kind == kind]


def test_bad_images_each_exit_2_with_one_clear_line(items, capsys):
    problems = []
    for item in kinds(items, "image"):
        if item.ok:
            continue
        code, out, err = run_inprocess(capsys, ["predict", str(item.path), "--json"])
        problems.append(check_outcome(item, code, out, err))
    assert [p for p in problems if p] == []
    assert len(problems) >= 9


def test_odd_but_valid_images_predict_in_one_command(items, capsys):
    good = [i for i in kinds(items, "image") if i.ok]
    assert len(good) >= 7
    code, out, err = run_inprocess(capsys, ["predict", *[str(i.path) for i in good], "--topk", "3", "--json"])
    assert code == 0, err
    results = json.loads(out)
    assert [r["image"] for r in results] == [str(i.path) for i in good]
    for r in results:
        probs = [t["prob"] for t in r["topk"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True)
        assert 0 < sum(probs) <= 1.0 + 1e-6


def checkpoint_argv(item: corpus.CorpusItem, photo: Path) -> list[str]:
    argv = ["predict", str(photo), "--model", item.model, "--checkpoint", str(item.path), "--json"]
    if item.classes:
        argv += ["--classes", str(item.classes)]
    return argv


def test_checkpoints_through_predict(items, photo, capsys):
    problems = []
    for item in kinds(items, "checkpoint"):
        code, out, err = run_inprocess(capsys, checkpoint_argv(item, photo))
        problems.append(check_outcome(item, code, out, err))
        if item.ok and code == 0:
            top = json.loads(out)[0]["topk"]
            assert top[0]["label"] == item.details["top"]
            assert {t["label"] for t in top} <= set(corpus.GOOD_CLASSES)
    assert [p for p in problems if p] == []
    assert not Path(items["payload_pickle"].details["marker"]).exists()


def test_training_logs(items, capsys):
    if not has_command("logs"):
        pytest.skip("`python -m backbones logs` does not exist yet")
    problems = []
    for item in kinds(items, "log"):
        code, out, err = run_inprocess(capsys, ["logs", str(item.path), "--json"])
        problems.append(check_outcome(item, code, out, err))
        if item.ok and code == 0:
            runs = json.loads(out)
            assert len(runs) == item.details.get("runs", 1)
            if "notice" in item.details:
                assert item.details["notice"] in runs[0]["notes"][-1]
            if "name" in item.details:
                assert runs[0]["name"] == item.details["name"]
            if "epochs" in item.details:
                epochs = runs[0]["epochs"]
                assert len(epochs) == item.details["epochs"]
                assert tuple(e["test_acc"] for e in epochs) == pytest.approx(item.details["test_acc"])
    assert [p for p in problems if p] == []


def test_dataset_with_unreadable_files(items, capsys):
    if not has_command("eval"):
        pytest.skip("`python -m backbones eval` does not exist yet")
    item = items["dataset_with_unreadable_files"]
    code, out, err = run_inprocess(capsys, ["eval", str(item.path), "--no-store", "--json"])
    assert check_outcome(item, code, out, err) is None
    result = json.loads(out)
    assert (result["n"], result["skipped"]) == (item.details["n"], item.details["skipped"])
    assert result["labels"] == item.details["labels"]


# ----------------------------------------------------------------------------- real subprocesses


def _subprocess(argv: list[str]) -> tuple[int, str, str]:
    env = dict(os.environ)
    env.pop("BACKBONES_DEBUG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "backbones", *argv],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    return proc.returncode, proc.stdout, proc.stderr


def test_real_command_lines(items, photo):
    """A few items as real processes (each costs seconds of imports), run two at a time."""
    cases: list[tuple[corpus.CorpusItem, list[str]]] = [
        (items["bomb_png"], ["predict", str(items["bomb_png"].path), "--json"]),
        (items["bad_crc_png"], ["predict", str(items["bad_crc_png"].path)]),
        (items["payload_pickle"], checkpoint_argv(items["payload_pickle"], photo)),
        (items["lying_length_safetensors"], checkpoint_argv(items["lying_length_safetensors"], photo)),
    ]
    good = [i for i in kinds(items, "image") if i.ok]
    cases.append((good[0], ["predict", *[str(i.path) for i in good], "--json"]))
    if has_command("logs"):
        cases.append((items["log_all_binary"], ["logs", str(items["log_all_binary"].path)]))
    if has_command("eval"):
        dataset = items["dataset_with_unreadable_files"]
        cases.append((dataset, ["eval", str(dataset.path), "--no-store", "--json"]))
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(lambda case: _subprocess(case[1]), cases))
    problems = [check_outcome(item, *outcome) for (item, _), outcome in zip(cases, outcomes)]
    assert [p for p in problems if p] == []
    # The ok predict printed one JSON document covering every image.
    predictions = json.loads(outcomes[4][1])
    assert len(predictions) == len(good)
    assert not Path(items["payload_pickle"].details["marker"]).exists()
