"""torchinfo's tree as rows: totals equal torchinfo's, one row per call, trainable flags, hooks, progress."""

from __future__ import annotations

import pytest
from torch import nn

from backbones.errors import CancelledError
from backbones.summary import summarize_model
from tests.unit.summary.nets import Residual, check_consistent, rf


def test_alexnet_totals_equal_the_seed_notes_and_the_real_model():
    from backbones.measure.compute import count_macs
    from backbones.zoo.models import build_architecture

    s = summarize_model("alexnet")
    assert s.total_params == s.trainable_params == 61_100_840  # seed notes' torchinfo printout
    # flop_counter on the real model; torchvision publishes 0.714 G. (torchinfo's 714,682,664 also counts
    # the 494,184 bias additions.)
    real = count_macs(build_architecture("alexnet"), input_size=(3, 224, 224)).macs
    assert s.total_mult_adds == real == 714_188_480
    assert s.input_size == (3, 224, 224)
    check_consistent(s)
    # torchinfo's table: 1 root + 3 children + 13 features + 7 classifier rows
    assert len(s.layers) == 24


def test_vgg19_and_resnet152_totals_equal_the_seed_notes_and_torchinfo():
    # MACs: torch.utils.flop_counter FLOPs / 2, batch 1 at 224x224 (torchvision publishes 19.632 G and
    # 11.514 G). The seed notes' 19.78 G / 11.63 G came from an older torchinfo that also counted other work.
    vgg = summarize_model("vgg19")
    assert (vgg.total_params, vgg.trainable_params) == (143_667_240, 143_667_240)
    assert vgg.total_mult_adds == 19_632_062_464
    check_consistent(vgg)
    resnet = summarize_model("resnet152")
    assert (resnet.total_params, resnet.trainable_params) == (60_192_808, 60_192_808)
    assert resnet.total_mult_adds == 11_513_626_624
    check_consistent(resnet)
    # torchinfo shows each run of a reused module: Bottleneck's one ReLU runs three times.
    relu_runs = [r for r in resnet.layers if r.name == "layer4.2.relu"]
    assert [r.call for r in relu_runs] == [0, 1, 2]
    assert all(r.params == 0 for r in relu_runs)


def test_meta_device_summary_equals_torchinfo_and_the_real_model_row_by_row():
    import torchinfo

    from backbones.zoo.models import build_architecture

    s = summarize_model("resnet18")
    model = build_architecture("resnet18")
    real = torchinfo.summary(model, input_size=(1, 3, 224, 224), verbose=0, depth=99)
    assert (s.total_params, s.trainable_params) == (real.total_params, real.trainable_params)
    # MACs are flop_counter's on either device, row by row.
    on_cpu = summarize_model(model, input_size=(3, 224, 224))
    assert [r.mult_adds for r in s.layers] == [r.mult_adds for r in on_cpu.layers]
    assert s.total_mult_adds == on_cpu.total_mult_adds == 1_814_073_344
    assert [r.type for r in s.layers] == [i.class_name for i in real.summary_list]
    assert [list(r.output_shape) for r in s.layers] == [i.output_size for i in real.summary_list]


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


class _Attention(nn.Module):
    """A Linear on a channels-last map, then self-attention over the 4 positions (values worked by hand)."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(8, 16)
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)

    def forward(self, x):  # (1, 8, 2, 2)
        x = self.proj(x.permute(0, 2, 3, 1)).flatten(1, 2)  # (1, 4, 16): 4 positions
        return self.attn(x, x, x, need_weights=False)[0]


def test_linear_counts_every_position_and_attention_its_products():
    # proj: 4 positions * 8 * 16 = 512 (torchinfo: 128, once per sample). attn: in_proj 4 * 16 * 48 = 3072,
    # q @ k^T 4 * 4 * 16 = 256, attn @ v 256, out_proj 4 * 16 * 16 = 1024 -> 4608.
    net = _Attention().eval()
    for real in (True, False):  # a real CPU forward in eval + no_grad (the fused fast path) and the meta device
        s = summarize_model(net if real else net.to("meta"), input_size=(8, 2, 2))
        assert s.find("proj").mult_adds == 512
        assert s.find("attn").mult_adds == 4608
        assert s.total_mult_adds == 512 + 4608 == sum(b.mult_adds for b in s.blocks(1))


def test_a_fused_kernel_without_a_formula_is_reported_not_counted_as_zero():
    import torch

    from backbones.measure.compute import MacCounter

    attn = nn.MultiheadAttention(16, 2, batch_first=True).eval()
    x = torch.zeros(1, 4, 16)
    with MacCounter() as counter, torch.no_grad():  # no unfused_attention(): PyTorch takes the fused path
        attn(x, x, x, need_weights=False)
    assert counter.missed == ["_native_multi_head_attention"]
