"""Automatic and manual alignment on every model kind, its record, and each failure path."""

from __future__ import annotations

import json

import networkx as nx
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hkt_core
from hkt_core.adapters import Adapter
from hkt_core.align import Alignment, BlockPair, align, align_blocks, analyse, resolve
from hkt_core.align.score import centered_gram, cka_matrix
from hkt_core.align.solve import PLACEMENT_WEIGHT, choose_pairs, longest_chain
from hkt_core.errors import AlignmentError
from hkt_core.trace import fx_trace, trace

from models_zoo import PAIRS, MLP, CifarResNet, MultiOutput, PlainCNN, make_inputs


_CACHE: dict[str, tuple] = {}


def analysed(kind: str):
    """(parent BlockGraph, child BlockGraph, inputs) per kind, built once per test session."""
    if kind not in _CACHE:
        torch.manual_seed(0)
        make_parent, make_child, shapes = PAIRS[kind]
        inputs = make_inputs(shapes)
        _CACHE[kind] = (analyse(make_parent(), inputs), analyse(make_child(), inputs), inputs)
    return _CACHE[kind]


def joint_graph_is_acyclic(bp, bc, alignment: Alignment) -> bool:
    """Both networks in one graph; each mixing pair merges its two values (each stream reads both)."""
    g = nx.union(nx.relabel_nodes(bp.traced.graph, lambda n: ("P", n)),
                 nx.relabel_nodes(bc.traced.graph, lambda n: ("C", n)))
    for pair in alignment.mixing_pairs:
        g = nx.contracted_nodes(g, ("P", pair.parent), ("C", pair.child), self_loops=False)
    return nx.is_directed_acyclic_graph(g)


@pytest.mark.parametrize("kind", list(PAIRS))
def test_automatic_alignment_on_every_model_kind(kind):
    bp, bc, inputs = analysed(kind)
    a = align_blocks(bp, bc, inputs=inputs)
    assert a.stages >= 2
    last = a.pairs[-1]
    assert (last.parent, last.child) == (bp.traced.prediction, bc.traced.prediction)
    assert a.input_shapes == tuple(tuple(t.shape) for t in inputs)
    pidx = [bp.traced.graph.nodes[p.parent]["index"] for p in a.pairs]
    cidx = [bc.traced.graph.nodes[p.child]["index"] for p in a.pairs]
    assert pidx == sorted(set(pidx)) and cidx == sorted(set(cidx))  # order-preserving, no repeats
    assert joint_graph_is_acyclic(bp, bc, a)
    for p in a.mixing_pairs:  # structural method: equal resolution is required
        ps, cs = p.parent_shape, p.child_shape
        assert ps[0] == cs[0] and len(ps) == len(cs)
        assert ps[2:] == cs[2:] if len(ps) == 4 else True
        assert 0.0 <= p.score <= 1.0
        assert bp.traced.shape(p.parent) == ps and bc.traced.shape(p.child) == cs


def test_resnet_pair_aligns_stage_outputs_in_order():
    bp, bc, inputs = analysed("resnet")
    a = align_blocks(bp, bc, stages=4, inputs=inputs)
    assert [(p.parent, p.child) for p in a.pairs][:2] == [("layer1", "layer1"), ("layer2", "layer2")]
    assert a.pairs[2].parent_shape[2:] == a.pairs[2].child_shape[2:]
    assert a.pairs[-1].parent == "fc"
    assert "cut points" in a.pairs[0].reason


def test_stage_count_rule_and_explicit_stages():
    bp, bc, inputs = analysed("resnet")
    assert align_blocks(bp, bc, inputs=inputs).stages == 4  # 32x32, 16x16, 8x8 shared
    assert align_blocks(bp, bc, stages=2, inputs=inputs).stages == 2
    bp, bc, inputs = analysed("mlp")
    assert align_blocks(bp, bc, inputs=inputs).stages == 2  # no spatial maps: one mixing point


def test_export_only_models_align():
    bp, bc, inputs = analysed("export")
    assert bp.traced.backend == bc.traced.backend == "export"
    a = align_blocks(bp, bc, inputs=inputs)
    assert a.pairs[-1].parent == "fc" and a.stages >= 2


def test_token_models_align_tokens_with_tokens():
    bp, bc, inputs = analysed("tokens")
    assert bp.token_model and bc.token_model
    a = align_blocks(bp, bc, stages=3, inputs=inputs)
    first = a.pairs[0]
    assert len(first.parent_shape) == 3 and first.parent_shape[1] == first.child_shape[1] == 5


def test_two_frame_model_parallel_branches_manual_alignment():
    bp, bc, inputs = analysed("flow")
    a = align_blocks(bp, bc, pairs=[("fnet", "fnet"), ("cnet", "cnet")], inputs=inputs)
    assert [(p.parent, p.child) for p in a.pairs] == [("fnet", "fnet"), ("cnet", "cnet"),
                                                      ("interpolate", "interpolate")]
    assert a.method == "manual" and a.pairs[0].reason.startswith("manual")
    assert joint_graph_is_acyclic(bp, bc, a)


def test_public_align_entry_point_and_lazy_names():
    torch.manual_seed(0)
    a = hkt_core.align(MLP(16, 3), MLP(8, 2), torch.randn(2, 10), stages=2)
    assert isinstance(a, hkt_core.Alignment) and isinstance(a.pairs[0], hkt_core.BlockPair)
    assert a.stages == 2 and a.pairs[-1].parent == "head"


# -- errors ----------------------------------------------------------------------------------------------
def test_too_many_stages_is_an_error():
    bp, bc, inputs = analysed("mlp")
    with pytest.raises(AlignmentError, match=r"stages=40 needs 39 .* at most \d+"):
        align_blocks(bp, bc, stages=40, inputs=inputs)


@pytest.mark.parametrize("stages", [1, 0, "3", True])
def test_bad_stage_values(stages):
    with pytest.raises(AlignmentError, match="integer >= 2"):
        align(MLP(), MLP(), torch.randn(2, 10), stages=stages)


def test_unknown_method():
    with pytest.raises(AlignmentError, match="choose one of structural, activation"):
        align(MLP(), MLP(), torch.randn(2, 10), method="cosine")


class FullRes(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        return self.head(self.body(x))


class HalfRes(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        return F.interpolate(self.head(self.body(x)), scale_factor=2.0)


class FlatRes(nn.Module):
    """Reads the 16x16 input as a 1-D signal of 256 positions: its maps are 1-D."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv1d(1, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Conv1d(4, 2, 1)

    def forward(self, x):
        return self.head(self.body(x.flatten(2))).reshape(x.shape[0], 2, 16, 16)


def test_maps_of_other_resolutions_align_when_no_matched_pairs_exist():
    # 16x16 parent maps, 8x8 child maps: no matched pair, so the transfer resizes
    a = align(FullRes(), HalfRes(), torch.randn(1, 1, 16, 16))
    assert a.stages == 2 and "resolution differs (map 16x16 vs map 8x8)" in a.pairs[0].reason
    assert (a.pairs[0].parent_kind, a.pairs[0].child_kind) == ("map", "map")


def test_no_pairs_that_can_mix_is_an_error():
    # 2-D maps against 1-D maps: no transfer connects them
    with pytest.raises(AlignmentError, match=r"no block pairs that can mix.*map 16x16.*map 256"):
        align(FullRes(), FlatRes(), torch.randn(1, 1, 16, 16))


def test_predictions_of_different_shapes_are_an_error():
    with pytest.raises(AlignmentError, match=r"predictions differ in shape.*\[2, 4\].*\[2, 3\]"):
        align(MLP(classes=4), MLP(classes=3), torch.randn(2, 10))


def test_rejected_input_shape_is_an_error():
    with pytest.raises(hkt_core.TraceError, match="rejected example input"):
        align(PlainCNN(), PlainCNN(), torch.randn(1, 4, 16, 16))


# -- manual alignment ---------------------------------------------------------------------------------------
def test_manual_pairs_validated_and_predictions_implied_or_given():
    bp, bc, inputs = analysed("resnet")
    a = align_blocks(bp, bc, pairs=[("layer2", "layer1"), ("layer3", "layer3")])
    b = align_blocks(bp, bc, pairs=[("layer2", "layer1"), ("layer3", "layer3"), ("fc", "fc")])
    assert a == b and [p.parent for p in a.pairs] == ["layer2", "layer3", "fc"]
    assert "resolution differs" in a.pairs[0].reason  # 16x16 parent vs 32x32 child: Transfer resizes
    # aliases resolve to the public name (layer1.0.bn2 is an inner name of a different value; layer3.1 is
    # the last block of layer3, so it names the same value as layer3)
    c = align_blocks(bp, bc, pairs=[("layer3.1", "layer3")])
    assert c.pairs[0].parent == "layer3"


def test_manual_unknown_name_lists_nearby_valid_names():
    bp, bc, _ = analysed("resnet")
    with pytest.raises(AlignmentError, match=r"unknown parent node 'layer9'.*nearby valid names: .*layer"):
        align_blocks(bp, bc, pairs=[("layer9", "layer1")])


def test_manual_crossing_pairs_are_rejected_with_candidates():
    bp, bc, _ = analysed("resnet")
    with pytest.raises(AlignmentError, match=r"out of order: in the child, 'layer1' comes before 'layer2'.*"
                                             r"cyclic.*candidates near them: .*layer2"):
        align_blocks(bp, bc, pairs=[("layer1", "layer2"), ("layer2", "layer1")])
    with pytest.raises(AlignmentError, match="'layer1' is 'layer1'"):
        align_blocks(bp, bc, pairs=[("layer1", "layer1"), ("layer2", "layer1")])


def test_manual_prediction_in_the_middle_and_stage_mismatch():
    bp, bc, _ = analysed("resnet")
    with pytest.raises(AlignmentError, match="uses a prediction"):
        align_blocks(bp, bc, pairs=[("fc", "fc"), ("layer1", "layer1")])
    with pytest.raises(AlignmentError, match="stages=4 but 1 mixing pairs"):
        align_blocks(bp, bc, stages=4, pairs=[("layer1", "layer1")])
    with pytest.raises(AlignmentError, match="list of \\(parent_node, child_node\\) pairs"):
        align_blocks(bp, bc, pairs=["layer1"])


def test_manual_node_off_the_path_to_the_prediction():
    bp, bc, inputs = analysed("mlp")
    with pytest.raises(AlignmentError, match="'x' is a model input"):
        align_blocks(bp, bc, pairs=[("x", "body")])
    x = torch.randn(1, 3, 16, 16)
    # the generic adapter takes the last output ("aux") as the prediction; "body" does not feed it
    with pytest.raises(AlignmentError, match="'body.stage1' does not lie between the inputs and the prediction"):
        align(MultiOutput(), MultiOutput(), x, pairs=[("body.stage1", "body.stage1")])


# -- adapters ------------------------------------------------------------------------------------------------
class DeclaringAdapter(Adapter):
    def declared_blocks(self, model):
        return ["layer1", "layer3"]


def test_adapter_declared_blocks_replace_discovery():
    from hkt_core.align import discover

    x = torch.randn(1, 3, 32, 32)
    bg = discover(trace(CifarResNet(8, 4), x), DeclaringAdapter().declared_blocks(None))
    assert [b.name for b in bg.candidates] == ["layer1", "layer3"]
    with pytest.raises(AlignmentError, match="unknown declared block 'nope'"):
        discover(trace(CifarResNet(8, 4), x), ["nope"])


# -- activation method ---------------------------------------------------------------------------------------
def reference_linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Kornblith et al. feature-space form, float64: ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)."""
    x = x.reshape(x.shape[0], -1).double()
    y = y.reshape(y.shape[0], -1).double()
    x, y = x - x.mean(0), y - y.mean(0)
    return float((y.T @ x).norm() ** 2 / ((x.T @ x).norm() * (y.T @ y).norm()))


def test_linear_cka_matches_reference():
    gen = torch.Generator().manual_seed(1)
    xs = [torch.randn(10, 4, 3, generator=gen), torch.randn(10, 7, generator=gen)]
    ys = [torch.randn(10, 5, generator=gen), xs[0] * 3.0 + 1.0]
    got = cka_matrix([centered_gram(x) for x in xs], [centered_gram(y) for y in ys])
    want = np.array([[reference_linear_cka(x, y) for y in ys] for x in xs])
    assert np.allclose(got, want, atol=1e-10)
    assert got[0, 1] == pytest.approx(1.0)  # invariant to scale and shift


def test_activation_method_needs_eight_samples_and_uses_cka():
    torch.manual_seed(0)
    parent, child = PlainCNN(8, 2), PlainCNN(8, 1)
    with pytest.raises(AlignmentError, match="at least 8 samples; the example inputs have batch 4"):
        align(parent, child, torch.randn(4, 3, 16, 16), method="activation")
    x = torch.randn(8, 3, 16, 16)
    act = align(parent, child, x, method="activation", stages=2)
    st = align(parent, child, x, method="structural", stages=2)
    assert act.method == "activation" and act.pairs[-1].parent == "fc"
    assert all(0.0 <= p.score <= 1.0 for p in act.pairs)
    assert act.pairs[0].score != st.pairs[0].score or act.pairs[0].parent != st.pairs[0].parent


# -- solver ----------------------------------------------------------------------------------------------------
def test_solver_matches_brute_force():
    import itertools

    rng = np.random.default_rng(3)
    for _ in range(20):
        kp, kc, count = rng.integers(2, 6), rng.integers(2, 6), int(rng.integers(1, 4))
        scores = rng.random((kp, kc))
        ok = rng.random((kp, kc)) > 0.3
        dp, dc = np.sort(rng.random(kp)), np.sort(rng.random(kc))
        best, best_val = None, -np.inf
        for ps in itertools.combinations(range(kp), count):
            for cs in itertools.combinations(range(kc), count):
                if not all(ok[i, j] for i, j in zip(ps, cs)):
                    continue
                val = sum(scores[i, j] + PLACEMENT_WEIGHT * (1 - (abs(dp[i] - (k + 1) / count) + abs(dc[j] - (k + 1) / count)) / 2)
                          for k, (i, j) in enumerate(zip(ps, cs)))
                if val > best_val + 1e-12:
                    best, best_val = list(zip(ps, cs)), val
        got = choose_pairs(scores, ok, dp, dc, count)
        if best is None:
            assert got is None and longest_chain(ok) < count
        else:
            val = sum(scores[i, j] + PLACEMENT_WEIGHT * (1 - (abs(dp[i] - (k + 1) / count) + abs(dc[j] - (k + 1) / count)) / 2)
                      for k, (i, j) in enumerate(got))
            assert val == pytest.approx(best_val) and longest_chain(ok) >= count


# -- record -----------------------------------------------------------------------------------------------------
def test_alignment_json_round_trip_and_version():
    bp, bc, inputs = analysed("unet")
    a = align_blocks(bp, bc, inputs=inputs)
    data = json.loads(a.to_json())
    assert data["version"] == 1 and len(data["pairs"]) == a.stages
    assert data["pairs"][-1]["parent_shape"] == list(a.pairs[-1].parent_shape)
    back = Alignment.from_json(a.to_json())
    assert [(p.parent, p.child, p.parent_shape) for p in back.pairs] == \
           [(p.parent, p.child, p.parent_shape) for p in a.pairs]
    assert back.input_shapes == a.input_shapes
    data["version"] = 2
    with pytest.raises(AlignmentError, match="version 2 is not supported"):
        Alignment.from_json(json.dumps(data))
    with pytest.raises(AlignmentError, match="not valid alignment JSON"):
        Alignment.from_json("{")
    del data["pairs"][0]["score"]
    data["version"] = 1
    with pytest.raises(AlignmentError, match="pair 0 is missing score"):
        Alignment.from_json(json.dumps(data))


def test_block_pair_validation():
    with pytest.raises(AlignmentError, match=r"score must be a number in \[0, 1\]"):
        BlockPair("a", "b", (1, 2), (1, 2), 1.5)
    with pytest.raises(AlignmentError, match="non-empty node name"):
        BlockPair("", "b", (1, 2), (1, 2), 0.5)
    with pytest.raises(AlignmentError, match="at least one example input shape"):
        Alignment(pairs=[BlockPair("a", "b", (1, 2), (1, 2), 0.5)], input_shapes=[])


# -- resolving names on another trace ----------------------------------------------------------------------------
def test_resolve_alignment_read_back_on_a_fresh_fx_trace():
    bp, bc, inputs = analysed("resnet")
    a = Alignment.from_json(align_blocks(bp, bc, inputs=inputs).to_json())
    gm = fx_trace(CifarResNet(14, 8))
    nodes = resolve(gm, [p.parent for p in a.pairs])
    assert [n.op for n in nodes][-1] == "call_module" and nodes[-1].target == "fc"
    with pytest.raises(AlignmentError, match=r"'layer7' \(nearby valid names: layer"):
        resolve(gm, ["layer1", "layer7"])


def test_resolve_on_an_export_trace():
    bp, _, _ = analysed("export")
    nodes = resolve(bp.traced.gm, ["stem", "down", "fc"])
    assert [bp.traced.names[n] for n in nodes] == ["stem", "down", "fc"]


def test_family_accepts_an_alignment_read_back_from_json():
    from hkt_core import family

    bp, bc, inputs = analysed("resnet")
    a = Alignment.from_json(align_blocks(bp, bc, inputs=inputs).to_json())
    fam = family.Family(bp.traced.model, bc.traced.model, a)
    out = fam(*inputs)
    assert out.native.shape == out.inherited.shape == out.parent_head.shape == (2, 10)
