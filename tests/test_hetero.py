"""Heterogeneous pairs end to end: a token transformer and a 1-D CNN align across kinds, a Family
trains through the cross-kind transfers, and activation alignment does not depend on the batch size."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from hkt_core.align import align
from hkt_core.align.activation import Calibration, calibration_from_dataset
from hkt_core.config import HKTConfig
from hkt_core.errors import AlignmentError
from hkt_core.etm.crosskind import CROSS_KIND_TRANSFERS
from hkt_core.family import Family


class _Layer(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.mha = nn.MultiheadAttention(width, 2, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))

    def forward(self, seq):
        q = self.ln1(seq)
        seq = seq + self.mha(q, q, q, need_weights=False)[0]
        return seq + self.ffn(self.ln2(seq))


class SignalTransformer(nn.Module):
    """Cuts a (B, 1, 40) signal into 10 patches of 4 samples: tokens (B, 10, width) all the way."""

    def __init__(self, width: int = 16, depth: int = 3, classes: int = 10) -> None:
        super().__init__()
        self.to_tokens = nn.Linear(4, width)
        self.where = nn.Parameter(torch.randn(1, 10, width) * 0.02)
        self.layers = nn.Sequential(*[_Layer(width) for _ in range(depth)])
        self.final_norm = nn.LayerNorm(width)
        self.classify = nn.Linear(width, classes)

    def forward(self, signal):
        seq = self.to_tokens(signal.reshape(signal.shape[0], 10, 4)) + self.where
        return self.classify(self.final_norm(self.layers(seq)).mean(dim=1))


class TinyConv1d(nn.Module):
    """A 1-D CNN: maps (B, C, L) at lengths 40, 20 and 10, then a pooled vector."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.block_a = nn.Sequential(nn.Conv1d(1, 8, 5, padding=2), nn.BatchNorm1d(8), nn.ReLU())
        self.block_b = nn.Sequential(nn.Conv1d(8, 12, 3, padding=1), nn.BatchNorm1d(12), nn.ReLU(), nn.MaxPool1d(2))
        self.block_c = nn.Sequential(nn.Conv1d(12, 16, 3, padding=1), nn.BatchNorm1d(16), nn.ReLU(), nn.MaxPool1d(2))
        self.out = nn.Linear(16, classes)

    def forward(self, signal):
        return self.out(self.block_c(self.block_b(self.block_a(signal))).mean(-1))


@pytest.fixture(scope="module")
def signals():
    """Fixed MNIST-1D-like calibration samples: class-dependent bumps plus noise."""
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(160) % 10
    pos = torch.linspace(0, 1, 40)
    centres = (labels.float() + 0.5) / 10
    x = torch.exp(-((pos[None, :] - centres[:, None]) ** 2) / 0.005) + 0.1 * torch.randn(160, 40, generator=gen)
    return x[:, None, :], labels


def test_token_transformer_and_1d_cnn_align_and_train_through_cross_kind_transfers():
    torch.manual_seed(0)
    parent, child = SignalTransformer(), TinyConv1d()
    x = torch.randn(4, 1, 40)
    alignment = align(parent, child, x, stages=3)
    assert alignment.stages == 3
    records = json.loads(alignment.to_json())["pairs"]
    assert all({"parent_kind", "child_kind"} <= set(r) for r in records)
    cross = [p for p in alignment.mixing_pairs if (p.parent_kind, p.child_kind) == ("tokens", "map")]
    assert cross, alignment.table()
    point = cross[0]
    # an intermediate transformer layer against an intermediate CNN block, not the outputs
    assert point.parent.startswith("layers.") and point.child.startswith(("block_a", "block_b", "block_c"))
    assert point.child_shape[2] in (20, 40)

    family = Family(parent, child, alignment, HKTConfig(lam=0.6, alphas=(0.3, 0.4, 0.3)))
    names = [type(t).__name__ for m in family.points for t in (m.to_child_transfer, m.to_parent_transfer)]
    assert "TokensToMap" in names and "MapToTokens" in names
    family.train()
    opt = torch.optim.SGD(family.trainable_parameters(), lr=0.01)
    batch, target = torch.randn(8, 1, 40), torch.arange(8) % 10
    out = family(batch)
    assert not torch.allclose(out.inherited, out.native)
    family.loss(out, target).backward()
    cross_ops = [t for m in family.points for t in (m.to_child_transfer, m.to_parent_transfer)
                 if isinstance(t, tuple(CROSS_KIND_TRANSFERS.values()))]
    assert cross_ops
    for op in cross_ops:
        grads = [p.grad for p in op.parameters()]
        assert grads and all(g is not None and g.abs().sum() > 0 for g in grads), type(op).__name__
    opt.step()
    torch.testing.assert_close(family.export_child()(batch), family.child(batch))


def test_align_and_family_share_one_validity_rule():
    class Conv2dHead(nn.Module):
        def __init__(self):
            super().__init__()
            self.lift = nn.Conv2d(1, 4, 1)
            self.out = nn.Linear(4, 10)

        def forward(self, signal):
            return self.out(self.lift(signal[:, :, None, :]).mean((2, 3)))

    x = torch.randn(2, 1, 40)
    with pytest.raises(AlignmentError, match="map 1x40 \\(parent\\) and map 40 \\(child\\) cannot mix") as from_align:
        align(Conv2dHead(), TinyConv1d(), x, pairs=[("lift", "block_a")])
    with pytest.raises(AlignmentError, match="cannot mix") as from_family:
        Family(Conv2dHead(), TinyConv1d(), [("lift", "block_a"), ("out", "out")], HKTConfig(), example_inputs=x)
    assert str(from_align.value).split(": ", 1)[1] == str(from_family.value).split(": ", 1)[1]
    # every automatic proposal across kinds builds (maps <-> vectors included)
    for stages in (2, 3, 4):
        a = align(SignalTransformer(), TinyConv1d(), x, stages=stages)
        Family(SignalTransformer(), TinyConv1d(), a, HKTConfig())


def test_activation_alignment_is_the_same_at_two_batch_sizes(signals):
    inputs, _ = signals
    torch.manual_seed(1)
    parent, child = SignalTransformer(), TinyConv1d()
    calib = Calibration((inputs,), source="test signals", seed=0)
    small = align(parent, child, inputs[:2], stages=3, method="activation", calibration=calib, batch_size=16)
    large = align(parent, child, inputs[:2], stages=3, method="activation", calibration=calib, batch_size=160)
    assert [(p.parent, p.child) for p in small.pairs] == [(p.parent, p.child) for p in large.pairs]
    for a, b in zip(small.mixing_pairs, large.mixing_pairs):
        assert a.cka is not None and a.cka == pytest.approx(b.cka, abs=1e-5)
    assert small.calibration == {"source": "test signals", "samples": 160, "seed": 0}
    assert "cka" in small.table().splitlines()[0]
    assert json.loads(small.to_json())["pairs"][0]["cka"] == pytest.approx(small.pairs[0].cka, abs=1e-6)


def test_calibration_draw_is_fixed_by_its_seed(signals):
    inputs, labels = signals
    data = list(zip(inputs, labels))
    a = calibration_from_dataset(data, samples=32, seed=3)
    b = calibration_from_dataset(data, samples=32, seed=3)
    c = calibration_from_dataset(data, samples=32, seed=4)
    assert a.samples == 32 and torch.equal(a.inputs[0], b.inputs[0]) and not torch.equal(a.inputs[0], c.inputs[0])
    with pytest.raises(AlignmentError, match="calibration samples = 4 is invalid"):
        calibration_from_dataset(data, samples=4)


def test_layouts_stated_for_the_alignment_travel_with_it_to_the_family():
    x = torch.randn(2, 1, 40)
    stated = {"child:block_b": "tokens"}
    a = align(TinyConv1d(), TinyConv1d(), x, pairs=[("block_b", "block_b")], layouts=stated)
    assert (a.pairs[0].parent_kind, a.pairs[0].child_kind) == ("map", "tokens")
    back = type(a).from_json(a.to_json())
    assert back.layouts == stated and json.loads(a.to_json())["layouts"] == stated
    family = Family(TinyConv1d(), TinyConv1d(), back, HKTConfig(), example_inputs=x)
    assert type(family.points[0].to_child_transfer).__name__ == "MapToTokens"
    assert type(family.points[0].to_parent_transfer).__name__ == "TokensToMap"


def test_a_map_and_a_vector_that_align_accepts_also_train():
    # once shown by align as valid and then refused by training ("the ranks differ"): now one rule
    x = torch.randn(2, 1, 40)
    bg_pairs = [("block_b", "block_c"), ("block_c", "mean")]
    a = align(TinyConv1d(), TinyConv1d(), x, pairs=bg_pairs)
    assert [(p.parent_kind, p.child_kind) for p in a.mixing_pairs] == [("map", "map"), ("map", "vector")]
    assert "map 10 -> vector: cross-kind transfer" in a.pairs[1].reason
    family = Family(TinyConv1d(), TinyConv1d(), a, HKTConfig(alphas=(0.3, 0.4, 0.3)))
    assert [type(family.points[1].to_child_transfer).__name__,
            type(family.points[1].to_parent_transfer).__name__] == ["ToVector", "FromVector"]
    out = family(x)
    family.loss(out, torch.arange(2)).backward()
    assert family.points[1].to_parent_transfer.position.grad is not None
