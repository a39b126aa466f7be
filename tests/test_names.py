"""The naming service: one table per trace, used by alignment, the trace graph and the Family."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hkt_core
from hkt_core import HKTConfig, builtins
from hkt_core.align import align, resolve
from hkt_core.errors import AlignmentError, closest
from hkt_core.family import Family
from hkt_core.trace import graph as graph_module
from hkt_core.trace import fx_trace, name_table, trace
from hkt_core.trace import tracer as tracer_module
from hkt_core.trace.export import export_trace

CORE = hkt_core.get_plugin_manager(autoload=False, plugins={"core": builtins})


class Res(nn.Module):
    """Two residual adds per block: function nodes named per module scope."""

    def __init__(self, c):
        super().__init__()
        self.conv_a = nn.Conv2d(c, c, 3, padding=1)
        self.conv_b = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        y = x + self.conv_a(x)
        return y + F.relu(self.conv_b(y))


class Odd_Net(nn.Module):
    def __init__(self, c=4, classes=3):
        super().__init__()
        self.Stem_0 = nn.Conv2d(3, c, 3, padding=1)
        self.layer1 = nn.Sequential(Res(c), Res(c))
        self.head = nn.Linear(c, classes)

    def forward(self, x):
        return self.head(self.layer1(self.Stem_0(x)).mean((2, 3)))


def test_function_nodes_answer_to_scoped_names_counted_per_module():
    gm = fx_trace(Odd_Net())
    table = name_table(gm)
    first, second = table.node("layer1.0.add"), table.node("layer1.0.add_1")
    assert first is not second and first.target is second.target
    assert table.node("layer1.1.add") is not first
    assert table.node("layer1.1.relu").target is F.relu
    # the scoped name is an alias: the public name stays the fx name ...
    assert table.name(first) == first.name == "add" and "layer1.0.add" in table.aliases(first)
    # ... or the module path, for a value a module returns
    assert table.name(table.node("layer1.1.add_1")) == "layer1"


def test_the_tracer_builds_the_table_once_and_every_resolver_uses_it():
    gm = fx_trace(Odd_Net())
    table = name_table(gm)
    assert name_table(gm) is table
    assert resolve(gm, ["layer1.0.add_1", "layer1.0", "Stem_0"]) == [
        table.node("layer1.0.add_1"), table.node("layer1.0"), table.node("Stem_0")]
    traced = trace(Odd_Net(), torch.randn(2, 3, 8, 8))
    assert traced.canonical("layer1.0.add_1") == traced.table.name(traced.table.node("layer1.0.add_1"))


def test_export_graphs_get_scoped_names_from_the_module_stack():
    model = Odd_Net().eval()
    gm = export_trace(model, (torch.randn(2, 3, 8, 8),))
    table = name_table(gm)
    assert table.backend == "export"
    assert table.node("layer1.0.add") is not table.node("layer1.0.add_1")


def test_unknown_names_suggest_names_near_them():
    gm = fx_trace(Odd_Net())
    with pytest.raises(AlignmentError, match=r"'layer1.0.ad' \(nearby valid names: .*add"):
        resolve(gm, ["layer1.0.ad"])
    assert set(closest("layer1.9", ["Stem_0", "layer1.0", "layer1.1", "head"])[:2]) == {"layer1.0", "layer1.1"}
    assert closest("zzz", ["b", "a", "c"], n=2) == ["b", "a"]     # nothing near: the first, as given


def test_family_reuses_the_traces_align_built(monkeypatch):
    torch.manual_seed(0)
    parent, child = Odd_Net(8), Odd_Net(4)
    x = torch.randn(2, 3, 8, 8)
    alignment = align(parent, child, x, pairs=[("layer1.0.add_1", "layer1.0.add_1")])
    assert alignment.traced[0].model is parent

    # eval-mode traces (the graphs the plan is built on): by fx alone, or by trace() when the
    # Family is given example inputs (the train-mode graph of hkt_core.trace.modes is another trace)
    calls = []
    real, real_trace = tracer_module.fx_trace, graph_module.trace
    monkeypatch.setattr("hkt_core.lockstep.interpreter.fx_trace", lambda *a, **k: calls.append(a) or real(*a, **k))
    monkeypatch.setattr("hkt_core.trace.graph.trace", lambda *a, **k: calls.append(a) or real_trace(*a, **k))
    fam = Family(parent, child, alignment, HKTConfig(alphas=(0.0, 1.0, 0.0), directions="backbone"),
                 example_inputs=x, manager=CORE)
    assert calls == []
    # the Family rewrote its own copy of the graph, not the alignment's
    assert fam._cg.gm.graph is not alignment.traced[1].gm.graph
    fresh = Family(parent, child, alignment.pairs, HKTConfig(alphas=(0.0, 1.0, 0.0), directions="backbone"),
                   example_inputs=x, manager=CORE)
    assert len(calls) == 2
    fresh.points.load_state_dict(fam.points.state_dict())
    out, ref = fam(x), fresh(x)
    for a, b in zip(out[:3], ref[:3]):
        torch.testing.assert_close(a, b)
