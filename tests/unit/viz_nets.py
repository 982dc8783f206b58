"""Hand-built networks and checks shared by the viz tests (not a test module: nothing here is collected)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import nn

from backbones.inference.preprocessing import Preprocessing
from backbones.zoo.catalog import get_entry
from backbones.zoo.models import LoadedModel


class GapNet(nn.Module):
    """1x1 conv (3 -> 2 channels, no bias) -> global average pool -> linear (2 -> 2, no bias)."""

    def __init__(self, conv_w, fc_w):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1, bias=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor(conv_w, dtype=torch.float32).view(2, 3, 1, 1))
            self.fc.weight.copy_(torch.tensor(fc_w, dtype=torch.float32))

    def forward(self, x):
        return self.fc(self.flat(self.pool(self.conv(x))))


class TinyNet(nn.Module):
    """Conv-BN-ReLU(inplace) -> strided conv -> ReLU(inplace) -> GAP -> linear: a ResNet in miniature."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1),
            nn.BatchNorm2d(6),
            nn.ReLU(inplace=True),
            nn.Conv2d(6, 8, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.ReLU6(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 4)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            bn = self.features[1]
            bn.running_mean.copy_(torch.randn(6, generator=g) * 0.1)
            bn.running_var.copy_(torch.rand(6, generator=g) + 0.5)
        self.eval()

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def wrap(model: nn.Module, size: int, categories) -> LoadedModel:
    """A LoadedModel around a hand-built net; identity normalisation, no resize beyond ``size``."""
    return LoadedModel(
        name="tiny",
        entry=get_entry("resnet18"),  # not in the default-layer table: the generic rule applies
        model=model.eval(),
        preprocessing=Preprocessing(crop_size=size, resize_size=size, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)),
        categories=tuple(categories),
        weights="none",
    )


def tiny_image(size=16, seed=1) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), mode="RGB")


def model_state(model: nn.Module) -> list:
    """Everything a CAM could leave behind on a shared model."""
    state = []
    for name, m in model.named_modules():
        hooks = tuple(
            len(getattr(m, attr, {}))
            for attr in (
                "_forward_hooks",
                "_forward_pre_hooks",
                "_backward_hooks",
                "_backward_pre_hooks",
                "_forward_hooks_with_kwargs",
                "_forward_pre_hooks_with_kwargs",
            )
        )
        state.append((name, type(m).__name__, m.training, getattr(m, "inplace", None), hooks))
    for name, p in model.named_parameters():
        state.append((name, p.requires_grad, p.grad is None))
    return state


def assert_untouched(model: nn.Module, before: list) -> None:
    after = model_state(model)
    assert after == before
    assert all(p.grad is None for p in model.parameters())
    assert all(len(m._forward_hooks) == 0 and len(m._backward_hooks) == 0 for m in model.modules())


CONV_W = [[1.0, -1.0, 0.5], [-0.5, 2.0, 1.0]]
FC_W = [[1.0, -2.0], [-1.0, 0.5]]
