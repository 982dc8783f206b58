"""viz.layers: default and candidate layers, private views."""

from __future__ import annotations

from torch import nn

from backbones.zoo.catalog import get_entry
from viz.layers import default_layer, private_view, resolve_layer, spatial_layers


def test_layer_defaults_and_candidates():
    from backbones.zoo.models import build_architecture

    class Holder:  # what default_layer reads from a LoadedModel
        def __init__(self, name):
            self.entry = get_entry(name)
            self.name = name
            self.model = build_architecture(self.entry)
            self.preprocessing = self.entry.preprocessing

    resnet = Holder("resnet18")  # generic rule: the last spatial module before avgpool
    assert default_layer(resnet) == "layer4"
    names = [i.name for i in spatial_layers(resnet, max_depth=1)]
    assert names == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    assert resolve_layer(resnet, "layer3.1.conv2") == "layer3.1.conv2"
    assert default_layer(Holder("squeezenet1_1")) == "features"  # table: not the 1000-channel conv
    assert default_layer(Holder("mobilenet_v3_small")) == "features"


def test_private_view_shares_parameters_but_not_state():
    model = nn.Sequential(nn.Conv2d(3, 2, 1), nn.ReLU(inplace=True))
    model.train()
    view = private_view(model)
    assert view[0].weight is model[0].weight
    view[0].register_forward_hook(lambda *a: None)
    view[1].inplace = True
    assert not view.training and model.training
    assert not model[0]._forward_hooks and view[0]._forward_hooks
    assert private_view(model)[1].inplace is False and model[1].inplace is True
