"""The ``fitnet`` and ``fitnet-kd`` methods (FitNet hints at the automatic alignment), the random
alignment control and ``--stages`` on a card with fixed pairs."""

from __future__ import annotations

import itertools
import json
import subprocess

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import hkt_core
from hkt_core.align import Alignment, align
from hkt_core.align.solve import random_pairs
from hkt_core.config import HKTConfig, TrainConfig
from hkt_core.errors import AlignmentError, ConfigError
from hkt_core.pairs import PairCard
from hkt_core.train.method import MethodContext
from test_train_support import (Interrupt, card_dict, hkt_command, make_child, make_parent,
                                manager_with, stop_after, subprocess_env)


def _card(name: str = "fit-pair") -> PairCard:
    return PairCard.from_dict({**card_dict(name), "stages": 3})


def _context(method: str, weight: float = 2.0, card: PairCard | None = None, kd: dict | None = None,
             **train) -> MethodContext:
    torch.manual_seed(0)
    return MethodContext(child=make_child(), task=hkt_core.lookup("losses", "classification"),
                         train=TrainConfig(**train), hkt=HKTConfig(), card=card or _card(),
                         parent=make_parent().eval().requires_grad_(False), example_inputs=(torch.randn(2, 1, 8, 8),),
                         options={"hint_weight": weight, "alignment": "auto", **(kd or {})})


def _tiny_forward(w: dict[str, torch.Tensor], prefix: str, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """TinyCNN in float64, written out: stem (conv, ReLU), body (strided conv, ReLU), pool, head."""
    stem = torch.relu(F.conv2d(x, w[f"{prefix}stem.0.weight"], w[f"{prefix}stem.0.bias"], padding=1))
    body = torch.relu(F.conv2d(stem, w[f"{prefix}body.0.weight"], w[f"{prefix}body.0.bias"], padding=1, stride=2))
    pool = body.mean((2, 3), keepdim=True)
    return {"stem": stem, "pool": pool, "flatten": pool.flatten(1),
            "head": pool.flatten(1) @ w[f"{prefix}head.weight"].T + w[f"{prefix}head.bias"]}


@pytest.mark.parametrize("method", ["fitnet", "fitnet-kd"])
def test_the_loss_is_the_float64_hint_plus_the_task_term(method):
    ctx = _context(method, kd={"temperature": 3.0, "weight": 0.7} if method == "fitnet-kd" else None)
    fit = hkt_core.lookup("methods", method)(ctx)
    # the automatic alignment at 3 stages: the stem's map, and the features the head reads
    assert fit.points == [("stem", "stem"), ("flatten", "flatten")]
    x, y = torch.randn(6, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2])
    fit.train(True)
    out = fit.training_step((x,), y)
    w = {f"c.{k}": v.double() for k, v in ctx.child.state_dict().items()}
    w |= {f"p.{k}": v.double() for k, v in ctx.parent.state_dict().items()}
    child, parent = _tiny_forward(w, "c.", x.double()), _tiny_forward(w, "p.", x.double())
    hints = []
    for transfer, name in zip(fit.hinted.transfers, ("stem", "flatten")):
        proj = getattr(transfer.proj, "linear", transfer.proj)  # the map: a 1x1 conv; the vector: a Linear
        weight = proj.weight.double().reshape(proj.weight.shape[0], proj.weight.shape[1])
        if child[name].dim() == 4:
            mapped = torch.einsum("oi,bihw->bohw", weight, child[name]) + proj.bias.double()[None, :, None, None]
        else:
            mapped = child[name] @ weight.T + proj.bias.double()
        axes = tuple(range(1, mapped.dim()))
        per_sample = ((mapped - parent[name]) ** 2).mean(axes) / (parent[name] ** 2).mean(axes)
        hints.append(per_sample.mean())
    hint = torch.stack(hints).mean()
    if method == "fitnet":
        task = F.cross_entropy(child["head"], y)
    else:
        t = 3.0
        soft = F.kl_div(F.log_softmax(child["head"] / t, 1), F.softmax(parent["head"] / t, 1),
                        reduction="batchmean") * t * t
        task = 0.7 * soft + 0.3 * F.cross_entropy(child["head"], y)
    assert float(out.loss.detach()) == pytest.approx(float(task + 2.0 * hint), rel=1e-5)
    assert out.logs["hint"] == pytest.approx(float(hint), rel=1e-5)
    out.loss.backward()
    assert all(p.grad is not None for p in fit.hinted.transfers.parameters())
    assert all(p.grad is None for p in ctx.parent.parameters())


def test_bad_options_are_one_line_saying_what_is_allowed():
    with pytest.raises(ConfigError, match=r"hint_weight = -1 is invalid: a number >= 0"):
        hkt_core.lookup("methods", "fitnet")(_context("fitnet", weight=-1))
    ctx = _context("fitnet")
    ctx.options["alignment"] = "reversed"
    with pytest.raises(ConfigError, match=r"alignment = 'reversed' is invalid: 'auto' .* or 'random:N'"):
        hkt_core.lookup("methods", "fitnet")(ctx)


def test_fitnet_resumes_exactly_and_exports_a_plain_child(tmp_path, isolated_home):
    manager = manager_with(_card())
    common = dict(manager=manager, epochs=2, seed=4)
    a = hkt_core.train("fit-pair", "fitnet", out=tmp_path / "A", **common)
    with pytest.raises(Interrupt):
        hkt_core.train("fit-pair", "fitnet", out=tmp_path / "B", callbacks=[stop_after(1)], **common)
    b = hkt_core.train("fit-pair", "fitnet", out=tmp_path / "B", resume=True, **common)
    ta, tb = load_file(a.path / "last.safetensors"), load_file(b.path / "last.safetensors")
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    assert [r["train_hint"] for r in a.metrics] == [r["train_hint"] for r in b.metrics]
    plain = make_child().state_dict()
    exported = load_file(a.path / "child.safetensors")
    assert exported.keys() == plain.keys() and all(exported[k].shape == plain[k].shape for k in plain)
    recorded = json.loads((a.path / "alignment.json").read_text())
    assert [(p["parent"], p["child"]) for p in recorded["pairs"]] == [("stem", "stem"), ("flatten", "flatten"),
                                                                     ("head", "head")]


@pytest.mark.subprocess
def test_fitnet_on_two_gloo_processes_matches_one(isolated_home, tmp_path):
    card = _card("fit-ddp")
    (isolated_home / "pairs").mkdir(parents=True, exist_ok=True)
    (isolated_home / "pairs" / "fit-ddp.toml").write_text(card.to_toml(), encoding="utf-8")
    hkt_core.reset_default_manager()
    args = ["train", "fit-ddp", "--method", "fitnet-kd", "--epochs", "1", "--seed", "3", "--no-progress"]
    env = subprocess_env(isolated_home)
    one = subprocess.run(hkt_command(*args, "--out", str(tmp_path / "one")), env=env, capture_output=True,
                         text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    ddp = subprocess.run(hkt_command(*args, "--nproc", "2", "--out", str(tmp_path / "ddp")), env=env,
                         capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    a, b = load_file(tmp_path / "ddp" / "last.safetensors"), load_file(tmp_path / "one" / "last.safetensors")
    assert a.keys() == b.keys()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-5


def _shipped_context(pair: str, method: str) -> MethodContext:
    from hkt_core.adapters import adapter_for
    from hkt_core.models import build_model

    manager = hkt_core.default_manager()
    card = manager.lookup("pairs", pair)
    torch.manual_seed(0)
    child = build_model(card.child, manager, **card.child_options)
    parent = build_model(card.parent, manager, **card.parent_options).eval().requires_grad_(False)
    example = tuple(adapter_for(child, manager).example_inputs(child, card.input_shapes))
    return MethodContext(child=child, task=manager.lookup("losses", card.task), train=card.train, hkt=card.hkt,
                         card=card, parent=parent, example_inputs=example, manager=manager,
                         options={"hint_weight": 1.0, "alignment": "auto"})


@pytest.mark.parametrize("pair, stages, cross_kind", [("mnist1d-resnet56-resnet20", 3, False),
                                                      ("hetero-digits-vit-cnn", None, True)])
def test_fitnet_hints_a_shipped_pair_and_a_heterogeneous_one(pair, stages, cross_kind):
    import attrs

    ctx = _shipped_context(pair, "fitnet")
    if stages is not None:
        ctx.card = attrs.evolve(ctx.card, stages=stages, alignment=None)
    fit = hkt_core.lookup("methods", "fitnet")(ctx)
    kinds = [(p.parent_kind, p.child_kind) for p in fit.alignment.mixing_pairs]
    assert any(a != b for a, b in kinds) == cross_kind, kinds
    if pair.startswith("mnist1d"):
        assert ("map", "map") in kinds  # an intermediate point on maps
    x = torch.cat([ctx.example_inputs[0]] * 4)
    y = torch.arange(len(x)) % 10
    fit.train(True)
    out = fit.training_step((x,), y)
    out.loss.backward()
    assert torch.isfinite(out.loss) and out.logs["hint"] > 0
    assert all(p.grad is not None for p in fit.hinted.transfers.parameters())


# -- the random alignment control ------------------------------------------------------------------

def test_random_pairs_draw_every_valid_chain_equally_often():
    ok = np.array([[1, 1, 0], [1, 1, 1], [0, 1, 1]], dtype=bool)
    chains = [((i1, j1), (i2, j2)) for (i1, j1), (i2, j2) in itertools.product(zip(*np.nonzero(ok)), repeat=2)
              if i1 < i2 and j1 < j2 and ok[i1, j1] and ok[i2, j2]]
    rng = np.random.default_rng(0)
    draws = 6000
    counts: dict = {}
    for _ in range(draws):
        chain = tuple(random_pairs(ok, 2, rng))
        counts[chain] = counts.get(chain, 0) + 1
    assert set(counts) == {tuple((int(a), int(b)) for a, b in c) for c in chains}
    expected = draws / len(chains)
    assert all(abs(n - expected) < 5 * expected ** 0.5 for n in counts.values()), counts
    assert random_pairs(np.zeros((2, 2), dtype=bool), 1, rng) is None


def test_a_random_alignment_is_valid_seeded_and_recorded():
    parent, child = make_parent(), make_child()
    x = torch.randn(2, 1, 8, 8)
    auto = align(parent, child, x, stages=3)
    drawn = [align(parent, child, x, stages=3, method="random", seed=s) for s in range(6)]
    for a in drawn:
        assert a.method == "random" and len(a.pairs) == 3 and a.pairs[-1] == auto.pairs[-1]
        text = a.to_json()
        again = Alignment.from_json(text)
        assert again.seed == a.seed and [(p.parent, p.child) for p in again.pairs] == [(p.parent, p.child)
                                                                                      for p in a.pairs]
        assert a.pairs[0].reason.startswith(f"random (seed {a.seed})")
    assert [p.parent for p in align(parent, child, x, stages=3, method="random", seed=2).pairs] == \
        [p.parent for p in drawn[2].pairs]
    assert len({tuple((p.parent, p.child) for p in a.pairs) for a in drawn}) > 1
    with pytest.raises(AlignmentError, match="takes no pairs="):
        align(parent, child, x, stages=3, method="random", seed=0, pairs=[("stem", "stem")])
    with pytest.raises(AlignmentError, match="needs seed= a non-negative integer, got None"):
        align(parent, child, x, stages=3, method="random")


# -- --stages on a card with fixed pairs -----------------------------------------------------------

def test_stages_on_a_card_with_fixed_pairs_drops_them_with_a_notice(capsys):
    from hkt_core.train import api
    from hkt_core.train.api import resolve

    api._NOTED.clear()
    spec = resolve("mnist1d-resnet56-resnet20", "hkt", stages=3)
    assert spec.card.stages == 3 and spec.card.alignment is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "stages = 3 drops them and aligns automatically" in err
    kept = resolve("mnist1d-resnet56-resnet20", "hkt", settings=["card.stages=2"])
    assert kept.card.alignment == (("pool", "pool"),) and capsys.readouterr().err == ""
