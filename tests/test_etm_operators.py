"""Genetic Attention against a float64 reference, and the registered transfers, mixtures, extractors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import hkt_core
from hkt_core import builtins
from hkt_core.etm import split_mix
from hkt_core.etm import (AddMixture, ConcatExtractor, Conv1x1Transfer, GateMixture, GeneticAttentionMixture,
                          IdentityExtractor, IdentityTransfer, LinearTransfer, MSEMixture, NoMixture,
                          PoolExtractor, auto_transfer, genetic_attention)



def reference_ga(query: torch.Tensor, source: torch.Tensor, layout: str) -> torch.Tensor:
    """Eq. 2 written out: explicit softmax of Q K^T / sqrt(d) and the weighted sum, per sample."""
    q64, v64 = query.double(), source.double()
    b, c = q64.shape[:2]
    n = math.prod(q64.shape[2:])
    out = torch.empty(b, c, n, dtype=torch.float64)
    for s in range(b):
        qs, vs = q64[s].reshape(c, n), v64[s].reshape(c, n)
        if layout == "spatial":  # tokens = positions (n of them), features = channels, d = c
            scores = qs.T @ vs / math.sqrt(c)                       # (n, n)
            weights = torch.exp(scores - scores.max(1, keepdim=True).values)
            weights = weights / weights.sum(1, keepdim=True)
            out[s] = (weights @ vs.T).T
        else:  # tokens = channels (c of them), features = positions, d = n
            scores = qs @ vs.T / math.sqrt(n)                       # (c, c)
            weights = torch.exp(scores - scores.max(1, keepdim=True).values)
            weights = weights / weights.sum(1, keepdim=True)
            out[s] = weights @ vs
    return v64 - out.reshape(q64.shape)


SHAPES = [(2, 3, 4, 5), (3, 6, 7), (2, 4, 2, 3, 2)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("layout", ["spatial", "channel"])
def test_ga_matches_reference_on_maps(shape, layout):
    gen = torch.Generator().manual_seed(1)
    q = torch.randn(*shape, generator=gen, dtype=torch.float64)
    v = torch.randn(*shape, generator=gen, dtype=torch.float64)
    got = genetic_attention(q, v, tokens=layout)
    assert got.shape == q.shape
    torch.testing.assert_close(got, reference_ga(q, v, layout), rtol=1e-10, atol=1e-10)
    # float32 agrees with the float64 reference to float32 precision
    got32 = genetic_attention(q.float(), v.float(), tokens=layout)
    torch.testing.assert_close(got32.double(), reference_ga(q, v, layout), rtol=1e-4, atol=1e-5)


def test_ga_on_vectors_uses_channel_tokens():
    gen = torch.Generator().manual_seed(2)
    q = torch.randn(4, 10, generator=gen, dtype=torch.float64)
    v = torch.randn(4, 10, generator=gen, dtype=torch.float64)
    expected = reference_ga(q, v, "channel")
    torch.testing.assert_close(genetic_attention(q, v), expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(genetic_attention(q, v, tokens="channel"), expected, rtol=1e-10, atol=1e-10)
    assert not torch.allclose(expected, torch.zeros_like(expected))


def test_ga_auto_is_spatial_on_maps():
    q, v = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(genetic_attention(q, v), genetic_attention(q, v, tokens="spatial"))


def test_ga_gradients_match_reference():
    gen = torch.Generator().manual_seed(3)
    q = torch.randn(2, 3, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, 3, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    g1 = torch.autograd.grad(genetic_attention(q, v).square().sum(), (q, v))
    g2 = torch.autograd.grad(reference_ga(q, v, "spatial").square().sum(), (q, v))
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("args, message", [
    ((torch.randn(2, 3), torch.randn(2, 3), "spatial"), "identically zero"),
    ((torch.randn(2, 3, 4), torch.randn(2, 3, 5), "auto"), "same shape"),
    ((torch.randn(2, 3, 4), torch.randn(2, 3, 4), "rows"), "must be one of auto, spatial, channel"),
    ((torch.randn(3), torch.randn(3), "auto"), "channel-first"),
])
def test_ga_refuses_bad_input(args, message):
    with pytest.raises(ValueError, match=message):
        genetic_attention(*args)


# -- mixtures -------------------------------------------------------------------------------------
def test_ga_mixture_is_eq3():
    x, tau = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    mix = GeneticAttentionMixture(lam=0.3, tokens="channel")
    torch.testing.assert_close(mix(x, tau), x + 0.3 * genetic_attention(x, tau, "channel"))


def test_gate_mixture_matches_the_released_formula():
    q = torch.randn(5, 8, dtype=torch.float64)
    v = torch.randn(5, 8, dtype=torch.float64)
    s = torch.sigmoid((q * v).sum(1, keepdim=True) / math.sqrt(8))
    expected = q + 0.6 * (1 - s) * (v - q)
    torch.testing.assert_close(GateMixture(lam=0.6)(q, v), expected)
    maps_q, maps_v = torch.randn(2, 3, 2, 2), torch.randn(2, 3, 2, 2)
    s = torch.sigmoid((maps_q * maps_v).flatten(1).sum(1) / math.sqrt(12)).view(2, 1, 1, 1)
    torch.testing.assert_close(GateMixture(lam=0.5)(maps_q, maps_v), maps_q + 0.5 * (1 - s) * (maps_v - maps_q))


def test_add_mse_none_mixtures():
    x, tau = torch.randn(3, 4), torch.randn(3, 4)
    torch.testing.assert_close(AddMixture(lam=0.25)(x, tau), x + 0.25 * tau)
    mse = MSEMixture()
    value, loss = split_mix(mse(x, tau))       # the receiver unchanged, and the feature loss
    assert not mse.mixes and value is x
    torch.testing.assert_close(loss, ((x - tau) ** 2).mean())
    none = NoMixture()
    assert not none.mixes and split_mix(none(x, tau)) == (x, None)


@pytest.mark.parametrize("kwargs, message", [({"lam": 1.5}, "lam"), ({"lam": True}, "lam"),
                                             ({"tokens": "rows"}, "tokens")])
def test_mixture_arguments_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GeneticAttentionMixture(**kwargs)


# -- transfers ------------------------------------------------------------------------------------
def test_identity_transfer_needs_equal_shapes():
    x = torch.randn(2, 4, 3, 3)
    assert IdentityTransfer((4, 3, 3), (4, 3, 3))(x) is x
    with pytest.raises(ValueError, match="equal shapes"):
        IdentityTransfer((4, 3, 3), (8, 3, 3))


@pytest.mark.parametrize("source, target", [((4, 8, 8), (6, 4, 4)), ((4, 4, 4), (6, 8, 8)), ((4, 5), (2, 9)),
                                            ((3, 4, 4, 4), (5, 2, 2, 2))])
def test_conv1x1_projects_channels_and_resizes(source, target):
    torch.manual_seed(0)
    t = Conv1x1Transfer(source, target).double()
    x = torch.randn(2, *source, dtype=torch.float64)
    y = t(x)
    assert tuple(y.shape) == (2, *target)
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(target) - 1]
    w = t.proj.weight.reshape(target[0], source[0])
    projected = torch.einsum("oc,bc...->bo...", w, x) + t.proj.bias.view(1, -1, *([1] * (len(source) - 1)))
    expected = F.interpolate(projected, size=target[1:], mode=mode, align_corners=False)
    torch.testing.assert_close(y, expected, rtol=1e-10, atol=1e-10)


def test_linear_transfer_on_vectors_and_tokens():
    t = LinearTransfer((6,), (4,))
    x = torch.randn(3, 6)
    torch.testing.assert_close(t(x), t.proj.linear(x))
    tokens = LinearTransfer((6, 5), (4, 5))        # (D, T) channel-first tokens
    seq = torch.randn(2, 6, 5)
    torch.testing.assert_close(tokens(seq), tokens.proj.linear(seq.transpose(1, 2)).transpose(1, 2))
    with pytest.raises(ValueError, match="for maps use 'conv1x1'"):
        LinearTransfer((4, 3, 3), (2, 3, 3))
    with pytest.raises(ValueError, match="for vectors"):
        Conv1x1Transfer((4,), (2,))


def test_auto_transfer_choices_and_rank_errors():
    assert isinstance(auto_transfer((4, 2, 2), (4, 2, 2)), IdentityTransfer)
    assert isinstance(auto_transfer((4,), (8,)), LinearTransfer)
    assert isinstance(auto_transfer((4, 7), (8, 7)), LinearTransfer)
    assert isinstance(auto_transfer((4, 8, 8), (8, 4, 4)), Conv1x1Transfer)
    with pytest.raises(ValueError, match="ranks differ"):
        auto_transfer((4, 8, 8), (8,))
    with pytest.raises(ValueError, match="positive sizes"):
        auto_transfer((0, 2), (2, 2))


# -- extractors -----------------------------------------------------------------------------------
def test_extractors():
    a, b = torch.randn(2, 3, 4, 4), torch.randn(2, 5, 2, 2)
    assert IdentityExtractor()(a) is a
    with pytest.raises(ValueError, match="exactly one"):
        IdentityExtractor()(a, b)
    cat = ConcatExtractor()(a, b)
    assert cat.shape == (2, 8, 4, 4)
    torch.testing.assert_close(cat[:, 3:], F.interpolate(b, size=(4, 4), mode="bilinear", align_corners=False))
    pooled = PoolExtractor()(a, b, torch.randn(2, 7))
    assert pooled.shape == (2, 15)
    torch.testing.assert_close(pooled[:, :3], a.mean((2, 3)))
    with pytest.raises(ValueError, match="one rank"):
        ConcatExtractor()(a, torch.randn(2, 3))


def test_builtins_are_registered_through_the_hooks():
    manager = hkt_core.get_plugin_manager(autoload=False, plugins={"core": builtins})
    assert manager.registry("transfers").names() == ["auto", "conv1x1", "from_vector", "identity", "linear",
                                                     "map_to_tokens", "to_vector", "tokens_to_map"]
    assert manager.registry("mixtures").names() == ["add", "ga", "ga-learned", "gate", "mse", "none"]
    assert manager.registry("extractors").names() == ["concat", "identity", "pool"]
    assert manager.lookup("mixtures", "ga") is GeneticAttentionMixture
    assert manager.registry("mixtures").entry("ga").plugin == "core"
    assert hkt_core.genetic_attention is genetic_attention
