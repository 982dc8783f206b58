"""ModelSummary's tree helpers, as the dashboard uses them."""

from __future__ import annotations

import pytest

from backbones.errors import LayerError
from backbones.summary import summarize_model
from tests.unit.summary.nets import Residual


def test_tree_helpers_for_the_dashboard():
    s = summarize_model("resnet18")
    assert [r.name for r in s.children()] == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "fc"]
    assert [r.name for r in s.children("layer1")] == ["layer1.0", "layer1.1"]
    assert {r.depth for r in s.rows(1)} == {0, 1}
    blocks = s.blocks(1)
    assert sum(b.params_total for b in blocks) == s.total_params
    assert sum(b.mult_adds for b in blocks) == s.total_mult_adds
    assert {r.type for r in s.search("downsample")} == {"Sequential", "Conv2d", "BatchNorm2d"}
    assert all(r.type == "BatchNorm2d" for r in s.search("batchnorm"))
    i = s.index("layer4")
    assert s.layers[i + 1].name == "layer4.0"
    spatial = s.spatial_layers()
    assert "layer4" in spatial and "layer4.1.conv2" in spatial
    assert "fc" not in spatial and "avgpool" not in spatial and "" not in spatial


def test_find_and_index_agree_and_name_close_matches():
    s = summarize_model(Residual(), input_size=(3, 8, 8))
    for i, row in enumerate(s.layers):
        assert s.index(row.name, call=row.call) == i
        assert s.find(row.name, call=row.call) is row
    with pytest.raises(LayerError, match=r"Residual has no layer 'deep\.3'; did you mean deep\.") as exc:
        s.index("deep.3")
    assert "deep.0" in str(exc.value)
    with pytest.raises(LayerError, match="no layer 'short'"):  # ran once: there is no second call
        s.find("short", call=1)
    with pytest.raises(LayerError, match=r"; 7 layers, e\.g\. short, deep, deep\.0"):  # nothing close
        s.find("xyzzy")
