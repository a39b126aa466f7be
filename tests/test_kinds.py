"""Value kinds (map / tokens / vector), the validity rule of a mixing pair, cross-kind transfers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hkt_core.align import align, analyse
from hkt_core.errors import AlignmentError
from hkt_core.etm.attention import genetic_attention
from hkt_core.etm.crosskind import FromVector, MapToTokens, TokensToMap, ToVector, cross_kind_transfer
from hkt_core.trace.kinds import ValueKind, mixing_pair_problem, parse_stated


class PatchViT(nn.Module):
    """8x8 images cut into 2x2 patches (a 4x4 grid), a class token, two pre-norm blocks."""

    def __init__(self, dim: int = 12, classes: int = 5) -> None:
        super().__init__()
        self.patches = nn.Conv2d(1, dim, 2, stride=2)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.zeros(1, 17, dim))
        self.norm_a = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, 2, batch_first=True)
        self.norm_b = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, dim), nn.GELU())
        self.out = nn.Linear(dim, classes)

    def forward(self, img):
        t = self.patches(img).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(img.shape[0], -1, -1), t], dim=1) + self.pos
        h = self.norm_a(t)
        t = t + self.attn(h, h, h, need_weights=False)[0]
        t = t + self.ff(self.norm_b(t))
        return self.out(t[:, 0])


class Conv1dNet(nn.Module):
    """A 1-D CNN: its rank-3 values are maps (B, C, L)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv1d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm1d(6)
        self.c2 = nn.Conv1d(6, 6, 3, padding=1)
        self.head = nn.Linear(6, 4)

    def forward(self, sig):
        return self.head(F.relu(self.c2(F.relu(self.bn(self.c1(sig))))).mean(-1))


class TabularTokens(nn.Module):
    """Features become tokens by an unsqueeze and a scale: no producer says 'tokens', the readers do."""

    def __init__(self, features: int = 6, dim: int = 8) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.randn(features, dim))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 3)

    def forward(self, x):
        tok = x.unsqueeze(-1) * self.scale
        return self.head(self.norm(tok).mean(1))


def kinds_by_name(model, x, **kw):
    bg = analyse(model, x, **kw)
    return bg, bg.kinds


def test_a_vit_reads_as_patch_tokens_with_a_class_token_on_a_grid():
    _, kinds = kinds_by_name(PatchViT(), torch.randn(2, 1, 8, 8))
    assert kinds["patches"] == ValueKind("map", (2, 12, 4, 4))
    assert kinds["flatten"].kind == "map" and kinds["flatten"].grid == (4, 4)
    assert kinds["transpose"] == ValueKind("tokens", (2, 16, 12), False, (4, 4))
    assert kinds["cat"] == ValueKind("tokens", (2, 17, 12), True, (4, 4))
    deep = kinds["add_2"]   # after attention and the feed-forward block
    assert (deep.kind, deep.class_token, deep.grid, deep.positions) == ("tokens", True, (4, 4), 16)
    assert kinds["getitem_2"].kind == "vector"


def test_conv1d_values_are_maps_and_token_readers_make_tokens():
    _, kinds = kinds_by_name(Conv1dNet(), torch.randn(2, 3, 10))
    assert {kinds[n].kind for n in ("c1", "bn", "relu", "c2")} == {"map"}
    _, kinds = kinds_by_name(TabularTokens(), torch.randn(2, 6))
    assert kinds["unsqueeze"].kind == "tokens" and kinds["mul"].kind == "tokens"


def test_a_stated_layout_overrides_the_graph_and_is_checked():
    bg, kinds = kinds_by_name(Conv1dNet(), torch.randn(2, 3, 10), layouts={"child:c2": "tokens"}, side="child")
    assert kinds["c2"].kind == "tokens" and kinds["c1"].kind == "map"
    assert parse_stated("tokens+cls 4x4") == ("tokens", True, (4, 4))
    assert parse_stated("channels_last") == ("tokens", False, None)
    with pytest.raises(AlignmentError, match="is not a layout; allowed: map, tokens"):
        parse_stated("nhwc")
    with pytest.raises(AlignmentError, match="does not fit the value's shape"):
        analyse(Conv1dNet(), torch.randn(2, 3, 10), layouts={"head": "tokens"})
    with pytest.raises(AlignmentError, match="the child has no node 'nope'"):
        analyse(Conv1dNet(), torch.randn(2, 3, 10), layouts={"child:nope": "tokens"}, side="child")


def test_the_validity_rule():
    tok = ValueKind("tokens", (2, 17, 12), True, (4, 4))
    plain = ValueKind("tokens", (2, 16, 12))
    map2 = ValueKind("map", (2, 8, 8, 8))
    map1 = ValueKind("map", (2, 8, 20))
    vec = ValueKind("vector", (2, 8))
    assert mixing_pair_problem(tok, map2) is None and mixing_pair_problem(map2, tok) is None
    assert mixing_pair_problem(plain, map1) is None and mixing_pair_problem(vec, map2) is None
    assert "2-D map and a 1-D map" in mixing_pair_problem(map2, map1)
    assert "tokens without a 2-D grid" in mixing_pair_problem(plain, map2)
    # one direction is enough when only that direction mixes
    assert mixing_pair_problem(map2, plain, "head") is not None
    assert mixing_pair_problem(plain, map2, "head") is None


# -- transfers, against plain references -----------------------------------------------------------
def test_tokens_to_map_drops_the_class_token_and_lays_tokens_on_their_grid():
    torch.manual_seed(0)
    src = ValueKind("tokens", (1, 17, 6), True, (4, 4))
    op = TokensToMap((6, 17), (3, 8, 8), source=src).double()
    x = torch.randn(2, 6, 17, dtype=torch.float64)
    conv = op.inner.proj
    grid = x[:, :, 1:].reshape(2, 6, 4, 4)
    want = F.interpolate(F.conv2d(grid, conv.weight, conv.bias), size=(8, 8), mode="bilinear", align_corners=False)
    torch.testing.assert_close(op(x), want)
    with pytest.raises(ValueError, match="no 2-D grid"):
        TokensToMap((6, 10), (3, 8, 8))


def test_map_to_tokens_pools_positions_and_adds_a_class_token():
    torch.manual_seed(0)
    dst = ValueKind("tokens", (1, 5, 4), True, None)
    op = MapToTokens((3, 4, 4), (4, 5), target=dst).double()
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    lin = op.proj.linear
    pooled = x.flatten(2).reshape(2, 3, 4, 4).mean(-1)                 # 16 positions -> 4 tokens
    tokens = torch.einsum("dc,bcn->bdn", lin.weight, pooled) + lin.bias[None, :, None]
    want = torch.cat([tokens.mean(2, keepdim=True), tokens], dim=2)
    torch.testing.assert_close(op(x), want)
    grid_op = MapToTokens((3, 8, 8), (4, 16), target=ValueKind("tokens", (1, 16, 4), False, (4, 4))).double()
    y = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    want = grid_op.proj(F.interpolate(y, size=(4, 4), mode="bilinear", align_corners=False).flatten(2))
    torch.testing.assert_close(grid_op(y), want)


def test_to_vector_uses_the_class_token_and_from_vector_broadcasts():
    torch.manual_seed(0)
    op = ToVector((6, 17), (5,), source=ValueKind("tokens", (1, 17, 6), True, (4, 4))).double()
    x = torch.randn(2, 6, 17, dtype=torch.float64)
    torch.testing.assert_close(op(x), op.proj(x[:, :, 0]))
    mean_op = ToVector((6, 4, 4), (5,)).double()
    m = torch.randn(2, 6, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(mean_op(m), mean_op.proj(m.mean((2, 3))))
    up = FromVector((5,), (6, 3, 3)).double()
    v = torch.randn(2, 5, dtype=torch.float64)
    torch.testing.assert_close(up(v), up.proj(v)[:, :, None, None] + up.position)
    # a broadcast donor still differs across positions, so spatial Genetic Attention is not zero
    ga = genetic_attention(torch.randn(2, 6, 3, 3, dtype=torch.float64), up(v), tokens="spatial")
    assert ga.abs().max() > 1e-6


def test_cross_kind_transfer_is_chosen_by_the_two_kinds():
    tok, map_, vec = ValueKind("tokens", (1, 4, 2)), ValueKind("map", (1, 2, 4)), ValueKind("vector", (1, 2))
    assert cross_kind_transfer(tok, map_) == "tokens_to_map"
    assert cross_kind_transfer(map_, tok) == "map_to_tokens"
    assert cross_kind_transfer(tok, vec) == cross_kind_transfer(map_, vec) == "to_vector"
    assert cross_kind_transfer(vec, tok) == "from_vector" and cross_kind_transfer(map_, map_) is None


@pytest.mark.parametrize("tokens", ["spatial", "channel"])
def test_genetic_attention_on_tokens_is_attention_over_the_token_axis(tokens):
    torch.manual_seed(0)
    q, v = torch.randn(2, 5, 7, dtype=torch.float64), torch.randn(2, 5, 7, dtype=torch.float64)  # (B, D, N)
    if tokens == "spatial":   # tokens = N positions with D features
        a = torch.softmax(q.transpose(1, 2) @ v / 5 ** 0.5, dim=-1)
        want = v - (a @ v.transpose(1, 2)).transpose(1, 2)
    else:
        a = torch.softmax(q @ v.transpose(1, 2) / 7 ** 0.5, dim=-1)
        want = v - a @ v
    torch.testing.assert_close(genetic_attention(q, v, tokens=tokens), want)


# -- alignment across kinds ---------------------------------------------------------------------------
class PatchCNN(nn.Module):
    """A 2-D CNN child for PatchViT's 8x8 inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        self.stage2 = nn.Sequential(nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.ReLU())
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        return self.fc(self.stage2(self.stage1(x)).mean((2, 3)))


def test_a_vit_and_a_cnn_align_across_kinds_in_both_directions():
    x = torch.randn(2, 1, 8, 8)
    a = align(PatchViT(), PatchCNN(), x, stages=3)
    kinds = [(p.parent_kind, p.child_kind) for p in a.mixing_pairs]
    assert ("tokens", "map") in kinds
    row = a.to_dict()["pairs"][0]
    assert {"parent_kind", "child_kind"} <= set(row)
    back = align(PatchCNN(), PatchViT(), x, stages=3)
    assert ("map", "tokens") in [(p.parent_kind, p.child_kind) for p in back.mixing_pairs]
    assert "cross-kind transfer" in a.table() or "cross-kind transfer" in back.table()


def test_align_refuses_a_manual_pair_that_cannot_mix():
    x = torch.randn(2, 3, 10)

    class Conv2dOnSignal(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(3, 6, 1)
            self.head = nn.Linear(6, 4)

        def forward(self, sig):
            return self.head(self.c(sig[..., None]).mean((2, 3)))

    with pytest.raises(AlignmentError, match=r"manual pair 1 \('c', 'c1'\): map 10x1 \(parent\) and map 10 "
                                             r"\(child\) cannot mix.*2-D map and a 1-D map"):
        align(Conv2dOnSignal(), Conv1dNet(), x, pairs=[("c", "c1")])


class HeadSplitViT(nn.Module):
    """PatchViT with attention written out the way transformers libraries do: the projected tokens
    viewed as (B, N, heads, d), moved to (B, heads, N, d), attended, moved back and merged."""

    def __init__(self, dim: int = 12, heads: int = 2, classes: int = 5) -> None:
        super().__init__()
        self.heads = heads
        self.patches = nn.Conv2d(1, dim, 2, stride=2)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.norm = nn.LayerNorm(dim)
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.out = nn.Linear(dim, classes)

    def forward(self, img):
        t = self.patches(img).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(img.shape[0], -1, -1), t], dim=1)
        b, n, d = t.shape
        h = self.norm(t)
        q, k, v = (f(h).view(b, n, self.heads, d // self.heads).transpose(1, 2) for f in (self.q, self.k, self.v))
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
        t = self.o(a) + t          # the attention branch first: the stream's class token and grid must win
        return self.out(t[:, 0])


@pytest.mark.parametrize("backend", ["fx", "export"])
def test_attention_heads_merged_back_are_tokens_with_the_streams_class_token_and_grid(backend, monkeypatch):
    from hkt_core.trace import graph as trace_graph

    if backend == "export":  # the export fallback, as for a model fx cannot trace
        def no_fx(*args, **kwargs):
            raise RuntimeError("fx disabled for this test")
        monkeypatch.setattr(trace_graph, "fx_trace", no_fx)
    bg = analyse(HeadSplitViT(), torch.randn(2, 1, 8, 8))
    assert bg.traced.backend == backend
    g = bg.traced.graph
    merged = [k for n, k in bg.kinds.items() if g.nodes[n]["op"] != "placeholder" and k.shape[1:] == (17, 12)]
    assert len(merged) >= 4 and all((k.kind, k.class_token, k.grid) == ("tokens", True, (4, 4)) for k in merged), merged
    split = [k for n, k in bg.kinds.items() if len(k.shape) == 4 and k.shape[1] != 1]
    assert split, "the head split values are rank 4 and stay maps by rank"
