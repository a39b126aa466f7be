import pytest
import torch

from hkt_core.models import count_parameters
from hkt_vision import models
from hkt_vision.models.resnet import PadShortcut

# He et al. (2016), Table 6: parameters of the CIFAR ResNets with option-A shortcuts.
PAPER_PARAMS = {"resnet20": 0.27e6, "resnet32": 0.46e6, "resnet44": 0.66e6, "resnet56": 0.85e6, "resnet110": 1.7e6}


@pytest.mark.parametrize("name", sorted(PAPER_PARAMS))
def test_resnet_parameter_counts_match_he_et_al(name):
    model = getattr(models, name)()
    assert abs(count_parameters(model) - PAPER_PARAMS[name]) / PAPER_PARAMS[name] < 0.03


def test_resnet_depths():
    assert [getattr(models, n)().depth for n in ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110")] == \
        [20, 32, 44, 56, 110]


def test_resnet20_forward_shape_and_options():
    model = models.resnet20(num_classes=100, in_channels=1, width_mult=0.5).eval()
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 100)
    assert model.fc.in_features == 32
    assert model.stem.conv.in_channels == 1


def test_width_mult_scales_channels_and_rejects_nonsense():
    wide = models.resnet20(width_mult=2.0)
    assert wide.fc.in_features == 128
    with pytest.raises(ValueError, match="width_mult"):
        models.resnet20(width_mult=0)
    with pytest.raises(ValueError, match="num_classes"):
        models.resnet20(num_classes=0)


def test_option_a_shortcut_matches_reference():
    x = torch.randn(2, 16, 8, 8, dtype=torch.float64)
    out = PadShortcut(16, 32, 2)(x)
    reference = torch.zeros(2, 32, 4, 4, dtype=torch.float64)
    reference[:, 8:24] = x[:, :, ::2, ::2]
    assert torch.equal(out, reference)


@pytest.mark.parametrize("name,shape", [
    ("digits_cnn_large", (3, 1, 8, 8)), ("digits_cnn_small", (3, 1, 8, 8)), ("digits_cnn_tiny", (3, 1, 8, 8)),
    ("mnist1d_cnn_large", (3, 1, 40)), ("mnist1d_cnn_gap", (3, 1, 40)), ("mnist1d_cnn_tiny", (3, 1, 40)),
    ("mnist1d_mlp", (3, 1, 40)), ("mnist1d_mlp_large", (3, 1, 40)),
])
def test_small_networks_forward(name, shape):
    model = getattr(models, name)().eval()
    assert model(torch.randn(*shape)).shape == (3, 10)


def test_parents_are_much_larger_than_children():
    assert count_parameters(models.digits_cnn_large()) > 100 * count_parameters(models.digits_cnn_tiny())
    assert count_parameters(models.mnist1d_cnn_large()) > 100 * count_parameters(models.mnist1d_cnn_tiny())
    assert count_parameters(models.mnist1d_cnn_large()) > 20 * count_parameters(models.mnist1d_mlp())
    assert count_parameters(models.mnist1d_cnn_gap()) > 100 * count_parameters(models.mnist1d_cnn_tiny())


def test_pooled_features_are_the_flattened_or_averaged_last_stage():
    model = models.resnet20().eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        stage = model.layer3(model.layer2(model.layer1(model.stem(x))))
        assert torch.allclose(model.pool(stage), stage.mean(dim=(2, 3)))
        assert torch.allclose(model.fc(model.pool(stage)), model(x))
