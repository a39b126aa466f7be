"""Contract tests over every registered training method, and the optimiser/schedule pieces."""

from __future__ import annotations

import math

import pytest
import torch

import hkt_core
from hkt_core.config import HKTConfig, TrainConfig
from hkt_core.train import checkpoint as ckpt
from hkt_core.train.method import Method, MethodContext, StepOutput
from hkt_core.train.optim import build_optimizer, learning_rate
from test_train_support import make_child, make_dataset, make_parent, tiny_card

METHODS = hkt_core.get_plugin_manager().registry("methods").names()



def _context(method_cls) -> MethodContext:
    torch.manual_seed(0)
    child = make_child(batchnorm=True)
    parent = make_parent(batchnorm=True).eval().requires_grad_(False) if method_cls.needs_parent else None
    return MethodContext(child=child, task=hkt_core.lookup("losses", "classification"), train=TrainConfig(),
                         hkt=HKTConfig(), card=tiny_card(batchnorm=True), parent=parent,
                         example_inputs=(torch.randn(2, 1, 8, 8),),
                         options=dict(getattr(method_cls, "default_options", {}) or {}))


@pytest.mark.parametrize("name", METHODS)
def test_registered_method_follows_the_protocol(name):
    method_cls = hkt_core.lookup("methods", name)
    assert isinstance(method_cls, type) and issubclass(method_cls, Method)
    ctx = _context(method_cls)
    parent_state = {k: v.clone() for k, v in ctx.parent.state_dict().items()} if ctx.parent is not None else {}
    method = method_cls(ctx)
    child = method.deployed()
    assert child is method.ctx.child, "deployed() is the child the trainer saves and evaluates"
    trainable = method.trainable_module()
    trainable_ids = {id(p) for p in trainable.parameters()}
    assert all(id(p) in trainable_ids for p in child.parameters()), "every child parameter is optimised"
    assert method.model is trainable
    extra = method.extra_state_module()
    assert extra is None or isinstance(extra, torch.nn.Module)

    bundle = make_dataset(n_train=16, n_test=4)
    x = torch.stack([bundle.train[i][0] for i in range(8)])
    y = torch.stack([bundle.train[i][1] for i in range(8)])
    method.train(True)
    assert ctx.parent is None or not ctx.parent.training, "the parent stays in eval mode"
    out = method.training_step((x,), y)
    assert isinstance(out, StepOutput)
    assert out.loss.dim() == 0 and math.isfinite(float(out.loss.detach()))
    assert all(isinstance(v, float) for v in out.logs.values())
    before = {k: v.clone() for k, v in child.state_dict().items()}
    optimizer = build_optimizer(trainable, TrainConfig(lr=0.1))
    optimizer.zero_grad()
    out.loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in child.parameters())
    optimizer.step()
    assert any(not torch.equal(before[k], v) for k, v in child.state_dict().items())
    if ctx.parent is not None:
        assert all(p.grad is None for p in ctx.parent.parameters())
        assert all(torch.equal(parent_state[k], v) for k, v in ctx.parent.state_dict().items())


def test_core_methods_are_registered_by_the_core_plugin():
    registry = hkt_core.registry("methods")
    for name in ("parent", "baseline", "kd", "hkt"):
        assert registry.entry(name).plugin == "core"
    assert hkt_core.lookup("methods", "parent").trains_parent
    assert hkt_core.lookup("methods", "kd").needs_parent and hkt_core.lookup("methods", "hkt").needs_parent


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_optimizer_state_round_trip_continues_identically(optimizer, tmp_path):
    cfg = TrainConfig(optimizer=optimizer, lr=0.05)
    x, y = torch.randn(16, 1, 8, 8), torch.arange(16) % 3

    def step(model, opt):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    torch.manual_seed(0)
    a = make_child(batchnorm=True)
    opt_a = build_optimizer(a, cfg)
    for _ in range(3):
        step(a, opt_a)
    tensors, info = ckpt.optimizer_to_files(opt_a)
    ckpt.write_tensors(tmp_path / "opt.safetensors", tensors, kind="optimizer")
    b = make_child(batchnorm=True)
    b.load_state_dict(a.state_dict())
    opt_b = build_optimizer(b, cfg)
    loaded, _ = ckpt.read_tensors(tmp_path / "opt.safetensors")
    import json

    ckpt.optimizer_from_files(opt_b, loaded, json.loads(json.dumps(info)), source="test")
    for _ in range(2):
        step(a, opt_a)
        step(b, opt_b)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_rng_state_round_trip():
    import random

    import numpy as np

    state = ckpt.capture_rng()
    import json

    state = json.loads(json.dumps(state))
    a = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    ckpt.restore_rng(state)
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == a


def test_learning_rate_schedules():
    cos = TrainConfig(epochs=4, lr=0.2, schedule="cosine")
    assert learning_rate(cos, 0, 0, 10) == pytest.approx(0.2)
    assert learning_rate(cos, 2, 0, 10) == pytest.approx(0.1)
    assert learning_rate(cos, 1, 5, 10) == pytest.approx(0.1 * (1 + math.cos(math.pi * 1.5 / 4)))
    ms = TrainConfig(epochs=10, lr=0.1, schedule="multistep", milestones=(0.5, 0.8), gamma=0.1)
    assert [learning_rate(ms, e, 3, 7) for e in (0, 4, 5, 7, 8, 9)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    warm = TrainConfig(epochs=5, lr=0.1, schedule="none", warmup_epochs=1)
    assert learning_rate(warm, 0, 0, 4) == pytest.approx(0.025)
    assert learning_rate(warm, 0, 3, 4) == pytest.approx(0.1)
    assert learning_rate(warm, 3, 0, 4) == pytest.approx(0.1)


def test_no_weight_decay_on_biases_and_norms():
    opt = build_optimizer(make_child(batchnorm=True), TrainConfig(weight_decay=1e-3))
    decays = {p.dim() > 1: g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert decays == {True: 1e-3, False: 0.0}
    assert opt.param_groups[0]["nesterov"] is True
