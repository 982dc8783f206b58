"""Training logs as a user meets them: the shipped demo runs, gaps in epoch series, run names in Chinese."""

from __future__ import annotations

import json
import subprocess
import sys
import unicodedata
from fnmatch import fnmatch
from pathlib import Path

import pytest

import backbones
from backbones.data.logs import Run, demo_logs, demo_runs, read_log, usual_step
from backbones.data.logs.demo import DEMO_FOLDER
from backbones.errors import LogFormatError

REPO = Path(__file__).resolve().parents[2]
CJK = "残差网络 ResNet-18 基线"


def _log(epochs, *, every_test: int = 1) -> str:
    lines = []
    for n in epochs:
        test = f", test accuracy {0.5 + n / 1000:.3f}" if n % every_test == 0 else ""
        lines.append(f"epoch {n}, loss {1 / (n + 1):.4f}, train accuracy {0.6 + n / 1000:.3f}{test}, use time 10.0")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- demo logs (package data)


def test_demo_logs_are_package_data_not_test_data():
    files = demo_logs()
    assert [name for name, _ in files] == ["seed_003_group_meeting.md"]
    assert DEMO_FOLDER.is_relative_to(Path(backbones.__file__).resolve().parent)
    # pyproject ships them: every demo file's name matches a package-data pattern.
    tomllib = pytest.importorskip("tomllib")
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["*"]
    assert all(any(fnmatch(name, p) for p in patterns) for name, _ in files)


def test_demo_runs_are_named_for_a_user():
    runs = demo_runs()
    assert [r.name for r in runs] == [
        "demo · animal dataset, first model",
        "demo · VGG19",
        "demo · NIN",
        "demo · GoogLeNet, truncated-normal init + BN",
        "demo · GoogLeNet, data augmentation",
        "demo · GoogLeNet, pretrained",
        "demo · ResNet, run 1",
        "demo · ResNet, run 2",
        "demo · ResNet, run 3",
    ]
    nin = runs[2]
    assert nin.source == "demo notes, line 109 (NIN)"  # the line in the shipped file, and the notes' heading
    assert not any("seed_" in r.source or ".md" in r.source for r in runs)
    # Renaming changes nothing else: the same epochs as reading the file directly.
    direct = read_log(DEMO_FOLDER / "seed_003_group_meeting.md")
    assert [r.epochs for r in runs] == [r.epochs for r in direct]
    assert (nin.best.epoch, nin.best.test_acc) == (97, 0.825)


# --------------------------------------------------------------------------- gaps in epoch series


def test_demo_run_with_skipped_epochs_breaks_its_line():
    augmented = next(r for r in demo_runs() if r.name == "demo · GoogLeNet, data augmentation")
    x, y = augmented.series("test_acc")
    assert x == tuple(range(40, 50)) + tuple(range(92, 100))  # the old behaviour, unchanged
    bx, by = augmented.series("test_acc", break_gaps=True)
    assert bx == tuple(range(40, 50)) + (None,) + tuple(range(92, 100))
    assert by[:10] == y[:10] and by[10] is None and by[11:] == y[10:]
    assert by[9] == 0.899 and by[11] == 0.919
    # Runs without gaps come back as they were.
    vgg = next(r for r in demo_runs() if r.name == "demo · VGG19")
    assert vgg.series("loss", break_gaps=True) == vgg.series("loss")


def test_hand_made_log_breaks_only_where_its_own_step_is_exceeded():
    # Written every 5 epochs, with epochs 20-35 lost: one break, between 15 and 40.
    (run,) = read_log(_log([0, 5, 10, 15, 40, 45, 50]).encode(), filename="every5.log")
    x, y = run.series("loss", break_gaps=True)
    assert x == (0, 5, 10, 15, None, 40, 45, 50)
    assert y[4] is None and (y[3], y[5]) == (0.0625, 0.0244)  # loss 1/16 and 1/41, as written
    # Test accuracy measured every other epoch: its own step is 2, so that is not a gap...
    (run,) = read_log(_log(range(0, 10), every_test=2).encode(), filename="val.log")
    assert run.series("test_acc", break_gaps=True)[0] == (0, 2, 4, 6, 8)
    assert None not in run.series("loss", break_gaps=True)[0]
    # ...but a value missing from an every-epoch series is.
    gap = Run("g", "g.log", tuple(e for e in run.epochs if e.epoch != 3))
    assert gap.series("loss", break_gaps=True)[0] == (0, 1, 2, None, 4, 5, 6, 7, 8, 9)
    # The gap field (train - test accuracy) breaks the same way.
    assert run.series("gap", break_gaps=True)[0] == (0, 2, 4, 6, 8)
    with pytest.raises(LogFormatError):
        run.series("nope", break_gaps=True)


@pytest.mark.parametrize(("epochs", "step"), [
    ([], 1), ([7], 1), ([1, 2, 3], 1), ([0, 5, 10, 40], 5), ([1, 3, 4], 1), ([10, 20], 10), ([3, 3, 4], 1),
])
def test_usual_step(epochs, step):
    assert usual_step(epochs) == step


# --------------------------------------------------------------------------- run names in Chinese


def test_chinese_run_names_parse_and_rename(tmp_path):
    doc = f"# {CJK}\n\n```\n{_log(range(1, 4))}```\n\n## 中文名 第二次\n\n```\n{_log(range(1, 3))}```\n"
    first, second = read_log(doc.encode(), filename="组会.md")
    assert (first.name, second.name) == (CJK, "中文名 第二次")
    (plain,) = read_log(_log(range(1, 4)).encode("gb18030"), filename=f"{CJK}.log")  # a GBK file from Windows
    assert plain.name == CJK and len(plain.epochs) == 3
    assert plain.renamed("  中文名\u3000 基线 ").name == "中文名 基线"  # ideographic space is whitespace too
    assert plain.renamed("中文名").to_dict()["name"] == "中文名"


def _cli(args: list[str], capsys) -> tuple[int, str]:
    from backbones.cli import build_parser, run

    code = run(build_parser(modules=("backbones.cli.data",)), args)
    return code, capsys.readouterr().out


def test_chinese_run_names_align_in_the_text_table(tmp_path, capsys):
    (tmp_path / "a.log").write_text(_log(range(1, 4)), encoding="utf-8")
    (tmp_path / "b.log").write_text(_log(range(1, 6)), encoding="utf-8")
    code, out = _cli(["logs", str(tmp_path / "a.log"), str(tmp_path / "b.log"), "--name", CJK, "VGG19"], capsys)
    assert code == 0
    header, rule, *rows = out.splitlines()[:4]
    assert rows[0].startswith(CJK) and rows[1].startswith("VGG19")

    def columns(line: str) -> int:
        # Terminal columns before the "epochs" column: wide (CJK) characters take two.
        prefix = line[: line.index(next(t for t in ("epochs", "1-3", "1-5") if t in line))]
        return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in prefix)

    assert columns(header) == columns(rows[0]) == columns(rows[1]) == len(rule.split("  ")[0]) + 2


def test_chinese_run_name_survives_the_cli_json(tmp_path):
    log = tmp_path / "run.log"
    log.write_text(_log(range(1, 4)), encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "backbones", "logs", str(log), "--name", "中文名", "--json"],
        cwd=REPO, capture_output=True, timeout=120, check=True,
    )
    (run,) = json.loads(out.stdout.decode("utf-8"))
    assert run["name"] == "中文名"
    assert "中文名".encode() in out.stdout  # written as characters, not \\u escapes
