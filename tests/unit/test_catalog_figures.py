"""Every catalog backbone's parameters and MACs agree with what its source published, and with each other.

One summary per model (the layer tree every page and ``summary --json`` show), built once on the meta
device in this process and shared by the checks: parameters equal torchvision's ``num_params`` (timm's
``param_count``), total MACs are within 1% of torchvision's ``_ops`` (2% of timm's ``infer_gmacs``
where timm lists one), the blocks add up to the total, and ``data/counted.json`` (which Compare and
Models read) holds the same figures. About half a minute for the whole catalog on 2 cores.
"""

from __future__ import annotations

import pytest

from backbones.summary import summarize_model
from backbones.zoo.catalog import counted_figures, get_entry, list_models, timm_cpu_benchmark, timm_published

NAMES = [e.name for e in list_models()]
TIMM_NAMES = [e.name for e in list_models() if e.source != "torchvision"]
TORCHVISION_NAMES = [e.name for e in list_models(source="torchvision")]

# torchvision publishes GMACs with three decimals (shufflenet_v2_x0_5: 0.04): half a unit of the last digit.
TORCHVISION_ROUNDING = 0.0005e9
# timm's infer_gmacs have two decimals.
TIMM_ROUNDING = 0.005e9

# timm's infer_gmacs come from DeepSpeed's flops profiler, which also counts one MAC per element of every
# normalisation and activation output; conv / linear / matmul MACs are the same. For ResNet-50 that is
# 4.089 G counted + 0.011 G (BatchNorm outputs) + 0.010 G (ReLU outputs) = 4.11 G, timm's figure. In the
# light models those elements are 3-6% of the total, so there timm's figure must be above ours, by less.
TIMM_COUNTS_ELEMENTS = {
    "mobilenetv3_large_100": 0.07,
    "efficientnet_lite0": 0.045,
    "tf_efficientnet_lite0": 0.045,
    "ghostnet_100": 0.07,
    "efficientnet_b0": 0.045,
    "rexnet_100": 0.035,
}

_SUMMARIES: dict = {}


def summary_of(name: str):
    """The catalog summary of ``name``, built once per test session (the library cache keeps only 64)."""
    if name not in _SUMMARIES:
        _SUMMARIES[name] = summarize_model(name)
    return _SUMMARIES[name]


def _g(n: float) -> str:
    return f"{n / 1e9:.4f} G"


@pytest.mark.parametrize("name", TORCHVISION_NAMES)
def test_torchvision_params_and_macs_equal_weights_meta(name):
    from torchvision.models import get_model_weights

    meta = get_model_weights(name).DEFAULT.meta
    s = summary_of(name)
    assert s.total_params == meta["num_params"], f"{name}: params counted {s.total_params:,}, published {meta['num_params']:,}"
    published = meta["_ops"] * 1e9
    tolerance = max(0.01 * published, TORCHVISION_ROUNDING)
    assert abs(s.total_mult_adds - published) <= tolerance, (
        f"{name}: MACs counted {_g(s.total_mult_adds)}, published {_g(published)} (torchvision _ops)"
    )


@pytest.mark.parametrize("name", TIMM_NAMES)
def test_timm_params_and_macs_agree_with_timms_tables(name):
    entry = get_entry(name)
    s = summary_of(name)
    row = timm_published().get(entry.arch)
    if row is not None:  # param_count in millions, two decimals
        published = float(row["param_count"]) * 1e6
        assert abs(s.total_params - published) <= 0.005e6, (
            f"{name}: params counted {s.total_params:,}, published {published:,.0f} (timm param_count)"
        )
    bench = timm_cpu_benchmark().get(entry.arch)
    if bench is None:
        return
    published = float(bench["infer_gmacs"]) * 1e9
    counted = s.total_mult_adds
    message = f"{name}: MACs counted {_g(counted)}, published {_g(published)} (timm infer_gmacs)"
    extra = TIMM_COUNTS_ELEMENTS.get(entry.arch)
    if extra is None:
        assert abs(counted - published) <= 0.02 * published + TIMM_ROUNDING, message
    else:
        assert counted < published <= counted * (1 + extra) + TIMM_ROUNDING, message


@pytest.mark.parametrize("name", NAMES)
def test_blocks_add_up_and_counted_json_is_current(name):
    s = summary_of(name)
    blocks = s.blocks(1)
    assert sum(b.mult_adds for b in blocks) == s.total_mult_adds == s.layers[0].mult_adds, (
        f"{name}: blocks add up to {sum(b.mult_adds for b in blocks):,} MACs, total {s.total_mult_adds:,}"
    )
    assert sum(b.params_total for b in blocks) + s.layers[0].params == s.total_params
    # Compare, Models and the CLI list read counted.json: regenerate with python -m backbones.measure.compute
    assert counted_figures()[name] == {"params": s.total_params, "macs": s.total_mult_adds}, (
        f"{name}: counted.json says {counted_figures()[name]}, the summary {s.total_params:,} params, "
        f"{s.total_mult_adds:,} MACs"
    )
    entry = get_entry(name)
    assert (entry.params, entry.macs) == (s.total_params, s.total_mult_adds)


def test_the_catalog_file_is_current_and_read_without_the_libraries():
    # data/catalog.json: what every page reads first; regenerate with python -m backbones.measure.compute
    import json
    import subprocess
    import sys

    from backbones.zoo.catalog import build_catalog
    from backbones.zoo.snapshot import read_snapshot

    kept, built = read_snapshot(), build_catalog()
    assert kept is not None, "data/catalog.json is missing or was written for other torchvision / timm versions"
    assert list(kept) == list(built)
    for name, entry in built.items():  # as JSON: NaN accuracies (feature-only weights) compare equal there
        assert json.dumps(kept[name].to_dict()) == json.dumps(entry.to_dict()), name
    # The first paint's reads (catalog, published figures, weights status) import neither torch nor timm.
    code = (
        "import sys; from backbones.zoo.catalog import list_models;"
        "from backbones.zoo.fetching import weights_overview; from backbones.zoo.figures import backbone_figures;"
        "from backbones.results.comparison import comparison_rows;"
        f"assert len(list_models()) == {len(built)}; backbone_figures('convnext_tiny');"
        "weights_overview(['resnet50', 'timm:rexnet_100', 'efficientnet_lite0']);"
        "print(sorted(m for m in ('torch', 'torchvision', 'timm', 'captum') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_one_figure_per_backbone_and_the_published_one_beside_it_where_they_differ():
    from backbones.zoo.figures import backbone_figures

    r50 = backbone_figures("resnet50")
    assert (r50.params, r50.macs) == (get_entry("resnet50").params, get_entry("resnet50").macs)
    assert r50.published_macs == 4_089_000_000 and "_ops" in r50.published_macs_source
    assert not r50.differs  # 4.0892 G counted, 4.089 G published: one figure
    # A checkpoint with a 10-class head: 2048*10+10 parameters in the head instead of 2048*1000+1000.
    head = 2048 * 990 + 990
    checkpoint = backbone_figures("resnet50", counted=(r50.params - head, r50.macs - 2048 * 990))
    assert checkpoint.differs and checkpoint.published_params == 25_557_032
    # Another input size: counted there, the published figure is for 224.
    small = backbone_figures("resnet50", input_size=(3, 160, 160))
    assert small.differs and small.macs < r50.macs and small.published_input_size == (3, 224, 224)
    # timm's infer_gmacs also count normalisation and activation elements: shown beside ours.
    assert backbone_figures("timm:rexnet_100").differs
