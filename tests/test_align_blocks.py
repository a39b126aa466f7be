"""Block boundaries as alignment candidates, the FLOP depth of 1-D networks, and the zoo benchmark."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from hkt_core.align import align, analyse
from hkt_core.align.blocks import repeated_blocks
from hkt_core.trace.graph import _positions

from models_zoo import CifarResNet

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import align_zoo  # noqa: E402


def test_opaque_1d_blocks_count_their_length_as_positions():
    conv_stage = nn.Sequential(nn.Conv1d(8, 16, 3, padding=1), nn.BatchNorm1d(16), nn.ReLU())
    assert _positions(conv_stage, (2, 16, 50)) == 50        # (B, C, L): L positions, not C
    assert _positions(nn.Sequential(nn.Linear(16, 16), nn.GELU()), (2, 10, 16)) == 10  # (B, T, D) tokens
    assert _positions(nn.Conv2d(3, 4, 3), (2, 4, 6, 7)) == 42
    assert _positions(nn.Linear(4, 4), (2, 4)) == 1


class _Stage1d(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.body = nn.Sequential(nn.Conv1d(cin, cout, 3, stride, 1), nn.BatchNorm1d(cout), nn.ReLU(),
                                  nn.Conv1d(cout, cout, 3, 1, 1), nn.BatchNorm1d(cout))

    def forward(self, x):
        return torch.relu(self.body(x))


class _Net1d(nn.Module):
    """Three 1-D stages at lengths 64, 32 and 16, widths 8, 16 and 32."""

    def __init__(self):
        super().__init__()
        self.s1, self.s2, self.s3 = _Stage1d(1, 8, 1), _Stage1d(8, 16, 2), _Stage1d(16, 32, 2)
        self.fc = nn.Linear(32, 3)

    def forward(self, x):
        return self.fc(self.s3(self.s2(self.s1(x))).mean(-1))


def _conv_flops(cin, cout, length):
    return 2.0 * cout * length * cin * 3


def test_depth_of_a_1d_network_with_opaque_stages_follows_its_flops():
    from hkt_core.adapters import GenericAdapter
    from hkt_core.align.blocks import discover
    from hkt_core.trace import trace

    class Leaves(GenericAdapter):
        def leaf_modules(self, model):
            return [_Stage1d]

    model = _Net1d()
    bg = discover(trace(model, torch.randn(1, 1, 64), Leaves()))
    # plain float64 reference: two convolutions per stage, per sample (norms and the head are small)
    stages = [(1, 8, 64), (8, 16, 32), (16, 32, 16)]
    cost = [_conv_flops(cin, cout, n) + _conv_flops(cout, cout, n) for cin, cout, n in stages]
    assert bg.traced.graph.nodes["s2"]["module_type"] == "_Stage1d"
    ref = cost[0] / sum(cost)
    assert bg.depth("s1") == pytest.approx(ref, abs=0.05)
    assert bg.depth("s2") == pytest.approx((cost[0] + cost[1]) / sum(cost), abs=0.05)


def test_repeated_blocks_come_from_the_module_tree_not_names():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.alpha = _Stage1d(1, 4, 1)
            self.beta = _Stage1d(4, 4, 1)
            self.gamma = nn.Sequential(nn.Conv1d(4, 4, 1))  # one of its kind: not a repeated block
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(self.gamma(self.beta(self.alpha(x))).mean(-1))

    assert repeated_blocks(Odd()) == ["alpha", "beta"]


def test_resnet_candidates_are_block_outputs_and_stage_ends():
    bg = analyse(CifarResNet(), torch.randn(1, 3, 32, 32))
    names = [b.name for b in bg.candidates]
    assert all(b.block_output or b.head_input for b in bg.candidates), names
    assert not any("conv" in n or "bn" in n for n in names), names
    ends = [b.name for b in bg.candidates if b.stage_end]
    assert ends == ["layer1", "layer2", "layer3"]
    assert [b.name for b in bg.candidates if b.head_input] == [bg.candidates[-1].name]


def test_bert_candidates_are_layer_outputs_and_the_pooler():
    pytest.importorskip("transformers")
    model = align_zoo._bert(3)
    bg = analyse(model, align_zoo._tokens())
    names = [b.name for b in bg.candidates]
    assert names[:3] == [f"m.bert.encoder.layer.{i}" for i in range(2)] + ["m.bert.encoder"], names
    assert not any(k in n for n in names for k in ("attention", "intermediate", "dropout", "query")), names
    head = [b for b in bg.candidates if b.head_input]
    assert [bg.traced.canonical("m.bert.pooler")] == [b.name for b in head]


def test_the_align_reason_says_why_each_point_was_chosen():
    a = align(CifarResNet(), CifarResNet(), torch.randn(1, 3, 32, 32), stages=4)
    reasons = [p.reason for p in a.mixing_pairs]
    assert all("stage ends" in r or "features the heads read" in r for r in reasons), reasons
    assert "features the heads read" in reasons[-1]
    assert all("depth" in r for r in reasons)


def test_scoring_exact_near_wrong_against_a_plain_reading():
    model = align_zoo.TokenTransformer()
    bg = analyse(model, align_zoo._tokens())
    t = bg.traced
    truth = align_zoo.Truth(("stage1.0", "stage1.1", "stage2.0", "stage2.1"), ("stage1.0", "stage1.1", "stage2.0",
                                                                                 "stage2.1"),
                            (("stage1.1", "stage1.1"), ("stage2.1", "stage2.1")))
    exact = align_zoo.score_points([(t.canonical("stage1.1"), t.canonical("stage1.1")),
                                    (t.canonical("stage2.1"), t.canonical("stage2.0"))], truth, t, t)
    assert (exact["exact"], exact["near"], exact["wrong"], exact["block_outputs"]) == (1, 1, 0, 4)
    inner = t.canonical("stage1.0.ffn.0")
    wrong = align_zoo.score_points([(inner, inner), (t.canonical("stage1.0"), t.canonical("stage2.1"))],
                                   truth, t, t)
    assert (wrong["exact"], wrong["near"], wrong["wrong"], wrong["block_outputs"]) == (0, 1, 1, 2)


def test_committed_zoo_results_beat_control_and_the_doc_table_is_generated_from_them():
    record = json.loads((ROOT / "docs" / "results" / "align_zoo.json").read_text())
    s = record["summary"]["all"]
    assert s["pairs"] >= 10 and not record["quick"]
    assert s["exact_share"] > s["control_exact_share"]
    assert s["exact_or_near_share"] > s["control_exact_or_near_share"]
    doc = (ROOT / "docs" / "alignment.md").read_text(encoding="utf-8")
    assert align_zoo.table(record) in doc


def test_cli_align_prints_why_each_point_was_chosen_and_plots_the_block_structure(tmp_path, capsys):
    from hkt_core.align.plot import _column
    from hkt_core.cli.main import main

    png = tmp_path / "a.png"
    assert main(["align", "models_zoo:CifarResNet", "models_zoo:CifarResNet", "--input-shape", "1,3,32,32",
                 "--stages", "4", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert out.count("stage ends") >= 2 and "features the heads read" in out, out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bg = analyse(CifarResNet(), torch.randn(1, 3, 32, 32))
    column = _column(bg, set())
    assert [b.name for b in column if b.stage_end] == ["layer1", "layer2", "layer3"]
    assert all(b.block_output or b.head_input for b in column[:-1]) and column[-1] == bg.prediction


class _SizedBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Sequential(nn.Linear(8, 8), nn.ReLU())

    def forward(self, x):
        b, n, d = x.shape  # on an export graph: sym_size values of the input, read by the views
        return x + self.lin(x).view(b, n, 2, d // 2).reshape(b, n, d)


class _Sized(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 8)
        self.layers = nn.ModuleList(_SizedBlock() for _ in range(2))
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        h = self.embed(x)
        for layer in self.layers:
            h = layer(h)
        return self.fc(h.mean(1))


def test_sizes_of_an_export_graph_are_not_floating_point_paths(monkeypatch):
    from hkt_core.align.blocks import _is_float
    from hkt_core.trace import graph as trace_graph

    def no_fx(*args, **kwargs):
        raise RuntimeError("fx disabled for this test")

    monkeypatch.setattr(trace_graph, "fx_trace", no_fx)
    bg = analyse(_Sized(), torch.zeros(2, 5, dtype=torch.long))
    assert bg.traced.backend == "export"
    sizes = [n for n in bg.traced.gm.graph.nodes if "sym_size" in str(n.target)]
    assert sizes and not any(_is_float(n) for n in sizes)
    assert [b.name for b in bg.candidates if b.block_output] == ["layers.0", "layers.1"], \
        [b.name for b in bg.candidates]


class _PoolFlattenCNN(nn.Module):
    """A CNN whose head reads ``torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)`` (functional pooling)."""

    def __init__(self, head_module: bool = False):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.blocks = nn.Sequential(*(nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()) for _ in range(2)))
        self.head_module = head_module
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(8, 4)) if head_module else nn.Linear(8, 4)

    def forward(self, x):
        h = self.blocks(self.stem(x))
        if self.head_module:  # the pooler a model returns, read by a Sequential(Flatten, Linear) head
            return self.classifier(self.pool(h))
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(h, 1), 1))


def test_the_head_input_is_the_value_entering_the_head_module():
    x = torch.randn(1, 3, 8, 8)
    functional = analyse(_PoolFlattenCNN(), x)
    [head] = [b for b in functional.candidates if b.head_input]
    assert head.name == "flatten" and head.shape == (1, 8)        # what the Linear head reads
    pooled = analyse(_PoolFlattenCNN(head_module=True), x)
    [head] = [b for b in pooled.candidates if b.head_input]
    assert head.name == "pool" and head.shape == (1, 8, 1, 1)    # the pooler, not the head's own Flatten


def test_block_positions_count_each_block_and_put_the_head_input_last():
    bg = analyse(align_zoo.TokenTransformer(), align_zoo._tokens())
    got = [(b.name, b.position, b.stage_end, b.head_input) for b in bg.candidates]
    assert got == [("stage1.0", 0.25, False, False), ("stage1", 0.5, True, False), ("stage2.0", 0.75, False, False),
                   ("stage2", 1.0, True, False), ("mean", 1.0, False, True)], got
    plain = analyse(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)), torch.randn(1, 4))
    assert all(b.position is None and b.place == b.depth for b in plain.candidates)


def test_inner_points_are_stage_ends_of_a_model_with_several_stages():
    import numpy as np

    from hkt_core.align.solve import inner_mask

    ok = np.ones((4, 5), dtype=bool)
    ends_p = np.array([False, False, False, True])        # one stage: only its last block is an end
    ends_c = np.array([False, True, False, True, False])  # two stages (the head input last)
    mask = inner_mask(ends_p, ends_c, ok, count=3, last_p=3, last_c=3)
    assert mask is not None and mask.tolist() == [[False, True, False, True, False]] * 4
    assert inner_mask(ends_p, ends_c, ok, count=4, last_p=3, last_c=3) is None   # 3 inner points, 2 ends
    assert inner_mask(ends_p, ends_p[[0, 1, 2, 3]], ok[:, :4], count=2, last_p=3, last_c=3) is None
    assert inner_mask(ends_p, ends_c, ok, count=1) is None


def test_a_token_transformer_and_a_1d_cnn_mix_stage_outputs_as_tokens_to_map():
    a = align(align_zoo.TokenTransformer(), align_zoo.TextCNN(), align_zoo._tokens(), stages=4)
    got = [(p.parent, p.child, p.parent_kind, p.child_kind) for p in a.mixing_pairs]
    assert got == [("stage1", "stage1", "tokens", "map"), ("stage2", "stage2", "tokens", "map"),
                   ("mean", "flatten", "vector", "vector")], got
    assert "stage ends" in a.mixing_pairs[0].reason and "blocks 2/4 and 2/4" in a.mixing_pairs[0].reason


def test_a_vit_aligns_to_a_hf_resnet_by_block_position_tokens_on_their_grid():
    pytest.importorskip("transformers")
    torch.manual_seed(0)
    a = align(align_zoo._hf_vit(4), align_zoo._hf_resnet((1, 1, 1, 1)), align_zoo._image(), stages=3)
    first, last = a.mixing_pairs
    assert (first.parent, first.child) == ("m.vit.layers.1", "m.resnet.encoder.stages.1")
    assert (first.parent_kind, first.child_kind) == ("tokens", "map")
    assert "tokens 1+64 (8x8) -> map 4x4" in first.reason
    assert "features the heads read" in last.reason


class _PositionedBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Sequential(nn.Linear(8, 8), nn.ReLU())

    def forward(self, x):
        table = torch.arange(x.shape[1], dtype=torch.float32)[:, None] * 0.01  # from a size alone
        return x + self.lin(x + table)


def test_values_made_from_sizes_alone_do_not_bypass_the_blocks():
    model = nn.Sequential(nn.Linear(4, 8), _PositionedBlock(), _PositionedBlock(), nn.Flatten(), nn.Linear(40, 3))
    bg = analyse(model, torch.randn(2, 5, 4))
    assert [b.name for b in bg.candidates if b.block_output] == ["1", "2"], [b.name for b in bg.candidates]


class _ConvLayer(nn.Module):
    def __init__(self, cin, cout, k):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(cin, cout, k, padding=k // 2), nn.BatchNorm2d(cout)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


class _InvertedResidual(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.expand, self.depthwise, self.project = _ConvLayer(cin, 4 * cin, 1), _ConvLayer(4 * cin, 4 * cin, 3), \
            _ConvLayer(4 * cin, cout, 1)

    def forward(self, x):
        return self.project(self.depthwise(self.expand(x)))


def test_the_parts_of_a_block_are_not_blocks():
    class Mobile(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.ModuleList([_InvertedResidual(3, 4), _InvertedResidual(4, 8)])
            self.fc = nn.Linear(8, 2)

        def forward(self, x):
            for block in self.layer:
                x = block(x)
            return self.fc(x.mean((2, 3)))

    assert repeated_blocks(Mobile()) == ["layer.0", "layer.1"]
    bg = analyse(Mobile(), torch.randn(1, 3, 8, 8))
    assert [b.name for b in bg.candidates] == ["layer.0", "layer.1", "mean"]


class _GridLayer(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.norm, self.lin = nn.LayerNorm(dim), nn.Linear(dim, dim)

    def forward(self, x):
        return x + self.lin(self.norm(x))


class _MergingStage(nn.Module):
    """Two token layers, then patch merging: the tokens laid on their h x w grid, 2x2 neighbours
    joined (channels last), flattened back to tokens on an h/2 x w/2 grid."""

    def __init__(self, dim, side):
        super().__init__()
        self.side = side
        self.blocks = nn.ModuleList([_GridLayer(dim), _GridLayer(dim)])
        self.reduce = nn.Linear(4 * dim, 2 * dim)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        b, _, d = x.shape
        g = x.view(b, self.side, self.side, d)
        g = torch.cat([g[:, 0::2, 0::2], g[:, 1::2, 0::2], g[:, 0::2, 1::2], g[:, 1::2, 1::2]], -1)
        return self.reduce(g.reshape(b, -1, 4 * d))


def test_a_stage_that_ends_by_merging_patches_ends_at_its_output_with_tokens_on_the_smaller_grid():
    class Hier(nn.Module):
        def __init__(self):
            super().__init__()
            self.patches = nn.Conv2d(3, 8, 2, stride=2)
            self.stages = nn.ModuleList([_MergingStage(8, 8), _MergingStage(16, 4)])
            self.fc = nn.Linear(32, 2)

        def forward(self, x):
            t = self.patches(x).flatten(2).transpose(1, 2)
            for stage in self.stages:
                t = stage(t)
            return self.fc(t.mean(1))

    bg = analyse(Hier(), torch.randn(1, 3, 16, 16))
    got = {b.name: (b.value_kind.describe(), b.stage_end) for b in bg.candidates}
    assert got["stages.0.blocks.1"] == ("tokens 64 (8x8)", False)
    assert got["stages.0"] == ("tokens 16 (4x4)", True)     # the stage's own output is its end
    a = align(Hier(), CifarResNet(depth=8, classes=2), torch.randn(1, 3, 16, 16), stages=3)
    first = a.mixing_pairs[0]
    assert (first.parent, first.parent_kind, first.child_kind) == ("stages.0", "tokens", "map"), first
    assert "tokens 16 (4x4) -> map" in first.reason
