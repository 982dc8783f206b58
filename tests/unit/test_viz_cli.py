"""``python -m viz``: JSON fields, the .npy heatmap, PNG outputs, one-line errors with exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from viz.cli import main

ROOT = Path(__file__).resolve().parents[2]


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cam_json_npy_and_overlay(capsys, tmp_path, grace_hopper):
    npy, png = tmp_path / "heat.npy", tmp_path / "sub" / "overlay.png"
    code, out, err = run_cli(capsys, "cam", grace_hopper, "--target", "military uniform", "--npy", npy, "--out", png, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert set(doc) == {"model", "method", "layer", "target", "shape", "peak"}
    assert doc["model"] == "efficientnet_lite0" and doc["method"] == "gradcam" and doc["layer"] == "bn2"
    assert doc["target"]["index"] == 652 and doc["target"]["label"] == "military uniform"
    assert 0 < doc["target"]["prob"] < 1
    assert doc["shape"] == [600, 512]  # grace_hopper.jpg is 512 wide, 600 high
    heat = np.load(npy)
    assert heat.dtype == np.float32 and heat.shape == (600, 512)
    assert heat.min() >= 0.0 and heat.max() <= 1.0 and heat.max() > 0.9
    r, c = doc["peak"]
    assert heat[r, c] == heat.max()
    with Image.open(png) as img:
        assert img.size == (512, 600) and img.mode == "RGB"


def test_cam_text_output_with_another_method(capsys, grace_hopper):
    code, out, err = run_cli(capsys, "cam", grace_hopper, "--method", "saliency", "--target", "652")
    assert code == 0, err
    assert "saliency" in out and "military uniform (class 652" in out and "600x512" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--layer", "blocks.9"], "blocks.6"),
        (["--target", "no such thing"], "no class"),
        (["--target", "1000"], "0..999"),
        (["--method", "lime"], "gradcam"),
        (["--model", "nonsense"], "nonsense"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(capsys, grace_hopper, argv, message):
    code, out, err = run_cli(capsys, "cam", grace_hopper, *argv)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err
    assert out == ""


def test_missing_image_exit_2(capsys, tmp_path):
    code, _, err = run_cli(capsys, "cam", tmp_path / "missing.jpg")
    assert code == 2 and err.startswith("error: ")


def test_features_json_and_grid(capsys, tmp_path, grace_hopper):
    grid = tmp_path / "grid.png"
    code, out, err = run_cli(capsys, "features", grace_hopper, "--layer", "blocks.6", "--top", "4", "--out", grid, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["layer"] == "blocks.6" and doc["output_shape"] == [320, 7, 7]
    assert len(doc["channels"]) == 4
    means = [c["mean"] for c in doc["channels"]]
    assert means == sorted(means, reverse=True)
    with Image.open(grid) as img:  # a real PNG with one tile per channel asked for (4 tiles in a row or a grid)
        assert img.format == "PNG" and img.width >= 4 * 32 // 2 and img.height >= 32
        colours = img.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) > 16  # feature maps, not a blank image


def test_layers_and_methods_listings(capsys):
    code, out, _ = run_cli(capsys, "layers", "--depth", "1", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["default"] == "bn2"
    assert [layer["name"] for layer in doc["layers"]] == ["conv_stem", "bn1", "blocks", "conv_head", "bn2"]
    code, out, _ = run_cli(capsys, "methods", "--json")
    assert [m["name"] for m in json.loads(out)][:1] == ["gradcam"]


def test_python_dash_m_viz_exits_2_without_traceback(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "viz", "cam", str(tmp_path / "nope.png"), "--method", "gradcam"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "viz", "cam"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ")
