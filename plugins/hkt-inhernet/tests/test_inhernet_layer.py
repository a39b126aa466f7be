"""The inherited layer against plain float64 references (numpy SVD, F.linear, F.conv2d)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hkt_core.errors import ConfigError
from hkt_inhernet import (InheritedConv2d, InheritedLinear, compress_layer, inherited_parameter_count,
                          singular_values)


def _linear(d_in=12, d_out=9, bias=True):
    torch.manual_seed(0)
    return nn.Linear(d_in, d_out, bias=bias).double()


def _conv(bias=True, **geometry):
    torch.manual_seed(0)
    return nn.Conv2d(4, 6, 3, bias=bias, **geometry).double()


CONV_GEOMETRIES = [
    {},
    {"stride": 2, "padding": 1},
    {"stride": (2, 1), "padding": (2, 1), "dilation": 2},
    {"padding": "same", "padding_mode": "reflect"},
]


def _reference_truncation(weight: torch.Tensor, rank: int) -> tuple[np.ndarray, float]:
    """The rank-r SVD truncation of the weight matrix and the Eckart-Young error, in numpy float64."""
    matrix = weight.detach().numpy().astype(np.float64).reshape(weight.shape[0], -1)
    u, s, vh = np.linalg.svd(matrix, full_matrices=False)
    truncated = (u[:, :rank] * s[:rank]) @ vh[:rank]
    return truncated.reshape(weight.shape), float(np.sqrt(np.sum(s[rank:] ** 2)))


def _scramble_gate(layer):
    """Give the gate large random weights so the mixing is far from uniform."""
    with torch.no_grad():
        layer.gate.weight.normal_(0, 5.0)
        layer.gate.bias.normal_(0, 5.0)


@pytest.mark.parametrize("heads", [1, 2, 3, 7])
def test_full_rank_linear_reproduces_the_layer_for_any_gate(heads):
    dense = _linear()
    inherited = compress_layer(dense, rank=9, heads=heads)
    assert isinstance(inherited, InheritedLinear)
    x = torch.randn(5, 12, dtype=torch.float64)
    torch.testing.assert_close(inherited(x), dense(x), rtol=1e-10, atol=1e-10)
    _scramble_gate(inherited)
    torch.testing.assert_close(inherited(x), dense(x), rtol=1e-10, atol=1e-10)
    for gates in (torch.softmax(torch.randn(heads, dtype=torch.float64), 0), torch.eye(heads)[0]):
        torch.testing.assert_close(inherited.effective_weight(gates), dense.weight, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("heads", [1, 2, 4])
@pytest.mark.parametrize("geometry", CONV_GEOMETRIES)
def test_full_rank_conv_reproduces_the_layer_for_any_gate(heads, geometry):
    dense = _conv(**geometry)
    inherited = compress_layer(dense, rank=6, heads=heads)
    assert isinstance(inherited, InheritedConv2d)
    assert inherited.down.stride == dense.stride and inherited.down.padding == dense.padding
    assert inherited.down.dilation == dense.dilation
    _scramble_gate(inherited)
    x = torch.randn(3, 4, 11, 10, dtype=torch.float64)
    torch.testing.assert_close(inherited(x), dense(x), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(inherited.effective_weight(), dense.weight, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("rank", [1, 3, 5])
def test_linear_rank_r_error_is_the_eckart_young_bound(rank):
    dense = _linear()
    inherited = compress_layer(dense, rank=rank, heads=3)
    _scramble_gate(inherited)
    reference, bound = _reference_truncation(dense.weight, rank)
    weight = inherited.effective_weight(torch.softmax(torch.randn(3, dtype=torch.float64), 0))
    error = torch.linalg.matrix_norm(weight - dense.weight).item()
    assert error == pytest.approx(bound, rel=1e-9)
    np.testing.assert_allclose(weight.detach().numpy(), reference, rtol=1e-9, atol=1e-12)
    # and the forward pass is the rank-r layer, whatever the gate says per row
    x = torch.randn(4, 2, 12, dtype=torch.float64)
    expected = F.linear(x, torch.from_numpy(reference), dense.bias)
    torch.testing.assert_close(inherited(x), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("rank", [1, 2, 4])
@pytest.mark.parametrize("geometry", CONV_GEOMETRIES[:3])
def test_conv_rank_r_error_is_the_eckart_young_bound(rank, geometry):
    dense = _conv(**geometry)
    inherited = compress_layer(dense, rank=rank, heads=2)
    _scramble_gate(inherited)
    reference, bound = _reference_truncation(dense.weight, rank)
    error = torch.linalg.vector_norm(inherited.effective_weight() - dense.weight).item()
    assert error == pytest.approx(bound, rel=1e-9)
    x = torch.randn(2, 4, 9, 9, dtype=torch.float64)
    expected = F.conv2d(x, torch.from_numpy(reference), dense.bias, stride=dense.stride,
                        padding=dense.padding, dilation=dense.dilation)
    torch.testing.assert_close(inherited(x), expected, rtol=1e-10, atol=1e-10)


def test_balanced_factors_and_identical_heads():
    dense = _linear()
    inherited = compress_layer(dense, rank=4, heads=3)
    s = np.linalg.svd(dense.weight.detach().numpy(), compute_uv=False)[:4]
    # balanced: the squared row norms of down and the squared column norms of up both equal S
    np.testing.assert_allclose((inherited.down.weight ** 2).sum(1).detach().numpy(), s, rtol=1e-10)
    np.testing.assert_allclose((inherited.heads[0] ** 2).sum(0).detach().numpy(), s, rtol=1e-10)
    for m in range(1, 3):
        assert torch.equal(inherited.heads[m], inherited.heads[0])
    torch.testing.assert_close(singular_values(dense)[:4], torch.from_numpy(s))


def test_gate_starts_random_not_uniform():
    inherited = compress_layer(_linear(), rank=4, heads=3)
    assert inherited.gate.weight.abs().sum() > 0 and inherited.gate.bias.std() > 0
    g = inherited.gate_weights(torch.randn(8, 4, dtype=torch.float64))
    torch.testing.assert_close(g.sum(-1), torch.ones(8, dtype=torch.float64))
    assert (g - 1 / 3).abs().max() > 1e-3


@pytest.mark.parametrize("bias", [True, False])
def test_bias_is_kept(bias):
    for dense in (_linear(bias=bias), _conv(bias=bias)):
        inherited = compress_layer(dense, rank=2, heads=2)
        if bias:
            assert torch.equal(inherited.bias, dense.bias)
        else:
            assert inherited.bias is None


@pytest.mark.parametrize("heads", [1, 2, 5])
def test_parameter_count_formula(heads):
    rank = 3
    linear = compress_layer(nn.Linear(20, 11), rank, heads)
    weights = sum(p.numel() for n, p in linear.named_parameters() if n != "bias")
    assert weights == rank * 20 + heads * rank * 11 + (rank * heads + heads)
    assert sum(p.numel() for p in linear.parameters()) == inherited_parameter_count(20, 11, rank, heads, True)

    conv = compress_layer(nn.Conv2d(5, 7, 3, bias=False), rank, heads)
    d_in = 5 * 3 * 3
    gate = conv.gate.weight.numel() + conv.gate.bias.numel()
    assert gate == rank * heads + heads
    assert sum(p.numel() for p in conv.parameters()) == rank * d_in + heads * rank * 7 + gate
    assert inherited_parameter_count(d_in, 7, rank, heads, False) == rank * d_in + heads * rank * 7 + gate


def test_same_call_signature_as_the_replaced_layer():
    torch.manual_seed(0)
    linear = nn.Linear(6, 4)
    inherited = compress_layer(linear, 4, 2)
    for shape in [(6,), (3, 6), (2, 5, 6)]:
        x = torch.randn(*shape)
        torch.testing.assert_close(inherited(x), linear(x), rtol=1e-5, atol=1e-5)
    conv = nn.Conv2d(3, 5, 3, padding=1)
    inherited = compress_layer(conv, 3, 2)
    x = torch.randn(3, 7, 7)  # unbatched, as nn.Conv2d accepts
    torch.testing.assert_close(inherited(x), inherited(x[None])[0], rtol=1e-6, atol=1e-6)
    assert inherited(x).shape == conv(x).shape
    # float32 layers stay float32
    assert inherited.down.weight.dtype == torch.float32


def test_heads_diverge_with_training():
    torch.manual_seed(0)
    inherited = compress_layer(nn.Conv2d(3, 8, 3, padding=1), rank=4, heads=3)
    target_layer = nn.Conv2d(3, 8, 3, padding=1)
    optimizer = torch.optim.SGD(inherited.parameters(), lr=0.05)
    x = torch.randn(16, 3, 6, 6)
    with torch.no_grad():
        y = target_layer(x)
    for _ in range(5):
        optimizer.zero_grad()
        F.mse_loss(inherited(x), y).backward()
        optimizer.step()
    spread = (inherited.heads - inherited.heads.mean(0, keepdim=True)).abs().max().item()
    assert spread > 1e-3


def test_a_uniform_gate_keeps_the_heads_identical():
    """Why the gate starts random: with equal heads and a uniform gate the heads never diverge."""
    torch.manual_seed(0)
    inherited = compress_layer(nn.Linear(6, 5), rank=3, heads=3)
    with torch.no_grad():
        inherited.gate.weight.zero_()
        inherited.gate.bias.zero_()
    optimizer = torch.optim.SGD([inherited.heads, inherited.down.weight], lr=0.1)
    x, y = torch.randn(32, 6), torch.randn(32, 5)
    for _ in range(5):
        optimizer.zero_grad()
        F.mse_loss(inherited(x), y).backward()
        optimizer.step()
    assert torch.equal(inherited.heads[0], inherited.heads[1])
    assert torch.equal(inherited.heads[0], inherited.heads[2])


def test_bad_layers_and_ranks_are_refused():
    with pytest.raises(ConfigError, match=r"rank must be an integer from 1 to 9"):
        compress_layer(_linear(), rank=10, heads=2)
    with pytest.raises(ConfigError, match=r"rank must be an integer from 1 to 9"):
        compress_layer(_linear(), rank=0, heads=2)
    with pytest.raises(ConfigError, match="heads must be an integer >= 1"):
        compress_layer(_linear(), rank=2, heads=0)
    with pytest.raises(ConfigError, match=r"grouped convolution \(groups=2\)"):
        compress_layer(nn.Conv2d(4, 4, 3, groups=2), rank=2, heads=2)
    with pytest.raises(ConfigError, match="InherNet compresses nn.Linear and nn.Conv2d"):
        compress_layer(nn.Conv1d(4, 4, 3), rank=2, heads=2)
