"""Derivation strings worked out by hand: parameters, output sizes (floored / ceil_mode), neurons, receptive fields."""

from __future__ import annotations

from torch import nn

from backbones.summary import summarize_model


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
