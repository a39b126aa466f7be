"""Alignment by principles (docs/alignment.md, sections 2 and 3): the trunk (no front end, no plain
transitions, nothing inside a block), the value a tuple-returning block hands on, the head that pools
inside its own module, and the trunk levels that constrain the chain."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hkt_core.align import align, analyse
from hkt_core.align.solve import Levels, choose_pairs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import align_zoo  # noqa: E402


class _ConvAct(nn.Module):
    """A plain layer: convolution, norm, activation (one path through it)."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


class _Res(nn.Module):
    """A residual block (two paths through it)."""

    def __init__(self, dim):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(dim, dim, 3, 1, 1), nn.BatchNorm2d(dim), nn.ReLU(),
                                  nn.Conv2d(dim, dim, 3, 1, 1), nn.BatchNorm2d(dim))

    def forward(self, x):
        return torch.relu(x + self.body(x))


class _Staged(nn.Module):
    """A plain stem (two layers, 32x32 then 16x16 from a 32x32 input), four stages (16x16, then 8x8,
    4x4 and 2x2, each opened by a plain strided transition), a plain tail, pooled by a head module
    that holds its own pooling (``head = Sequential(pool, flatten, linear)``)."""

    def __init__(self, depths=(1, 1, 2, 1), width=8, classes=3):
        super().__init__()
        self.stem = nn.ModuleList([_ConvAct(3, width), _ConvAct(width, width, 2)])
        stages = []
        for s, d in enumerate(depths):
            stages.append(nn.Sequential(*([_ConvAct(width, width, 2)] if s else []),
                                        *(_Res(width) for _ in range(d))))
        self.stages = nn.Sequential(*stages)
        self.tail = _ConvAct(width, 2 * width)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, classes))

    def forward(self, x):
        for layer in self.stem:
            x = layer(x)
        return self.head(self.tail(self.stages(x)))


def test_the_trunk_leaves_out_the_plain_front_end_transitions_and_tail():
    bg = analyse(_Staged(), torch.randn(2, 3, 32, 32))
    names = [b.name for b in bg.candidates]
    assert not any(n.startswith(("stem", "tail")) for n in names), names
    outs = [b for b in bg.candidates if b.block_output]
    assert [b.resolution for b in outs] == [(16, 16), (8, 8), (4, 4), (4, 4), (2, 2)], names
    assert [b.tier for b in bg.candidates] == [1, 2, 3, 3, 4, 4] and bg.candidates[-1].tiers == 4
    assert [b.position_text for b in outs] == ["1/5", "2/5", "3/5", "4/5", "5/5"]   # depth over the trunk
    assert any("before the trunk" in n for n in bg.notes) and any("between its stages" in n for n in bg.notes)
    assert any("after the trunk" in n for n in bg.notes)


def test_a_head_that_pools_inside_its_own_module_reads_the_pooled_features():
    bg = analyse(_Staged(), torch.randn(2, 3, 32, 32))
    [head] = [b for b in bg.candidates if b.head_input]
    assert head.name == "head.1" and head.shape == (2, 16)   # the flattened pool, not the 2x2 map


def test_every_level_gets_a_point_and_the_pool_stands_for_the_last():
    x = torch.randn(2, 3, 32, 32)
    a = align(_Staged(), _Staged((2, 2, 2, 2)), x, stages=5)
    got = [(p.parent, p.child) for p in a.mixing_pairs]
    # three level ends (16x16, 8x8, 4x4) and the pooled features: never the 2x2 map and its pool
    assert got == [("stages.0", "stages.0"), ("stages.1", "stages.1"), ("stages.2", "stages.2"),
                   ("head.1", "head.1")], got
    assert "levels 1/4 and 1/4" in a.mixing_pairs[0].reason


def test_fewer_points_than_levels_use_each_level_once_and_say_which_were_left_out():
    a = align(_Staged(), _Staged((2, 2, 2, 2)), torch.randn(2, 3, 32, 32), stages=3)
    pairs = a.mixing_pairs
    assert pairs[-1].parent == "head.1" and pairs[-1].child == "head.1"
    levels = [int(p.reason.split("levels ")[1].split("/")[0]) for p in pairs]
    assert len(set(levels)) == len(levels), [p.reason for p in pairs]
    assert "2 points for 4 levels" in pairs[0].reason and "left out, by depth" in pairs[0].reason


class _AudioTransformer(nn.Module):
    """A plain convolutional feature extractor (1600 samples to 79 frames), then token layers whose
    calls return tuples (hidden states, attention weights), a projection and a mean."""

    class Layer(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.norm, self.attn = nn.LayerNorm(dim), nn.MultiheadAttention(dim, 2, batch_first=True)
            self.ffn = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

        def forward(self, x):
            h = self.norm(x)
            a, w = self.attn(h, h, h)
            x = x + a
            return x + self.ffn(x), w

    def __init__(self, layers=4, dim=32, classes=5):
        super().__init__()
        self.features = nn.ModuleList([align_zoo.ConvNormAct1d(1, 16, 10, 5), align_zoo.ConvNormAct1d(16, 16, 3, 2),
                                       align_zoo.ConvNormAct1d(16, dim, 3, 2)])
        self.layers = nn.ModuleList(self.Layer(dim) for _ in range(layers))
        self.project, self.head = nn.Linear(dim, 16), nn.Linear(16, classes)

    def forward(self, x):
        h = x.unsqueeze(1)
        for layer in self.features:
            h = layer(h)
        h = h.transpose(1, 2)
        for layer in self.layers:
            h, _ = layer(h)
        return self.head(self.project(h).mean(1))


def test_an_audio_front_end_is_not_where_the_first_points_go():
    x = torch.randn(2, 1600)
    bg = analyse(_AudioTransformer(), x)
    outs = [b for b in bg.candidates if b.block_output]
    assert len(outs) == 4 and all(b.kind == "tokens" and b.resolution == (79,) for b in outs), bg.candidates
    assert not any(b.name.startswith("features") for b in bg.candidates)
    a = align(_AudioTransformer(), align_zoo.AudioCNN(), x, stages=4)
    got = [(p.parent in {outs[1].name}, p.child) for p in a.mixing_pairs]
    assert got == [(True, "stage1"), (False, "stage2"), (False, "mean")], [(p.parent, p.child) for p in a.mixing_pairs]
    assert "front end" in a.mixing_pairs[0].reason


class _Folding(nn.Module):
    """A block at 8x8 that reads its map as 64 tokens, runs two token layers on them (nested blocks,
    64 positions) and lays them back on the map with a projection: the nested layers lie inside it."""

    class Token(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.norm, self.lin = nn.LayerNorm(dim), nn.Linear(dim, dim)

        def forward(self, x):
            return x + self.lin(self.norm(x))

    def __init__(self, dim):
        super().__init__()
        self.inner = nn.ModuleList(self.Token(dim) for _ in range(2))
        self.project = nn.Conv2d(dim, dim, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)
        for layer in self.inner:
            t = layer(t)
        return self.project(t.transpose(1, 2).reshape(b, c, h, w))


def test_a_point_is_never_inside_a_block_of_the_same_resolution():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.Sequential(_Res(8), _Folding(8), _Folding(8))
            self.fc = nn.Linear(8, 3)

        def forward(self, x):
            return self.fc(self.blocks(x).mean((2, 3)))

    bg = analyse(Net(), torch.randn(1, 8, 8, 8))
    names = [b.name for b in bg.candidates]
    assert names == ["blocks.0", "blocks.1", "blocks", "mean"], names
    assert any("inside a block" in n for n in bg.notes), bg.notes


def test_levels_constrain_the_chain():
    # two models of three levels (candidates 0-1 level 1, 2-3 level 2, 4 level 3)
    tiers = np.array([1, 1, 2, 2, 3])
    n = len(tiers)
    depth = np.linspace(0.2, 1.0, n)
    scores, ok = np.zeros((n, n)), np.ones((n, n), dtype=bool)
    scores[1, 1] = scores[2, 2] = 5.0   # two points pulled into levels 1 and 2: the third must be level 3
    covered = choose_pairs(scores, ok, depth, depth, 3, levels_p=Levels(tiers, 3, 3), levels_c=Levels(tiers, 3, 3))
    assert [tiers[i] for i, _ in covered] == [1, 2, 3], covered
    # fewer points than levels: no level twice, the last point in the last level
    scores[:] = 0.0
    scores[0, 0] = scores[1, 1] = 5.0
    distinct = choose_pairs(scores, ok, depth, depth, 2, levels_p=Levels(tiers, 3, 2), levels_c=Levels(tiers, 3, 2))
    assert [tiers[i] for i, _ in distinct][-1] == 3 and len({tiers[i] for i, _ in distinct}) == 2, distinct
    free = choose_pairs(scores, ok, depth, depth, 2)
    assert free == [(0, 0), (1, 1)]   # without levels, the scores alone decide


class _Merge(nn.Module):
    """Patch merging as a module of its own (its class repeated in every stage): 2x2 neighbours
    joined, normed and reduced, tokens on the h/2 x w/2 grid."""

    def __init__(self, dim, side):
        super().__init__()
        self.side, self.norm, self.reduce = side, nn.LayerNorm(4 * dim), nn.Linear(4 * dim, 2 * dim)

    def forward(self, x):
        b, _, d = x.shape
        g = x.view(b, self.side, self.side, d)
        g = torch.cat([g[:, 0::2, 0::2], g[:, 1::2, 0::2], g[:, 0::2, 1::2], g[:, 1::2, 1::2]], -1)
        return self.reduce(self.norm(g.reshape(b, -1, 4 * d)))


class _MergeStage(nn.Module):
    def __init__(self, dim, side):
        super().__init__()
        self.blocks = nn.ModuleList([_Folding.Token(dim), _Folding.Token(dim)])
        self.merge = _Merge(dim, side)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.merge(x)


def test_a_stage_that_merges_patches_in_a_module_of_its_own_still_ends_at_its_output():
    class Hier(nn.Module):
        def __init__(self):
            super().__init__()
            self.patches = nn.Conv2d(3, 8, 2, stride=2)
            self.stages = nn.ModuleList([_MergeStage(8, 8), _MergeStage(16, 4)])
            self.fc = nn.Linear(32, 2)

        def forward(self, x):
            t = self.patches(x).flatten(2).transpose(1, 2)
            for stage in self.stages:
                t = stage(t)
            return self.fc(t.mean(1))

    bg = analyse(Hier(), torch.randn(1, 3, 16, 16))
    ends = [b.name for b in bg.candidates if b.stage_end]
    assert ends[0] == "stages.0", [(b.name, b.stage_end) for b in bg.candidates]
