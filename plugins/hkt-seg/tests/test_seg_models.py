import pytest
import torch
from torch import nn

from hkt_core.adapters import adapter_for
from hkt_core.errors import ConfigError
from hkt_core.models import build_model, count_parameters
from hkt_core.trace.tracer import fx_trace, node_names
from hkt_core import default_manager
from hkt_seg.adapter import UNetAdapter
from hkt_seg.models import DenseUNet, PocketNet, dense_unet, pocketnet


def conv_widths(model):
    return [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]


def test_pocketnet_keeps_one_width_at_every_level():
    model = PocketNet(in_channels=1, num_classes=3, depth=3, width=6)
    widths = conv_widths(model)
    assert widths[:-1] == [6] * (len(widths) - 1)  # every conv but the head
    assert widths[-1] == 3
    for block in [*model.encoder, model.bottleneck, *model.decoder]:
        assert all(w == 6 for w in conv_widths(block))


def test_dense_unet_doubles_width_and_grows_densely():
    model = DenseUNet(in_channels=1, num_classes=2, depth=2, width=4, growth=3, layers=2)
    first = model.encoder[0]
    assert [layer.conv.in_channels for layer in first.layers] == [1, 1 + 3]
    assert first.transition[2].in_channels == 1 + 2 * 3 and first.transition[2].out_channels == 4
    assert model.encoder[1].transition[2].out_channels == 8
    assert model.bottleneck.transition[2].out_channels == 16
    x = torch.randn(2, 1, 16, 16)
    assert model(x).shape == (2, 2, 16, 16)


@pytest.mark.parametrize("size", [(32, 32), (30, 22)])
def test_output_matches_input_size_for_any_size(size):
    model = PocketNet(num_classes=4, depth=2, width=4).eval()
    assert model(torch.randn(1, 1, *size)).shape == (1, 4, *size)


def test_parent_is_much_larger_than_child_at_registered_sizes():
    child, parent = pocketnet(), dense_unet()
    ratio = count_parameters(parent) / count_parameters(child)
    assert 10 < ratio < 40


@pytest.mark.parametrize("name", ["pocketnet_demo", "dense_unet_demo"])
def test_registered_models_trace_and_declare_blocks(name):
    model = build_model(name, default_manager(), width=4, num_classes=2).eval()
    adapter = adapter_for(model, default_manager())
    assert isinstance(adapter, UNetAdapter)
    graph_module = fx_trace(model, adapter)
    names = set(node_names(graph_module.graph).values())
    blocks = adapter.declared_blocks(model)
    assert blocks == ["encoder.0", "encoder.1", "encoder.2", "bottleneck", "decoder.0", "decoder.1",
                      "decoder.2", "head"]
    assert set(blocks) <= names
    x = torch.randn(2, 1, 32, 32)
    torch.testing.assert_close(graph_module(x), model(x))


def test_adapter_declines_other_models():
    assert UNetAdapter().declared_blocks(nn.Linear(2, 2)) is None


@pytest.mark.parametrize("options", [{"width": 0}, {"depth": -1}, {"num_classes": 1.5}])
def test_bad_options_name_the_field(options):
    with pytest.raises(ConfigError, match=next(iter(options))):
        PocketNet(**options)
    with pytest.raises(ConfigError, match=next(iter(options))):
        DenseUNet(**options)
