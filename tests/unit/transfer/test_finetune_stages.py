"""Which parameters the last stage is, per family (meta-device models: shapes only, milliseconds), and frozen
BatchNorm staying in eval mode while the last stage trains."""

from __future__ import annotations

import pytest
import torch

from backbones.transfer.stages import last_stage_parameters, set_trainable_mode, trainable_roots
from backbones.zoo.architectures import build_architecture, build_empty

# (catalog name, first parameter of the last stage, the classifier's weight)
FAMILIES = [
    ("resnet18", "layer4.0.conv1.weight", "fc.weight"),
    ("resnext50_32x4d", "layer4.0.conv1.weight", "fc.weight"),
    ("efficientnet_b0", "features.7.0.block.0.0.weight", "classifier.1.weight"),
    ("mobilenet_v3_small", "features.11.block.0.0.weight", "classifier.3.weight"),
    ("mobilenet_v2", "features.17.conv.0.0.weight", "classifier.1.weight"),
    ("regnet_x_400mf", "trunk_output.block4.block4-0.proj.0.weight", "fc.weight"),
    ("convnext_tiny", "features.6.0.weight", "classifier.2.weight"),
    ("densenet121", "features.denseblock4.denselayer1.norm1.weight", "classifier.weight"),
    ("timm:rexnet_100", "features.16.conv.weight", "head.fc.weight"),
    ("efficientnet_lite0", "blocks.6.0.conv_pw.weight", "classifier.weight"),
]


@pytest.mark.parametrize(("name", "first", "head"), FAMILIES, ids=[f[0] for f in FAMILIES])
def test_last_stage_per_family(name, first, head):
    model = build_empty(name)
    params = last_stage_parameters(model, name)
    names = [n for n, _ in params]
    assert names[0] == first and names[-2] == head and names[-1] == head.replace("weight", "bias")
    everything = [n for n, _ in model.named_parameters()]
    assert everything[-len(names):] == names  # the tail: the last stage and what follows it
    assert 0 < len(names) < len(everything) and everything[0] not in names  # the stem stays frozen


def test_frozen_batchnorm_keeps_its_statistics_while_the_last_stage_trains():
    torch.manual_seed(0)
    model = build_architecture("resnet18")
    trainable = {n for n, _ in last_stage_parameters(model, "resnet18")}
    for n, p in model.named_parameters():
        p.requires_grad_(n in trainable)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    set_trainable_mode(model, trainable_roots(model))
    assert not model.bn1.training and not model.layer3.training and model.layer4.training and model.fc.training
    model(torch.randn(4, 3, 32, 32) * 3 + 1).sum().backward()
    after = model.state_dict()
    assert torch.equal(after["bn1.running_mean"], before["bn1.running_mean"])
    assert torch.equal(after["layer3.1.bn2.running_var"], before["layer3.1.bn2.running_var"])
    assert not torch.equal(after["layer4.0.bn1.running_mean"], before["layer4.0.bn1.running_mean"])
    assert model.conv1.weight.grad is None and model.layer4[0].conv1.weight.grad is not None
