"""The catalog: every entry builds offline and its parameter count equals the published one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from backbones.errors import UnknownModelError
from backbones.zoo.catalog import (
    CURATED,
    DEFAULT_MODEL,
    get_entry,
    list_models,
    timm_published,
)
from backbones.zoo.models import build_architecture, build_empty, count_parameters

ALL = [e.name for e in list_models()]


def test_catalog_has_every_torchvision_model_and_the_listed_timm_and_bundled_ones():
    import torchvision

    tv = set(torchvision.models.list_models(module=torchvision.models))
    names = set(ALL)
    assert tv <= names
    assert {"timm:rexnet_100", "timm:ghostnet_100"} | {f"timm:tf_efficientnet_lite{i}" for i in range(5)} <= names
    assert {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"} <= names
    assert DEFAULT_MODEL == "efficientnet_lite0"


def test_curated_selection_comes_first_in_its_order():
    curated = [e.name for e in list_models(default_only=True)]
    assert curated == list(CURATED)
    assert ALL[: len(CURATED)] == list(CURATED)


@pytest.mark.parametrize("name", ALL)
def test_every_entry_builds_with_weights_none_and_counts_its_published_parameters(name):
    entry = get_entry(name)
    total, trainable = count_parameters(build_empty(entry))
    assert total == trainable
    if entry.source == "torchvision":
        assert total == entry.params  # torchvision's weights.meta["num_params"]
    else:
        # timm publishes millions rounded to 2 decimals; our figure is the exact count
        published = timm_published().get(entry.arch)
        assert total == entry.params
        if published:
            assert abs(total / 1e6 - float(published["param_count"])) <= 0.005 + 1e-9


def test_rexnet_matches_the_seed_notes_count():
    # The seed notes' table: ReXNet-1.0x has 4,796,873 parameters.
    assert get_entry("timm:rexnet_100").params == 4_796_873
    # and the table's EfficientNet-B0 figure is the 1000-class torchvision model
    assert get_entry("efficientnet_b0").params == 5_288_548


@pytest.mark.parametrize("name", CURATED)
def test_curated_models_run_a_real_forward_pass_untrained(name):
    entry = get_entry(name)
    model = build_architecture(entry)
    with torch.inference_mode():
        out = model(torch.zeros(1, *entry.input_size))
    assert out.shape == (1, 1000)


def test_published_figures_and_preprocessing_travel_with_the_entry():
    r50 = get_entry("resnet50")
    assert r50.published_top1 == pytest.approx(80.858)  # IMAGENET1K_V2, the default
    assert r50.weights_named("IMAGENET1K_V1").top1 == pytest.approx(76.13)
    assert r50.preprocessing.resize_size == 232 and r50.preprocessing.crop_size == 224
    inc = get_entry("inception_v3")
    assert inc.input_size == (3, 299, 299) and inc.preprocessing.resize_size == 342
    lite1 = get_entry("efficientnet_lite1")
    assert lite1.input_size == (3, 240, 240)
    assert lite1.preprocessing.mean == (0.5, 0.5, 0.5) and lite1.preprocessing.interpolation == "bicubic"
    assert lite1.preprocessing.crop_pct == pytest.approx(0.882, abs=0.001)
    rex = get_entry("timm:rexnet_100")
    assert rex.published_top1 == pytest.approx(77.862) and "timm" in rex.published_source


def test_unknown_name_suggests_close_ones():
    with pytest.raises(UnknownModelError, match="resnet50"):
        get_entry("resnet5O")
    assert get_entry("rexnet_100").name == "timm:rexnet_100"  # the timm: prefix is optional


def test_list_json_has_the_contract_fields(capsys):
    from backbones.cli import main

    assert main(["list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == list(CURATED)
    required = {"name", "source", "family", "params", "macs", "published_top1", "published_top5", "input_size", "weights", "default"}
    for r in rows:
        assert required <= set(r)
        assert r["source"] in ("torchvision", "timm", "bundled")
        assert r["default"] is True
        assert all(w["status"] in ("bundled", "cached", "downloadable", "none") for w in r["weights"])
    lite = next(r for r in rows if r["name"] == "efficientnet_lite0")
    [bundled] = lite["weights"]
    assert (bundled["name"], bundled["status"], bundled["size_estimated"]) == ("bundled", "bundled", False)
    assert bundled["size_bytes"] > 10_000_000  # the shipped file's own size
    r50 = next(r for r in rows if r["name"] == "resnet50")
    assert {w["name"] for w in r50["weights"]} == {"IMAGENET1K_V1", "IMAGENET1K_V2"}
    assert r50["weights"][0]["status"] == "downloadable"  # nothing cached in the test TORCH_HOME


def test_list_json_only_adds_download_sizes(tmp_path, monkeypatch, capsys):
    """``list --all --json`` as before sizes were added (tests/data, made with empty caches), plus
    ``size_bytes`` / ``size_estimated`` in each weights object and nothing else. (Since issue 23 the
    file also holds ``macs`` counted here and the published figure beside it, each with its source.)"""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    from backbones.cli import main

    assert main(["list", "--all", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    for row in rows:
        for weights in row["weights"]:
            size, estimated = weights.pop("size_bytes"), weights.pop("size_estimated")
            assert size is None or (isinstance(size, int) and size > 0), (row["name"], size)
            assert estimated is (row["source"] == "timm")  # timm: 4 bytes per parameter, said so
    before = (Path(__file__).resolve().parents[1] / "data" / "list_all_before_sizes.json").read_text(encoding="utf-8")
    assert json.dumps(rows, indent=2, ensure_ascii=False) + "\n" == before
