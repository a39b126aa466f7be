"""The ``attention-transfer`` method (Zagoruyko & Komodakis, 2017) at the automatically aligned
points: its loss against a float64 reference written out here, values on their positions (tokens
with a class token and a grid), resolutions pooled to the smaller one, vectors skipped, exact
resume, two gloo processes, and a heterogeneous (tokens -> map) pair."""

from __future__ import annotations

import attrs
import pytest
import torch
import torch.nn.functional as F

import hkt_core
from hkt_core.config import HKTConfig, TrainConfig
from hkt_core.errors import ConfigError
from hkt_core.pairs import PairCard
from hkt_core.trace.kinds import ValueKind
from hkt_core.train.aligned import on_positions
from hkt_core.train.method import MethodContext
from hkt_core.train.methods import attention_loss
from method_runs import ddp_matches_one_process, resumes_exactly
from test_fitnet import _shipped_context, _tiny_forward
from test_train_support import card_dict, make_child, make_parent


def _card(name: str = "at-pair", stages: int = 2) -> PairCard:
    return PairCard.from_dict({**card_dict(name), "stages": stages})


def _context(**options) -> MethodContext:
    torch.manual_seed(0)
    return MethodContext(child=make_child(), task=hkt_core.lookup("tasks", "classification"), train=TrainConfig(),
                         hkt=HKTConfig(), card=_card(), parent=make_parent().eval().requires_grad_(False),
                         example_inputs=(torch.randn(2, 1, 8, 8),), options=options)


def _attention64(f: torch.Tensor) -> torch.Tensor:
    """Zagoruyko & Komodakis' F_sum^2 map, flattened and divided by its L2 norm (float64)."""
    a = (f ** 2).mean(1).reshape(f.shape[0], -1)
    return a / a.norm(dim=1, keepdim=True)


def test_the_loss_is_the_float64_attention_term_plus_the_task_loss():
    ctx = _context(beta=300.0)
    at = hkt_core.lookup("methods", "attention-transfer")(ctx)
    # a 2-stage card, aligned at the method's 3 stages: the stem's maps, and the pooled vectors (skipped)
    assert [(p.parent, p.child) for p in at.aligned.points] == [("stem", "stem"), ("flatten", "flatten")]
    assert [(p.parent, p.child) for p in at.points] == [("stem", "stem")]
    assert at.alignment.stages == 3   # the method keeps its alignment (the context is not written)
    x, y = torch.randn(6, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2])
    at.train(True)
    out = at.training_step((x,), y)
    w = {f"c.{k}": v.double() for k, v in ctx.child.state_dict().items()}
    w |= {f"p.{k}": v.double() for k, v in ctx.parent.state_dict().items()}
    child, parent = _tiny_forward(w, "c.", x.double()), _tiny_forward(w, "p.", x.double())
    term = ((_attention64(child["stem"]) - _attention64(parent["stem"])) ** 2).mean()
    expected = F.cross_entropy(child["head"], y) + 300.0 / 2 * term
    assert float(out.loss.detach()) == pytest.approx(float(expected), rel=1e-5)
    assert out.logs["at"] == pytest.approx(float(term), rel=1e-5)
    out.loss.backward()
    assert ctx.child.stem[0].weight.grad is not None
    assert all(p.grad is None for p in ctx.parent.parameters())
    assert set(at.trainable_module().state_dict()) == {f"child.{k}" for k in ctx.child.state_dict()}


def test_the_larger_resolution_is_pooled_and_tokens_are_laid_on_their_grid():
    torch.manual_seed(1)
    child, parent = torch.randn(3, 4, 4, 4, dtype=torch.float64), torch.randn(3, 6, 8, 8, dtype=torch.float64)
    pooled = parent.reshape(3, 6, 4, 2, 4, 2).mean((3, 5))          # 2x2 average pooling, written out
    expected = ((_attention64(child) - _attention64(pooled)) ** 2).mean()
    assert float(attention_loss(child, parent, 2.0)) == pytest.approx(float(expected), rel=1e-12)
    tokens = torch.randn(3, 1 + 16, 5, dtype=torch.float64)         # (B, 1 + 4x4, D): a class token first
    kind = ValueKind("tokens", (3, 17, 5), class_token=True, grid=(4, 4))
    laid = on_positions(tokens, kind)
    assert laid.shape == (3, 5, 4, 4)
    assert torch.equal(laid[:, :, 1, 2], tokens[:, 1 + 1 * 4 + 2, :])
    assert on_positions(tokens, ValueKind("tokens", (3, 17, 5))).shape == (3, 5, 17)
    with pytest.raises(ValueError, match="has no positions"):
        on_positions(torch.randn(3, 5), ValueKind("vector", (3, 5)))
    p4 = ((child.abs() ** 4).mean(1).flatten(1), (pooled.abs() ** 4).mean(1).flatten(1))
    expected4 = ((p4[0] / p4[0].norm(dim=1, keepdim=True) - p4[1] / p4[1].norm(dim=1, keepdim=True)) ** 2).mean()
    assert float(attention_loss(child, parent, 4.0)) == pytest.approx(float(expected4), rel=1e-12)


def test_options_and_alignments_without_positions_are_one_line_refusals():
    method = hkt_core.lookup("methods", "attention-transfer")
    assert method.default_options == {"beta": 1000.0, "p": 2.0, "stages": 3, "alignment": "auto"}
    with pytest.raises(ConfigError, match=r"^method option p = 0 is invalid: a number > 0$"):
        method(_context(p=0))
    with pytest.raises(ConfigError, match=r"^method option stages = 2.5 is invalid: an integer >= 0$"):
        method(_context(stages=2.5))
    with pytest.raises(ConfigError, match=r"^attention-transfer needs an aligned point with positions .*; this "
                                          r"alignment has vectors only \(flatten in the child\): set method.stages"):
        method(_context(stages=0))   # the card's 2 stages: only the pooled vectors before the predictions


def test_a_random_alignment_is_drawn_at_the_method_s_stages():
    ctx = _context(alignment="random:3", stages=4)
    at = hkt_core.lookup("methods", "attention-transfer")(ctx)
    assert at.alignment.method == "random" and at.alignment.seed == 3 and at.alignment.stages == 4


def test_attention_transfer_resumes_exactly_and_exports_a_plain_child(tmp_path, isolated_home):
    run = resumes_exactly(_card(), "attention-transfer", tmp_path, "at", beta=2000.0)
    assert run.config["method_options"] == {"beta": 2000.0, "p": 2.0, "stages": 3, "alignment": "auto"}
    assert (run.path / "alignment.json").is_file()


@pytest.mark.subprocess
def test_attention_transfer_on_two_gloo_processes_matches_one(isolated_home, tmp_path):
    ddp_matches_one_process(_card("at-ddp"), "attention-transfer", isolated_home, tmp_path)


def test_attention_transfer_across_kinds_on_a_heterogeneous_pair():
    ctx = _shipped_context("hetero-digits-vit-cnn", "attention-transfer")
    ctx.options = {}
    ctx.card = attrs.evolve(ctx.card, alignment=None)
    at = hkt_core.lookup("methods", "attention-transfer")(ctx)
    kinds = {(p.parent_kind.kind, p.child_kind.kind) for p in at.points}
    assert ("tokens", "map") in kinds, kinds
    x = torch.cat([ctx.example_inputs[0]] * 4)
    at.train(True)
    out = at.training_step((x,), torch.arange(len(x)) % 10)
    out.loss.backward()
    assert torch.isfinite(out.loss) and out.logs["at"] > 0
