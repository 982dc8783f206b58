"""Layer summaries: totals equal torchinfo's, receptive fields worked out by hand, derivation strings.

Receptive-field arithmetic used in the comments (seed notes: F(i) = (F(i+1) - 1) x stride + ksize,
written forwards): a window of size k, stride s, dilation d turns (rf, jump) into
(rf + d*(k-1)*jump, jump*s); where paths merge the larger field wins.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from backbones.cli import main
from backbones.errors import BackboneError, CancelledError, LayerError, UnknownModelError
from backbones.summary import ModelSummary, format_summary, summarize_model

ISSUE_LAYER_FIELDS = {
    "name", "type", "depth", "parent", "output_shape", "params", "mult_adds", "trainable", "kernel_size",
    "stride", "padding", "neurons", "receptive_field", "jump", "derivation",
}
ISSUE_TOP_FIELDS = {"model", "input_size", "total_params", "trainable_params", "total_mult_adds", "layers"}


def rf(summary: ModelSummary, name: str) -> tuple[int | None, int | None]:
    row = summary.find(name)
    return row.receptive_field, row.jump


def check_consistent(s: ModelSummary) -> None:
    """Rows add up to the totals: own params over all rows, MACs over the leaves."""
    assert sum(r.params for r in s.layers) == s.total_params
    assert sum(r.mult_adds for r in s.leaves()) == s.total_mult_adds
    assert s.layers[0].name == "" and s.layers[0].depth == 0 and s.layers[0].parent is None
    assert s.layers[0].mult_adds == s.total_mult_adds
    assert s.layers[0].params_total == s.total_params


# --------------------------------------------------------------------------- totals


def test_alexnet_totals_equal_the_seed_notes_and_torchinfo_on_the_real_model():
    import torchinfo

    from backbones.zoo.models import build_architecture

    s = summarize_model("alexnet")
    assert s.total_params == s.trainable_params == 61_100_840  # seed notes' torchinfo printout
    real = torchinfo.summary(build_architecture("alexnet"), input_size=(1, 3, 224, 224), verbose=0)
    assert s.total_mult_adds == real.total_mult_adds == 714_682_664
    assert s.input_size == (3, 224, 224)
    check_consistent(s)
    # torchinfo's table: 1 root + 3 children + 13 features + 7 classifier rows
    assert len(s.layers) == 24


def test_vgg19_and_resnet152_totals_equal_the_seed_notes_and_torchinfo():
    # Mult-adds: torchinfo 1.8.0 on the real (randomly initialised) models, batch 1 at 224x224:
    # summary(build_architecture(name), input_size=(1, 3, 224, 224)).total_mult_adds.
    # (The seed notes' 19.78 G / 11.63 G came from an older torchinfo that counted differently.)
    vgg = summarize_model("vgg19")
    assert (vgg.total_params, vgg.trainable_params) == (143_667_240, 143_667_240)
    assert vgg.total_mult_adds == 19_646_923_752
    check_consistent(vgg)
    resnet = summarize_model("resnet152")
    assert (resnet.total_params, resnet.trainable_params) == (60_192_808, 60_192_808)
    assert resnet.total_mult_adds == 11_513_779_048
    check_consistent(resnet)
    # torchinfo shows each run of a reused module: Bottleneck's one ReLU runs three times.
    relu_runs = [r for r in resnet.layers if r.name == "layer4.2.relu"]
    assert [r.call for r in relu_runs] == [0, 1, 2]
    assert all(r.params == 0 for r in relu_runs)


def test_meta_device_summary_equals_torchinfo_on_real_weights_row_by_row():
    import torchinfo

    from backbones.zoo.models import build_architecture

    s = summarize_model("resnet18")
    real = torchinfo.summary(build_architecture("resnet18"), input_size=(1, 3, 224, 224), verbose=0, depth=99)
    assert (s.total_params, s.trainable_params, s.total_mult_adds) == (
        real.total_params, real.trainable_params, real.total_mult_adds,
    )
    assert [r.type for r in s.layers] == [i.class_name for i in real.summary_list]
    assert [list(r.output_shape) for r in s.layers] == [i.output_size for i in real.summary_list]


# --------------------------------------------------------------------------- derivations


def test_alexnet_conv1_derivation_matches_the_hand_computation():
    s = summarize_model("alexnet")
    conv1 = s.find("features.0")
    # 64 filters of 3x11x11 plus 64 biases; (224 - 11 + 2*2) / 4 + 1 = 54.25 + 1 -> 55 (PyTorch floors)
    assert conv1.params == 64 * 3 * 11 * 11 + 64 == 23_296
    assert conv1.output_shape == (1, 64, 55, 55)
    assert conv1.neurons == 55 * 55 * 64 == 193_600
    assert conv1.kernel_size == (11, 11) and conv1.stride == (4, 4) and conv1.padding == (2, 2)
    assert conv1.derivation.startswith(
        "Conv2d 3->64, k11 s4 p2: 64*(3*11*11)+64 = 23,296 params; out 55 = (224-11+2*2)/4+1"
    )
    assert "217/4 floored to 54" in conv1.derivation
    assert conv1.derivation.endswith("55x55x64 = 193,600 neurons")
    # (55 - 3 + 2*0) / 2 + 1 = 27 exactly: nothing to floor
    assert s.find("features.2").derivation == "MaxPool2d k3 s2: out 27 = (55-3+2*0)/2+1"
    # 256 * 6 * 6 = 9216 inputs
    assert s.find("classifier.1").derivation == "Linear 9216->4096: 4096*9216+4096 = 37,752,832 params"
    assert s.find("classifier.1").kernel_size is None
    assert s.find("features.1").derivation is None  # ReLU: nothing to derive
    assert s.find("features.0").rf_derivation == "rf 11 = 1+(11-1)*1; jump 4 = 1*4"
    assert s.find("features.2").rf_derivation == "rf 19 = 11+(3-1)*4; jump 8 = 4*2"


class Shapes(nn.Module):
    """Depthwise conv, a ceil_mode pool and a dilated conv, on a 3x112x112 input."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)  # (112-3+2)/2+1 = 55.5 -> 56
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)  # 8*(8/8*3*3) = 72
        self.pool = nn.MaxPool2d(3, 2, ceil_mode=True)  # ceil((56-3)/2)+1 = 27+1 = 28
        self.dil = nn.Conv2d(8, 4, (3, 1), padding=(2, 0), dilation=(2, 1))  # H (28-2*2-1+4)/1+1 = 28

    def forward(self, x):
        return self.dil(self.pool(self.dw(self.stem(x))))


def test_grouped_ceil_mode_and_dilated_derivations():
    s = summarize_model(Shapes(), input_size=(3, 112, 112))
    assert s.find("stem").derivation == (
        "Conv2d 3->8, k3 s2 p1: 8*(3*3*3)+8 = 224 params; out 56 = (112-3+2*1)/2+1 "
        "(111/2 floored to 55, as PyTorch does); 56x56x8 = 25,088 neurons"
    )
    assert s.find("dw").derivation == (
        "Conv2d 8->8 depthwise, k3 s1 p1: 8*(8/8*3*3) = 72 params (no bias); out 56 = (56-3+2*1)/1+1; "
        "56x56x8 = 25,088 neurons"
    )
    assert s.find("pool").derivation == "MaxPool2d k3 s2: out 28 = (56-3+2*0)/2+1 (53/2 rounded up to 27: ceil_mode)"
    dil = s.find("dil")
    assert dil.output_shape == (1, 4, 28, 28) and dil.dilation == (2, 1) and dil.groups == 1
    assert dil.derivation.startswith("Conv2d 8->4, k3x1 s1 p2x0 d2x1: 4*(8*3*1)+4 = 100 params; out 28x28: ")
    # fields: stem (3, 2); dw 3+2*2 = 7; pool 7+2*2 = 11, jump 4; dil H 11+2*(3-1)*4 = 27, W stays 11
    assert dil.receptive_field_hw == (27, 11) and dil.receptive_field == 27 and dil.jump == 4
    assert dil.rf_derivation == "rf 27x11: H 11+2*(3-1)*4, W 11+(1-1)*4; jump 4 = 4*1"


# --------------------------------------------------------------------------- receptive fields


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


class Residual(nn.Module):
    """Two paths from the input, registered in the opposite order to the one they run in.

    ``deep`` (two 3x3 convs: rf 5) is registered first but runs second; ``short`` (1x1: rf 1) is
    registered last. Their sum must carry rf 5: the larger path, not the last module.
    """

    def __init__(self):
        super().__init__()
        self.head = nn.Conv2d(4, 4, 3, padding=1)  # registered first, runs last
        self.deep = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))
        self.pool = nn.MaxPool2d(2)
        self.short = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        y = self.short(x) + self.deep(x)  # max(1, 5) = 5, jump 1
        y = self.pool(y)  # 5 + (2-1)*1 = 6, jump 2 (it would be 2 if the 1x1 path won)
        return self.head(y)  # 6 + (3-1)*2 = 10, jump 2


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
    assert s.spatial_layers()


def test_inception_v3_runs_at_299_and_googlenet_without_aux_heads():
    inc = summarize_model("inception_v3")
    assert inc.input_size == (3, 299, 299)
    assert inc.find("Conv2d_1a_3x3.conv").output_shape == (1, 32, 149, 149)  # (299-3)/2+1
    assert not any(r.name.startswith("AuxLogits") for r in inc.layers)  # training only
    assert inc.total_params == 27_161_264  # torchvision's num_params, AuxLogits included
    assert any("AuxLogits" in n for n in inc.notes)
    # the 1x7 / 7x1 factorised branches: Mixed_6b's 7x7dbl path adds 2*6*16 per axis to Mixed_6a's 159
    assert rf(inc, "Mixed_6a") == (159, 16)
    assert rf(inc, "Mixed_6b") == (159 + 192, 16)
    goo = summarize_model("googlenet")
    assert not any(r.name.startswith("aux") for r in goo.layers)
    # ceil_mode pool: (112-3)/2 = 54.5 -> 55, + 1 = 56
    assert goo.find("maxpool1").output_shape == (1, 64, 56, 56)
    assert "ceil_mode" in goo.find("maxpool1").derivation


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
    from backbones import summary as module

    def broken(*args, **kwargs):
        raise ValueError("boom")

    monkeypatch.setattr(module._Tracer, "_rule", broken)
    s = summarize_model(Residual(), input_size=(3, 8, 8))
    assert s.receptive_fields is False
    assert all(r.receptive_field is None for r in s.layers)
    assert "could not be traced" in s.notes[0] and "boom" in s.notes[0]
    assert s.total_params == sum(r.params for r in s.layers) > 0


# --------------------------------------------------------------------------- inputs, checkpoints, cache


def test_input_size_override_changes_shapes_and_is_cached_separately():
    default = summarize_model("resnet18")
    assert summarize_model("resnet18") is default  # cached
    small = summarize_model("resnet18", input_size=(3, 160, 160))
    assert small is not default and small.input_size == (3, 160, 160)
    assert small.find("layer4").output_shape == (1, 512, 5, 5)
    assert small.total_params == default.total_params
    assert small.total_mult_adds < default.total_mult_adds
    assert small.find("avgpool").receptive_field == 435 + 4 * 32
    with pytest.raises(dataclasses.FrozenInstanceError):
        default.total_params = 1  # type: ignore[misc]


def test_bad_inputs_are_user_errors():
    with pytest.raises(UnknownModelError):
        summarize_model("resnet5O")
    with pytest.raises(BackboneError, match="cannot run on a 3x32x32 input"):
        summarize_model("alexnet", input_size=(3, 32, 32))
    with pytest.raises(BackboneError, match="out of range"):
        summarize_model("alexnet", input_size=(3, 0, 224))
    with pytest.raises(BackboneError, match="three integers"):
        summarize_model("alexnet", input_size=(224, 224))
    s = summarize_model("alexnet")
    with pytest.raises(LayerError, match="no layer .features.O.; did you mean features"):
        s.find("features.O")


def test_checkpoint_with_102_classes_summarises_with_its_own_head(tmp_path, capsys):
    from backbones.zoo.models import build_architecture, load_checkpoint

    model = build_architecture("resnet18")
    model.fc = nn.Linear(512, 102)
    path = tmp_path / "flowers.pth"
    torch.save(model.state_dict(), path)
    loaded = load_checkpoint("resnet18", path)
    s = summarize_model(loaded)
    assert s.model == "flowers" and s.architecture == "resnet18"
    fc = s.find("fc")
    assert fc.output_shape == (1, 102)
    assert fc.params == 512 * 102 + 102 == 52_326
    assert fc.derivation == "Linear 512->102: 102*512+102 = 52,326 params"
    assert s.total_params == 11_689_512 - 513_000 + 52_326
    assert summarize_model(loaded) is s  # cached per loaded model
    assert main(["summary", "resnet18", "--checkpoint", str(path), "--json", "--depth", "1"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["model"] == "flowers" and doc["layers"][-1]["output_shape"] == [1, 102]
    assert not loaded.model._forward_hooks and not loaded.model.fc._forward_pre_hooks


def test_frozen_layers_trainable_flags_and_no_hooks_left():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    for p in model[0].parameters():
        p.requires_grad_(False)
    model.train()
    s = summarize_model(model, input_size=(3, 8, 8))
    # conv 4*(3*3*3)+4 = 112 frozen; linear 2*(4*6*6)+2 = 290 trainable
    assert s.trainable_params == 290 and s.total_params == 112 + 290
    assert [r.trainable for r in s.layers] == [None, False, None, None, True]  # root is mixed
    assert model.training  # left as it was
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert s.find("2").whole_input and s.find("3").receptive_field == 3 + 5 * 1


def test_progress_and_cancellation():
    calls = []
    summarize_model(Residual(), input_size=(3, 8, 8), progress=lambda d, t, m: calls.append((d, t)))
    assert calls and calls[-1] == (1, 1) and all(d <= t for d, t in calls)
    model = Residual()
    with pytest.raises(CancelledError):
        summarize_model(model, input_size=(3, 8, 8), should_stop=lambda: True)
    assert all(not m._forward_pre_hooks for m in model.modules())


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
    text = format_summary(s, depth=1)
    assert "├─layer4: Sequential" in text and "layer4.0" not in text
    assert "Total params: 11,689,512" in text


# --------------------------------------------------------------------------- CLI


def test_cli_json_has_the_issue_fields(capsys):
    assert main(["summary", "alexnet", "--json", "--depth", "1"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert ISSUE_TOP_FIELDS <= set(doc)
    assert doc["model"] == "alexnet" and doc["input_size"] == [3, 224, 224]
    assert doc["total_params"] == 61_100_840 and doc["total_mult_adds"] == 714_682_664
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
