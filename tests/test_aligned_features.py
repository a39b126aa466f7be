"""AlignedFeatures, the building block of methods that compare the parent and the child at aligned
points: the Family's kinds, the model's own graph in each mode, one state dict entry per tensor,
the parent frozen and outside, and a point no transfer connects said in one line."""

from __future__ import annotations

import copy

import pytest
import torch

import hkt_core
from hkt_core.errors import AlignmentError, ConfigError
from test_mode_fidelity import Conv_Odd
from test_train_support import make_child, make_parent


def _conv_pair():
    torch.manual_seed(0)
    parent, child = Conv_Odd(12).eval().requires_grad_(False), Conv_Odd(6)
    x = (torch.randn(6, 3, 16, 16),)
    return parent, child, x, hkt_core.align(parent, child, x, stages=3)


def test_the_kinds_are_the_family_s():
    parent, child, x, alignment = _conv_pair()
    aligned = hkt_core.AlignedFeatures(parent, child, alignment, x, transfers=True)
    family = hkt_core.Family(parent, child, alignment, example_inputs=x)
    assert [(p.parent_kind, p.child_kind) for p in aligned.points] == \
        [(p.parent_kinds[0], p.child_kinds[0]) for p in family._plan]
    assert [(p.parent, p.child) for p in aligned.points] == [(p.parent, p.child) for p in alignment.mixing_pairs]
    values = aligned.values(aligned(*x), aligned.parent_values(*x))
    for v in values:   # channel-first, the child's mapped onto the parent's shape
        assert v.mapped.shape == v.parent.shape and v.child.shape[0] == 6


def test_the_child_runs_its_own_graph_in_each_mode_and_the_parent_stays_frozen():
    parent, child, x, alignment = _conv_pair()
    aligned = hkt_core.AlignedFeatures(parent, child, alignment, x)
    plain = copy.deepcopy(child)
    aligned.eval()
    plain.eval()
    with torch.no_grad():
        assert torch.equal(aligned(*x)["output"], plain(*x))
    aligned.train()
    plain.train()
    assert child.training and not parent.training, "the parent stays in eval mode"
    torch.manual_seed(5)
    got = aligned(*x)["output"]
    torch.manual_seed(5)
    assert torch.equal(got, plain(*x)), "stochastic depth, dropout and batch statistics as in the child"
    assert all(torch.equal(child.state_dict()[k], v) for k, v in plain.state_dict().items())
    parent_values = aligned.parent_values(*x)
    assert not any(v.requires_grad for v in parent_values.values() if isinstance(v, torch.Tensor))
    assert got.requires_grad


def test_the_state_dict_holds_the_child_and_the_transfers_once_and_never_the_parent():
    parent, child, x, alignment = _conv_pair()
    aligned = hkt_core.AlignedFeatures(parent, child, alignment, x, transfers=True)
    keys = set(aligned.state_dict())
    assert {k for k in keys if k.startswith("child.")} == {f"child.{k}" for k in child.state_dict()}
    assert keys - {f"child.{k}" for k in child.state_dict()} == {k for k in keys if k.startswith("transfers.")}
    assert len(aligned.transfers) == len(aligned.points)
    own = {id(p) for p in aligned.parameters()}
    assert not own & {id(p) for p in parent.parameters()}
    assert {id(p) for p in child.parameters()} <= own


def test_name_pairs_work_and_what_cannot_be_compared_is_one_line():
    parent, child, x = make_parent(), make_child(), (torch.randn(2, 1, 8, 8),)
    aligned = hkt_core.AlignedFeatures(parent, child, [("stem", "stem"), ("flatten", "body"), ("head", "head")], x,
                                       transfers=True)
    assert [(p.parent_kind.kind, p.child_kind.kind) for p in aligned.points] == [("map", "map"), ("vector", "map")]
    with pytest.raises(AlignmentError, match="one value per side; point 1 names"):
        hkt_core.AlignedFeatures(parent, child, [(("stem", "body"), "stem"), ("head", "head")], x)
    tokens = torch.nn.Sequential(torch.nn.Flatten(1, 2), torch.nn.Linear(8, 4), torch.nn.Flatten(1), torch.nn.Linear(32, 3))
    with pytest.raises(ConfigError, match=r"^aligned point 1 \(parent 'stem' \(map 8x8\) <- child '1' \(tokens 8\)\): "
                                          r"no transfer maps tokens 8 onto map 8x8"):
        hkt_core.AlignedFeatures(parent, tokens, [("stem", "1"), ("head", "3")], x, transfers=True)
    assert hkt_core.AlignedFeatures(parent, tokens, [("stem", "1"), ("head", "3")], x).points[0].child_kind.kind == \
        "tokens"   # without transfers the values are still given
