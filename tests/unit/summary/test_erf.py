"""backbones.summary.erf: the effective receptive field (Luo et al. 2016) against hand-worked and theoretical sizes."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from backbones.errors import BackboneError
from backbones.layouts import detect_layout
from backbones.summary import summarize_model
from backbones.summary.erf import measure_erf, measure_square


def ones_conv(k: int, *, stride: int = 1) -> nn.Conv2d:
    conv = nn.Conv2d(3, 2, k, stride=stride, padding=k // 2, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    return conv


@pytest.mark.parametrize("k", [1, 3, 5, 7])
def test_a_single_conv_layer_has_its_kernel_as_effective_receptive_field(k):
    erf = measure_erf(nn.Sequential(ones_conv(k)), layers=["0"], input_size=(3, 33, 33), images=2)
    layer = erf.find("0")
    assert layer.side == k and not layer.whole_input
    assert layer.grid == (33, 33) and layer.unit == (16, 16) and layer.centre == (16.0, 16.0)
    assert layer.map.shape == (33, 33) and abs(float(layer.map.sum()) - 1) < 1e-5
    assert (layer.map > 0).sum() == k * k  # the gradient lies exactly on the kernel's taps
    assert layer.radius <= k / 2 * 2**0.5 + 0.5 and erf.inputs == "noise" and erf.passes == 2


def test_the_square_and_disc_of_a_hand_made_map():
    m = torch.zeros(9, 9)
    m[4, 4] = 0.9
    m[3:6, 3:6] += 0.1 / 9  # 0.1 spread over the 3x3 block around the centre
    side, radius, centre, whole = measure_square(m, share=0.95)
    assert side == 3 and centre == pytest.approx((4.0, 4.0)) and not whole
    side, _, _, _ = measure_square(m, share=0.9)
    assert side == 1  # the centre alone holds 0.9 + 0.1 / 9
    with pytest.raises(BackboneError, match="zero everywhere"):
        measure_square(torch.zeros(4, 4))


def test_a_stack_of_3x3_convs_grows_with_depth_and_stays_inside_the_theoretical_field():
    torch.manual_seed(0)
    layers = []
    for _ in range(6):
        layers += [nn.Conv2d(3 if not layers else 8, 8, 3, padding=1), nn.ReLU()]
    net = nn.Sequential(*layers).eval()
    convs = [str(i) for i in range(0, 12, 2)]
    erf = measure_erf(net, layers=convs, input_size=(3, 48, 48), images=2)
    summary = summarize_model(net, input_size=(3, 48, 48))
    sides = [erf.find(n).side for n in convs]
    fields = [summary.find(n).receptive_field for n in convs]
    assert fields == [3, 5, 7, 9, 11, 13]
    assert all(side <= rf for side, rf in zip(sides, fields)), (sides, fields)
    assert sides == sorted(sides) and sides[-1] > sides[0]
    assert sides[0] == 3


def test_the_model_is_left_as_it_was_and_bad_input_is_one_line():
    net = nn.Sequential(ones_conv(3), nn.ReLU(inplace=True), ones_conv(3))
    net[2] = nn.Conv2d(2, 2, 3, padding=1)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    measure_erf(net, layers=["0", "2"], input_size=(3, 16, 16), images=1)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert not any(m._forward_hooks for m in net.modules()) and net[1].inplace
    with pytest.raises(BackboneError, match="over the limit of 3"):
        measure_erf(net, layers=["0", "2"], input_size=(3, 16, 16), images=2, max_passes=3)
    with pytest.raises(BackboneError, match="no layer 'nope'"):
        measure_erf(net, layers=["nope"], input_size=(3, 16, 16), images=1)
    with pytest.raises(BackboneError, match="images must be"):
        measure_erf(net, images=0)


def test_token_layers_of_a_small_vit_are_read_on_their_patch_grid():
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    vit = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32).eval()
    erf = measure_erf(vit, input_size=(3, 32, 32), images=2)
    names = [layer.name for layer in erf.layers]
    assert "conv_proj" in names and "encoder.layers.encoder_layer_1" in names
    patch = erf.find("conv_proj")
    assert patch.side == 8 and patch.grid == (4, 4)  # one token sees its own 8x8 patch
    block = erf.find("encoder.layers.encoder_layer_1")
    assert block.layout == "tokens" and block.grid == (4, 4) and block.channels == "random signs"
    assert block.side > patch.side  # attention mixes in other patches
    assert erf.find("encoder.layers").side == block.side  # a container passing its last block on: measured once
    assert erf.passes == 2 * (len(names) - 2)  # encoder.layers and encoder only pass on a block's / ln's output
    assert detect_layout((17, 16), (32, 32)).prefix == 1
    assert detect_layout((56, 56, 96), (224, 224)).kind == "NHWC"
    assert detect_layout((96, 56, 56), (224, 224)).kind == "NCHW"


def test_summary_cli_adds_erf_to_the_spatial_rows(capsys):
    from backbones.cli.runner import main

    code = main(["summary", "squeezenet1_1", "--erf", "--images", "1", "--depth", "1", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads(out)
    assert doc["erf"]["trained"] is False and doc["erf"]["inputs"] == "photos" and doc["erf"]["images"] == 1
    row = next(r for r in doc["layers"] if r["name"] == "features")
    assert row["erf"]["share"] == 0.95 and 0 < row["erf"]["side_px"] <= 224
    assert row["erf"]["ratio_to_rf"] == pytest.approx(row["erf"]["side_px"] / row["receptive_field"], abs=1e-3)
    assert next(r for r in doc["layers"] if r["name"] == "classifier")["erf"] is None  # a vector: no ERF

    code = main(["summary", "squeezenet1_1", "--images", "2"])
    _, err = capsys.readouterr()
    assert code == 2 and err.strip() == "error: --images goes with --erf"
