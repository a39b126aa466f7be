"""Explicit plugin managers: what a caller passes is what the engine uses, with no process-wide fallback."""

from __future__ import annotations

import types

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hkt_core
from hkt_core import HKTConfig, TrainConfig, builtins
from hkt_core.adapters import Adapter, adapter_for
from hkt_core.plugins.markers import hookimpl
from hkt_core.train.method import MethodContext


class Block(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.norm(self.conv(x)))


class Net(nn.Module):
    def __init__(self, width, classes=3):
        super().__init__()
        self.body = Block(1, width)
        self.fc = nn.Linear(width, classes)

    def forward(self, x):
        return {"aux": x.mean(), "logits": self.fc(self.body(x).mean((2, 3)))}


class NetAdapter(Adapter):
    """Keeps Block opaque and picks the logits out of the output dict."""

    model_classes = (Net,)
    leaf_modules = (Block,)

    def prediction(self, output):
        return output["logits"]


@pytest.fixture
def manager():
    plugin = types.SimpleNamespace(
        hkt_register_adapters=hookimpl(lambda registry: registry.add("net", NetAdapter())))
    return hkt_core.get_plugin_manager(autoload=False, plugins={"core": builtins, "mine": plugin})


@pytest.fixture
def no_default(monkeypatch):
    """Any use of the process-wide manager fails the test."""
    def refuse():
        raise AssertionError("the process-wide plugin manager was used")

    monkeypatch.setattr("hkt_core.plugins.host.default_manager", refuse)


def test_adapter_for_needs_a_manager(manager):
    assert isinstance(adapter_for(Net(4), manager), NetAdapter)
    with pytest.raises(TypeError, match="pass the plugin manager"):
        adapter_for(Net(4), None)


def test_align_and_family_use_the_given_manager_only(manager, no_default):
    x = torch.randn(4, 1, 8, 8)
    parent, child = Net(8), Net(4)
    alignment = hkt_core.align(parent, child, x, pairs=[("body", "body")], manager=manager)
    traced_child = alignment.traced[1]
    assert isinstance(traced_child.adapter, NetAdapter)
    assert "body.conv" not in traced_child.table          # the block stayed opaque
    fam = hkt_core.Family(parent, child, alignment, HKTConfig(), example_inputs=x, manager=manager)
    out = fam(x)
    assert out.native.shape == (4, 3)                     # the adapter's prediction, not "aux"


def test_methods_resolve_adapters_once(manager, monkeypatch):
    torch.manual_seed(0)
    parent, child = Net(8).eval().requires_grad_(False), Net(4)
    task = manager.lookup("losses", "classification")
    ctx = MethodContext(child=child, task=task, train=TrainConfig(), hkt=HKTConfig(), parent=parent,
                        example_inputs=(torch.randn(2, 1, 8, 8),), manager=manager)
    method = manager.lookup("methods", "kd")(ctx)
    assert isinstance(method.child_adapter, NetAdapter) and isinstance(method.parent_adapter, NetAdapter)
    calls = []
    adapters = manager.registry("adapters")
    monkeypatch.setattr(adapters, "entries", lambda *a: calls.append(a) or [])   # every adapter lookup walks these
    for _ in range(2):
        out = method.training_step((torch.randn(4, 1, 8, 8),), torch.randint(0, 3, (4,)))
        out.loss.backward()
    assert calls == []
    adapter_for(child, manager)                   # (the spy does see a lookup)
    assert len(calls) == 1

