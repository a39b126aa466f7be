"""The Family's forward against a hand-unrolled Algorithm 1, in float64.

The reference below applies the paper's lines 4-10 step by step with the Family's own transfer
modules (tested separately) and a Genetic Attention written out in the test.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hkt_core import HKTConfig
from hkt_core.family import Family
from family_support import CORE, ToyTask
from test_etm_operators import reference_ga


class Stage(nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
        self.relu = nn.ReLU(inplace=True)   # mutates the mixing point's value in eager mode

    def forward(self, x):
        return self.relu(self.conv(x))


class Chain(nn.Module):
    """c1 -> c2 -> c3 (head). Mixing points at the convolutions' outputs, before the in-place ReLU."""

    def __init__(self, width, classes=4):
        super().__init__()
        self.b1 = Stage(3, width)
        self.b2 = Stage(width, 2 * width, stride=2)
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x):
        return self.fc(self.b2(self.b1(x)).mean((2, 3)))


POINTS = [("b1.conv", "b1.conv"), ("b2.conv", "b2.conv"), ("fc", "fc")]


def ga_mix(receiver, donor, lam, layout="spatial"):
    return receiver + lam * reference_ga(receiver, donor, layout)


def unrolled(parent, child, fam, x, lam, directions):
    """Algorithm 1, lines 4-10, written out for the chain (blocks split at the convolutions)."""
    p_blocks = [lambda v: parent.b1.conv(v),
                lambda v: parent.b2.conv(torch.relu(v)),
                lambda v: parent.fc(torch.relu(v).mean((2, 3)))]
    c_blocks = [lambda v: child.b1.conv(v),
                lambda v: child.b2.conv(torch.relu(v)),
                lambda v: child.fc(torch.relu(v).mean((2, 3)))]
    zt, z = p_blocks[0](x), c_blocks[0](x)                          # line 4
    for i in range(2):                                               # lines 5-11
        ops = fam.points[i]
        phi_p, phi_c = zt, z
        if directions[i] in ("both", "to_parent"):
            phi_p = ga_mix(zt, ops.to_parent_transfer(z), lam)      # line 6
        if directions[i] in ("both", "to_child"):
            phi_c = ga_mix(z, ops.to_child_transfer(zt), lam)       # line 7
        z, zt = c_blocks[i + 1](phi_c), p_blocks[i + 1](phi_p)      # lines 8-10
    native = c_blocks[2](c_blocks[1](c_blocks[0](x)))
    return native, z, zt


@pytest.mark.parametrize("directions", ["both", ("to_child", "to_parent"), ("head", "both")])  # "head": old spelling
def test_lockstep_matches_hand_unrolled_algorithm_1(directions):
    torch.manual_seed(0)
    parent, child = Chain(6), Chain(3)
    cfg = HKTConfig(lam=0.7, directions=directions)
    fam = Family(parent, child, POINTS, cfg, example_inputs=torch.randn(1, 3, 8, 8), task=ToyTask(), manager=CORE).double()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    out = fam(x)
    native, inherited, head = unrolled(parent, child, fam, x, 0.7, cfg.directions_for(2))
    torch.testing.assert_close(out.native, native, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out.inherited, inherited, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out.parent_head, head, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out.native, child(x), rtol=0, atol=0)
    assert not torch.allclose(out.inherited, out.native)
    assert not torch.allclose(out.parent_head, parent(x))


class Residual(nn.Module):
    """stem -> (conv(stem) + stem) -> head: the stem's value is read twice."""

    def __init__(self, width):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.conv = nn.Conv2d(width, width, 3, padding=1)
        self.fc = nn.Linear(width, 3)

    def forward(self, x):
        s = self.stem(x)
        return self.fc(torch.relu(self.conv(s) + s).mean((2, 3)))


def test_a_mixed_value_replaces_every_downstream_use():
    torch.manual_seed(1)
    parent, child = Residual(4), Residual(4)
    fam = Family(parent, child, [("stem", "stem"), ("fc", "fc")], HKTConfig(lam=0.5),
                 example_inputs=torch.randn(1, 3, 6, 6), task=ToyTask(), manager=CORE).double()
    x = torch.randn(3, 3, 6, 6, dtype=torch.float64)
    s_p, s_c = parent.stem(x), child.stem(x)
    assert type(fam.points[0].to_child_transfer).__name__ == "IdentityTransfer"
    phi_c = ga_mix(s_c, s_p, 0.5)
    phi_p = ga_mix(s_p, s_c, 0.5)
    expected_inh = child.fc(torch.relu(child.conv(phi_c) + phi_c).mean((2, 3)))
    expected_head = parent.fc(torch.relu(parent.conv(phi_p) + phi_p).mean((2, 3)))
    out = fam(x)
    torch.testing.assert_close(out.inherited, expected_inh, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out.parent_head, expected_head, rtol=1e-10, atol=1e-10)


class Tokens(nn.Module):
    """(B, T, F) -> Linear embedding -> pre-norm MLP block with a residual -> mean over T -> Linear."""

    def __init__(self, dim, classes=3):
        super().__init__()
        self.embed = nn.Linear(5, dim)
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        t = self.embed(x)
        t = t + self.mlp(self.norm(t))
        return self.head(t.mean(1))


def test_token_model_mixes_channel_last_tokens_as_the_design_says():
    torch.manual_seed(2)
    parent, child = Tokens(8), Tokens(4)
    fam = Family(parent, child, [("embed", "embed"), ("add", "add"), ("head", "head")], HKTConfig(lam=0.6),
                 example_inputs=torch.randn(1, 7, 5), task=ToyTask(), manager=CORE).double()
    assert [tuple(k.kind for k in p.child_kinds) for p in fam._plan] == [("tokens",), ("tokens",)]
    x = torch.randn(2, 7, 5, dtype=torch.float64)
    def cf(t):  # (B, T, D) -> (B, D, T): tokens = T positions, d = D
        return t.transpose(1, 2)

    def cl(t):  # (B, D, T) -> (B, T, D)
        return t.transpose(1, 2)

    def mix(recv, donor):
        return cl(ga_mix(cf(recv), donor, 0.6, "spatial"))

    tp, tc = parent.embed(x), child.embed(x)
    ops = fam.points
    tp, tc = (mix(tp, ops[0].to_parent_transfer(cf(tc))), mix(tc, ops[0].to_child_transfer(cf(tp))))
    tp, tc = tp + parent.mlp(parent.norm(tp)), tc + child.mlp(child.norm(tc))
    tp, tc = (mix(tp, ops[1].to_parent_transfer(cf(tc))), mix(tc, ops[1].to_child_transfer(cf(tp))))
    out = fam(x)
    torch.testing.assert_close(out.inherited, child.head(tc.mean(1)), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out.parent_head, parent.head(tp.mean(1)), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out.native, child(x), rtol=0, atol=0)


def test_mse_ablation_does_not_mix_and_reports_the_feature_loss():
    torch.manual_seed(3)
    parent, child = Chain(6), Chain(3)
    cfg = HKTConfig(mixture="mse", alphas=(0.5, 0.5, 0.0))
    fam = Family(parent, child, POINTS, cfg, example_inputs=torch.randn(1, 3, 8, 8), task=ToyTask(), manager=CORE)
    x = torch.randn(2, 3, 8, 8)
    out = fam(x)
    assert out.inherited is out.native
    torch.testing.assert_close(out.parent_head, parent(x))
    expected = torch.stack([
        F.mse_loss(fam.points[0].to_child_transfer(parent.b1.conv(x)), child.b1.conv(x)),
        F.mse_loss(fam.points[1].to_child_transfer(parent.b2.conv(parent.b1(x))), child.b2.conv(child.b1(x))),
    ]).mean()
    torch.testing.assert_close(out.feature_loss, expected)
    parts = fam.loss_parts(out, torch.tensor([0, 1]))
    torch.testing.assert_close(parts.l1, expected)


def test_gate_and_add_mixtures_run_in_the_family():
    for name in ("gate", "add"):
        torch.manual_seed(4)
        fam = Family(Chain(6), Chain(3), POINTS, HKTConfig(mixture=name),
                     example_inputs=torch.randn(1, 3, 8, 8), task=ToyTask(), manager=CORE)
        out = fam(torch.randn(2, 3, 8, 8))
        assert out.inherited.shape == (2, 4) and not torch.allclose(out.inherited, out.native)


def test_no_mixture_leaves_both_networks_alone():
    torch.manual_seed(5)
    parent, child = Chain(6), Chain(3)
    fam = Family(parent, child, POINTS, HKTConfig(mixture="none", alphas=(0.0, 1.0, 0.0)),
                 example_inputs=torch.randn(1, 3, 8, 8), task=ToyTask(), manager=CORE)
    x = torch.randn(2, 3, 8, 8)
    out = fam(x)
    assert out.inherited is out.native and out.feature_loss is None
    torch.testing.assert_close(out.native, child(x), rtol=0, atol=0)
    torch.testing.assert_close(out.parent_head, parent(x), rtol=0, atol=0)
    assert len(list(fam.points.parameters())) == 0


def test_layouts_can_be_given_per_model():
    torch.manual_seed(6)
    fam = Family(Tokens(8), Tokens(4), [("embed", "embed"), ("add", "add"), ("head", "head")], HKTConfig(),
                 example_inputs=torch.randn(1, 7, 5), task=ToyTask(), manager=CORE,
                 layouts={"child:add": "map", "add": "channels_first"})   # the older spelling is read too
    assert [tuple(k.kind for k in p.child_kinds) for p in fam._plan] == [("tokens",), ("map",)]
    assert [tuple(k.kind for k in p.parent_kinds) for p in fam._plan] == [("tokens",), ("map",)]
    with pytest.raises(ValueError, match="is not a layout; allowed: map, tokens"):
        Family(Tokens(8), Tokens(4), [("embed", "embed"), ("head", "head")], HKTConfig(),
               example_inputs=torch.randn(1, 7, 5), task=ToyTask(), manager=CORE, layouts={"embed": "nhwc"})


class InPlace(nn.Module):
    """In-place function and method calls right after the mixing point."""

    def __init__(self, width):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.fc = nn.Linear(width, 3)

    def forward(self, x):
        h = self.conv1(x)
        F.relu(h, inplace=True)          # result unused: later readers of h see the mutation
        g = self.conv2(h)
        g.mul_(0.5)
        return self.fc((g + h).mean((2, 3)))


def test_in_place_calls_keep_eager_semantics_and_mix_the_pre_mutation_value():
    torch.manual_seed(7)
    parent, child = InPlace(4), InPlace(4)
    fam = Family(parent, child, [("conv1", "conv1"), ("fc", "fc")], HKTConfig(lam=0.5),
                 example_inputs=torch.randn(1, 3, 5, 5), task=ToyTask(), manager=CORE).double()
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    out = fam(x)
    torch.testing.assert_close(out.native, child(x), rtol=0, atol=0)
    hp, hc = parent.conv1(x), child.conv1(x)

    def rest(model, h):
        h = torch.relu(h)
        return model.fc((0.5 * model.conv2(h) + h).mean((2, 3)))

    torch.testing.assert_close(out.inherited, rest(child, ga_mix(hc, hp, 0.5)), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out.parent_head, rest(parent, ga_mix(hp, hc, 0.5)), rtol=1e-10, atol=1e-10)


class ViewInPlace(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        y = x.view(x.shape[0], 4)
        y.relu_()
        return self.fc(x.view(x.shape[0], 4))


def test_in_place_update_of_a_view_is_refused():
    from hkt_core import TraceError

    with pytest.raises(TraceError, match="updates a view of another value in place"):
        Family(ViewInPlace(), ViewInPlace(), [("fc", "fc"), ("fc", "fc")], HKTConfig(),
               example_inputs=torch.randn(1, 2, 2), task=ToyTask(), manager=CORE)


def test_operators_and_example_inputs_follow_the_childs_dtype():
    torch.manual_seed(8)
    parent, child = Chain(6).double(), Chain(3).double()
    fam = Family(parent, child, POINTS, HKTConfig(), example_inputs=torch.randn(1, 3, 8, 8),
                 task=ToyTask(), manager=CORE)
    assert all(p.dtype == torch.float64 for p in fam.points.parameters())
    assert fam(torch.randn(2, 3, 8, 8, dtype=torch.float64)).inherited.dtype == torch.float64
