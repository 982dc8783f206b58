"""Receptive fields and jumps traced along the data flow, checked against fields worked out by hand."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from backbones.summary import summarize_model
from backbones.summary.tracer import Tracer
from tests.unit.summary.nets import Residual, check_consistent, rf


def test_alexnet_receptive_fields_by_hand():
    s = summarize_model("alexnet")
    # conv1 k11 s4: rf 11, jump 4; pool1 k3 s2: 11+2*4 = 19, jump 8; conv2 k5: 19+4*8 = 51
    assert rf(s, "features.0") == (11, 4)
    assert rf(s, "features.1") == (11, 4)  # ReLU keeps it
    assert rf(s, "features.2") == (19, 8)
    assert rf(s, "features.3") == (51, 8)
    # pool2: 51+2*8 = 67, jump 16; conv3/4/5 k3: +2*16 each -> 99, 131, 163; pool3: 163+2*16 = 195, jump 32
    assert rf(s, "features.5") == (67, 16)
    assert [rf(s, f"features.{i}")[0] for i in (6, 8, 10)] == [99, 131, 163]
    assert rf(s, "features.12") == (195, 32)
    assert rf(s, "features") == (195, 32)  # a container carries its output's field
    assert rf(s, "avgpool") == (195, 32)  # 6x6 -> 6x6: identity windows
    # flatten of the 6x6 map: every unit sees the whole input, full extent 195 + 5*32 = 355
    fc = s.find("classifier.6")
    assert (fc.receptive_field, fc.jump, fc.whole_input) == (355, None, True)
    assert s.find("features.12").whole_input is False


def test_vgg16_receptive_fields_by_hand():
    s = summarize_model("vgg16")
    # 3x3 convs add 2*jump, 2x2 pools add 1*jump and double it:
    # block1 3, 5 | pool 6 (j2) | block2 10, 14 | pool 16 (j4) | block3 24, 32, 40 | pool 44 (j8)
    # block4 60, 76, 92 | pool 100 (j16) | block5 132, 164, 196 | pool 212 (j32)
    convs_and_pools = [0, 2, 4, 5, 7, 9, 10, 12, 14, 16, 17, 19, 21, 23, 24, 26, 28, 30]
    expected = [3, 5, 6, 10, 14, 16, 24, 32, 40, 44, 60, 76, 92, 100, 132, 164, 196, 212]
    jumps = [1, 1, 2, 2, 2, 4, 4, 4, 4, 8, 8, 8, 8, 16, 16, 16, 16, 32]
    assert [rf(s, f"features.{i}") for i in convs_and_pools] == list(zip(expected, jumps))


class Branches(nn.Module):
    """An Inception-like concat, a functional pool, a dilated conv and an SE gate."""

    def __init__(self):
        super().__init__()
        self.wide = nn.Conv2d(3, 2, 5, padding=2)  # rf 5
        self.narrow = nn.Conv2d(3, 2, 1)  # rf 1
        self.dilated = nn.Conv2d(4, 4, 3, padding=2, dilation=2)
        self.gate = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        y = torch.cat([self.narrow(x), self.wide(x)], 1)  # max(1, 5) = 5
        y = F.max_pool2d(y, 3, 2, 1)  # 5 + 2*1 = 7, jump 2; 16x16 -> 8x8
        y = self.dilated(y)  # 7 + 2*(3-1)*2 = 15, jump 2
        g = torch.sigmoid(self.gate(y.mean((2, 3), keepdim=True)))  # squeeze: whole input
        y = y * g  # an SE gate is left out of the merge: still 15
        return y.mean((2, 3))  # global mean: 15 + (8-1)*2 = 29, whole input


def test_residual_merge_takes_the_larger_path_not_the_module_order():
    s = summarize_model(Residual(), input_size=(3, 16, 16))
    assert [r.name for r in s.layers] == ["", "short", "deep", "deep.0", "deep.1", "deep.2", "pool", "head"]
    assert rf(s, "short") == (1, 1)
    assert rf(s, "deep") == (5, 1)
    assert rf(s, "pool") == (6, 2)
    assert rf(s, "head") == (10, 2)
    assert rf(s, "") == (10, 2)
    assert s.find("pool").rf_derivation == "rf 6 = 5+(2-1)*1; jump 2 = 1*2"


def test_concat_functional_pool_dilation_and_se_gate():
    s = summarize_model(Branches(), input_size=(3, 16, 16))
    assert rf(s, "wide") == (5, 1) and rf(s, "narrow") == (1, 1)
    assert rf(s, "dilated") == (15, 2)
    assert s.find("gate").whole_input is True  # works on the squeezed 1x1 map
    root = s.find("")
    assert (root.receptive_field, root.jump, root.whole_input) == (29, None, True)
    assert s.spatial_layers() == ("narrow", "wide", "dilated")  # the 1x1 gate is no CAM layer


class Adaptive(nn.Module):
    """Adaptive pooling with uneven, global and repeated windows on a 7x7 map (rf 3, jump 1 after the conv)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.uneven = nn.AdaptiveAvgPool2d((3, 1))
        self.repeat = nn.AdaptiveMaxPool2d((14, 14))

    def forward(self, x):
        y = self.conv(x)
        return self.uneven(y).flatten(1), self.repeat(y)


def test_adaptive_pooling_windows_by_hand():
    s = summarize_model(Adaptive(), input_size=(3, 7, 7))
    # H 7 -> 3: windows [0,3) [2,5) [4,7), PyTorch's floor(i*7/3) .. ceil((i+1)*7/3): k 3, step 7//3 = 2:
    # rf 3+(3-1)*1 = 5, jump 2, approximate; W 7 -> 1: one window of 7: 3+6*1 = 9, jump 7
    uneven = s.find("uneven")
    assert (uneven.receptive_field_hw, uneven.jump_hw, uneven.receptive_field, uneven.jump) == ((5, 9), (2, 7), 9, 7)
    assert uneven.whole_input is False and uneven.rf_note.startswith("approximate")
    assert "uneven windows" in uneven.derivation
    # 7 -> 14: windows of one element, each used twice: field and jump stay, approximate
    repeat = s.find("repeat")
    assert (repeat.receptive_field_hw, repeat.jump_hw) == ((3, 3), (1, 1)) and repeat.rf_note.startswith("approximate")


def test_resnet18_receptive_fields_by_hand():
    s = summarize_model("resnet18")
    # conv1 k7 s2: 7, j2; maxpool k3 s2: 7+2*2 = 11, j4
    assert rf(s, "conv1") == (7, 2)
    assert rf(s, "maxpool") == (11, 4)
    # layer1: four 3x3 convs at jump 4 (+8 each); the identity path (11) loses every add
    assert rf(s, "layer1.0.conv1") == (19, 4)
    assert rf(s, "layer1.0") == (27, 4)
    assert rf(s, "layer1") == (43, 4)
    # layer2.0: conv1 s2 at j4 -> 51, j8; conv2 -> 67; downsample 1x1 s2 keeps 43 (j8); add -> 67
    assert rf(s, "layer2.0.downsample.0") == (43, 8)
    assert rf(s, "layer2.0") == (67, 8)
    # layer2.1 +16 +16 -> 99; layer3: +16 (s2, j16), +32, +32, +32 -> 211
    assert rf(s, "layer2") == (99, 8)
    assert rf(s, "layer3") == (211, 16)
    # layer4: conv1 s2 at j16: 211+32 = 243, j32; then +64 three times -> 307, 371, 435
    assert rf(s, "layer4.0.conv1") == (243, 32)
    assert rf(s, "layer4.0.downsample.0") == (211, 32)
    assert rf(s, "layer4.0") == (307, 32)
    assert rf(s, "layer4") == (435, 32)
    # global average pool over 7x7: full extent 435 + 6*32 = 627, jump 7*32 = 224
    avg = s.find("avgpool")
    assert (avg.receptive_field, avg.jump, avg.whole_input) == (627, 224, True)
    assert "whole input" in avg.rf_note


@pytest.mark.parametrize(
    "name",
    [
        "googlenet",
        "inception_v3",
        "resnet50",
        "mobilenet_v3_large",
        "densenet121",
        "efficientnet_lite0",
        "timm:rexnet_100",
        "convnext_tiny",
        "shufflenet_v2_x1_0",
        "regnet_y_800mf",
    ],
)
def test_every_spatial_layer_has_a_receptive_field_across_the_catalog(name):
    s = summarize_model(name)
    assert s.receptive_fields and s.total_params > 0
    check_consistent(s)
    missing = [r.name for r in s.layers if len(r.output_shape) == 4 and r.receptive_field is None]
    assert missing == []
    # fields only grow along the network: the model's output sees at least what its first conv sees
    first_conv = next(r for r in s.layers if r.type.startswith("Conv2d"))
    assert s.layers[0].receptive_field > first_conv.receptive_field >= 2
    assert s.layers[0].whole_input
    spatial = s.spatial_layers()
    # every spatial layer is a real 4-D map of this model (more than 1x1), named once
    by_name = {r.name: r for r in s.layers}
    assert spatial and len(set(spatial)) == len(spatial)
    assert all(len(by_name[n].output_shape) == 4 and by_name[n].output_shape[2] * by_name[n].output_shape[3] > 1
               for n in spatial)
    assert first_conv.name in spatial


def test_transformers_report_no_receptive_field():
    s = summarize_model("vit_b_16")
    assert s.receptive_fields is False
    assert all(r.receptive_field is None and r.jump is None for r in s.layers)
    assert all("does not apply" in r.rf_note for r in s.layers)
    assert any("do not apply" in n for n in s.notes)
    assert s.total_params == 86_567_656
    assert sum(r.params for r in s.layers) == s.total_params
    # attention's out_proj weights are used by its parent: not reported as a head that never runs
    assert not any("not run" in n for n in s.notes)
    assert s.spatial_layers() == ("conv_proj",)


class Upsampling(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.up = nn.Upsample(scale_factor=2)
        self.after = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        return self.after(self.up(self.conv(x)))


def test_untraceable_ops_give_null_fields_with_a_note_not_a_wrong_number():
    s = summarize_model(Upsampling(), input_size=(3, 8, 8))
    assert rf(s, "conv") == (3, 1)
    for name in ("up", "after", ""):
        row = s.find(name)
        assert row.receptive_field is None and "interpolate is not supported" in row.rf_note
    assert any("interpolate" in n for n in s.notes)
    assert s.find("after").output_shape == (1, 4, 16, 16)  # the rest of the summary is intact


def test_a_failing_trace_degrades_to_null_fields(monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("boom")

    monkeypatch.setattr(Tracer, "_rule", broken)
    s = summarize_model(Residual(), input_size=(3, 8, 8))
    assert s.receptive_fields is False
    assert all(r.receptive_field is None for r in s.layers)
    assert "could not be traced" in s.notes[0] and "boom" in s.notes[0]
    assert s.total_params == sum(r.params for r in s.layers) > 0
