"""The text table and the `summary` CLI command (JSON and text)."""

from __future__ import annotations

import json

import pytest
from torch import nn

from backbones.cli import main
from backbones.summary import format_summary, summarize_model

ISSUE_LAYER_FIELDS = {
    "name", "type", "depth", "parent", "output_shape", "params", "mult_adds", "trainable", "kernel_size",
    "stride", "padding", "neurons", "receptive_field", "jump", "derivation",
}
ISSUE_TOP_FIELDS = {"model", "input_size", "total_params", "trainable_params", "total_mult_adds", "layers"}


def test_text_table_cut_at_a_depth():
    s = summarize_model("resnet18")
    text = format_summary(s, depth=1)
    assert "├─layer4: Sequential" in text and "layer4.0" not in text
    assert "Total params: 11,689,512" in text


def test_cli_json_has_the_issue_fields(capsys):
    assert main(["summary", "alexnet", "--json", "--depth", "1"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert ISSUE_TOP_FIELDS <= set(doc)
    assert doc["model"] == "alexnet" and doc["input_size"] == [3, 224, 224]
    assert doc["total_params"] == 61_100_840 and doc["total_mult_adds"] == 714_188_480
    assert [row["name"] for row in doc["layers"]] == ["", "features", "avgpool", "classifier"]
    for row in doc["layers"]:
        assert ISSUE_LAYER_FIELDS <= set(row)
    features = doc["layers"][1]
    assert features["output_shape"] == [1, 256, 6, 6] and features["receptive_field"] == 195
    assert features["kernel_size"] is None and features["derivation"] is None and features["parent"] == ""


def test_cli_text_input_size_and_errors(capsys):
    assert main(["summary", "resnet18", "--input-size", "3", "128", "128", "--depth", "2"]) == 0
    out = capsys.readouterr().out
    assert "Input size: 3x128x128" in out and "[1, 512, 4, 4]" in out and "Mult-Adds" in out
    assert main(["summary", "no_such_model"]) == 2
    assert "error:" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["summary", "alexnet", "--input-size", "3", "224"])
    assert exc.value.code == 2


class _Gram(nn.Module):
    """A container that computes a product itself: fc 3 positions * 4 * 4 = 48 MACs, y @ y^T 3 * 3 * 4 = 36."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4, bias=False)

    def forward(self, x):  # (1, 3, 4)
        y = self.fc(x)
        return y @ y.transpose(-1, -2)


def test_an_expanded_container_shows_the_macs_it_computes_itself_so_the_column_adds_up():
    s = summarize_model(nn.Sequential(_Gram()), input_size=(1, 3, 4))
    assert s.total_mult_adds == s.find("0").mult_adds == 48 + 36
    lines = {line.split(":")[0].strip("│├└─ "): line for line in format_summary(s).splitlines()}
    assert lines["0"].rstrip().split()[-3] == "36"  # Gram's own product; fc's 48 is on its own row
    assert lines["fc"].rstrip().split()[-3] == "48"
    collapsed = {line.split(":")[0].strip("│├└─ "): line for line in format_summary(s, depth=1).splitlines()}
    assert collapsed["0"].rstrip().split()[-3] == "84"  # collapsed: everything below
