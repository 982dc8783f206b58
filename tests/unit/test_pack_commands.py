"""Issue 21, finding 2: the scripts in slide packs quote everything.

A pack made for a checkpoint and a photo whose names hold ``$(...)``, backquotes, ``;``, quotes,
newlines, bidi overrides and NUL is unpacked and its ``commands.sh`` run by ``bash`` with a stub
``python`` first on PATH (it records its arguments and exits 0): no marker file appears, every
command receives its names intact, and a name no script line can carry is a placeholder whose
text is kept in ``settings.json``. Both the library pack (``python -m viz pack``) and the
dashboard's Predict, Compare and Explain packs (the functions those pages call) are covered.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from backbones.shell import format_command, is_script_safe
from tests.corpus import SHELL_QUOTABLE_NAMES, SHELL_UNWRITABLE_NAMES
from viz.pack import build_pack, compare_commands, explain_commands, predict_commands, transfer_commands

# Each would create MARKER (in the folder the script runs in) if the shell read it as code.
QUOTABLE = list(SHELL_QUOTABLE_NAMES)
UNWRITABLE = list(SHELL_UNWRITABLE_NAMES)
NAMES = QUOTABLE + UNWRITABLE

STUB = """#!/bin/sh
# A stand-in for python: record the arguments, NUL-separated, one file per call; run nothing.
n=$(ls "$CALLS" | wc -l)
printf '%s\\0' "$@" > "$CALLS/$n"
exit 0
"""


def _run_pack(data: bytes, folder: Path) -> tuple[list[list[str]], dict, str]:
    """Unpack ``data`` into ``folder``, run its commands.sh with the stub python; the calls it made."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        zf.extractall(folder)
    script = (folder / "commands.sh").read_text(encoding="utf-8")
    bin_dir, calls = folder / "bin", folder / "calls"
    bin_dir.mkdir()
    calls.mkdir()
    (bin_dir / "python").write_text(STUB)
    (bin_dir / "python").chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", CALLS=str(calls), HOME=str(folder / "home"))
    proc = subprocess.run([shutil.which("bash"), "commands.sh"], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert not list(folder.rglob("MARKER")) and not (folder / "home").exists()
    made = [(calls / str(i)).read_bytes().decode().split("\0")[:-1] for i in range(len(os.listdir(calls)))]
    return made, json.loads((folder / "settings.json").read_text(encoding="utf-8")), script


def _expect(argv: list, placeholders: dict[str, str]) -> list[str]:
    """``argv`` as the stub must receive it: placeholders for what no script may carry."""
    back = {original: name for name, original in placeholders.items()}
    return [back.get(str(a), str(a)) for a in argv[1:]]  # argv[0] is python itself


def _check_script_text(script: str) -> None:
    assert all(is_script_safe(line) for line in script.splitlines())
    assert "\x00" not in script and "\r" not in script


def test_format_command_quotes_every_value_and_replaces_what_cannot_be_written():
    placeholders: dict[str, str] = {}
    line = format_command(["python", "-m", "backbones", "predict", *NAMES, NAMES[-1]], placeholders)
    assert list(placeholders.values()) == UNWRITABLE  # the repeated name kept its placeholder
    assert line.endswith("PLACEHOLDER_6 PLACEHOLDER_6")
    assert line.startswith("python -m backbones predict 'mine $(touch MARKER) x' ")
    with pytest.raises(TypeError):
        format_command("python -m viz $(id)")


@pytest.mark.parametrize("image", ["photo $(touch MARKER).jpg", "ph`touch MARKER`o;'\".jpg", "p\nhoto.jpg"])
def test_dashboard_packs_run_nothing_a_name_says(tmp_path, image):
    models = [(name, "resnet18") for name in NAMES] + [("resnet18", None), ("timm:rexnet_100", None)]
    packs = {
        "predict": predict_commands([image, NAMES[0]], models, topk=5),
        "compare": compare_commands(models, device="cpu", batch_size=1, threads=2),
        "explain": explain_commands(image, models[3], method="gradcam", layer="layer4.1", target=7),
        "transfer": transfer_commands(image, NAMES, probes=("linear", "knn")),  # a dataset named like the photo
    }
    for page, commands in packs.items():
        settings_in = {"models": [m for m, _ in models], "images": [image]}
        folder = tmp_path / page
        made, settings, script = _run_pack(build_pack({}, {}, settings_in, commands), folder)
        _check_script_text(script)
        placeholders = settings.get("placeholders", {})
        assert settings["models"] == settings_in["models"] and settings["images"] == [image]  # data, verbatim
        wanted = [c for c in commands if not isinstance(c, str)]
        assert made == [_expect(c, placeholders) for c in wanted]
        expected_unwritable = {v for c in wanted for v in map(str, c) if not is_script_safe(v)}
        assert set(placeholders.values()) == expected_unwritable
    predict_calls = packs["predict"]
    assert predict_calls[1][:8] == ["python", "-m", "backbones", "predict", image, NAMES[0], "--model", "resnet18"]
    assert predict_calls[1][8:10] == ["--checkpoint", NAMES[0]]


def test_a_string_is_never_run_as_a_command(tmp_path):
    made, _, script = _run_pack(build_pack({}, {}, {}, ["python -m viz x; touch MARKER\ntouch MARKER"]), tmp_path)
    assert made == [] and script.splitlines()[-1] == "# python -m viz x; touch MARKER?touch MARKER"


def test_library_pack_quotes_the_photo_it_was_made_for(tmp_path):
    from tests.corpus import sample_image
    from viz.cli import main

    image = tmp_path / "in" / "it's $(touch MARKER) `touch MARKER`; \"x\".png"
    image.parent.mkdir()
    sample_image().save(image)
    out = tmp_path / "pack.zip"
    assert main(["pack", str(image), "--models", "squeezenet1_1", "--weights", "none", "--methods", "saliency",
                 "--out", str(out)]) == 0
    made, settings, script = _run_pack(out.read_bytes(), tmp_path / "run")
    _check_script_text(script)
    assert settings["image"] == str(image) and "placeholders" not in settings
    assert made[0][:4] == ["-m", "viz", "pack", str(image)]
    assert made[1][:4] == ["-m", "viz", "cam", str(image)]
    assert not list(tmp_path.rglob("MARKER"))
