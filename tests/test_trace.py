"""Tracing: the naming rule, shapes, FLOPs, the export fallback and its errors."""

from __future__ import annotations

import math

import networkx as nx
import pytest
import torch
from torch import nn

from hkt_core.adapters import Adapter
from hkt_core.errors import TraceError
from hkt_core.trace import fx_trace, node_names, trace
from hkt_core.trace.export import export_trace

from models_zoo import CifarResNet, MultiOutput, PlainCNN, ShapeBranchNet, TwoFrameFlow, make_inputs



class Twice(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.act = nn.ReLU()
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        x = self.act(self.act(self.block(x)))
        return self.head(x.mean(dim=(2, 3)))


def test_outermost_module_names_a_value_and_repeated_calls_are_numbered():
    gm = fx_trace(Twice())
    names = set(node_names(gm.graph).values())
    # block returns what block.1 (a leaf ReLU) returns: the outer module names it
    assert {"block.0", "block", "act", "act#2", "mean", "head"} <= names
    assert "block.1" not in names


def test_plain_fx_graph_keeps_the_leaf_call_rule():
    gm = torch.fx.symbolic_trace(Twice())
    names = set(node_names(gm.graph).values())
    assert {"block.0", "block.1", "act", "act#2", "head"} <= names


def test_fx_and_export_graphs_give_the_same_module_names():
    model, x = CifarResNet(8, 4), torch.randn(1, 3, 32, 32)
    fx_names = {n for n in node_names(fx_trace(model).graph).values() if "." in n or n.startswith("layer")}
    model.eval()
    ex_names = set(node_names(export_trace(model, (x,)).graph).values())
    module_names = {n for n in fx_names if not n.startswith(("add", "relu", "flatten"))}
    # one block per stage: layer2 returns what layer2.0 returns, so the stage names it
    assert {"layer1", "layer2", "layer3", "layer2.0.conv1", "layer2.0.shortcut"} <= module_names
    assert "layer2.0" not in module_names
    assert module_names <= ex_names


def test_trace_records_graph_attributes_shapes_and_shares_parameters():
    model = PlainCNN(8, 2)
    t = trace(model, torch.randn(2, 3, 16, 16))
    assert t.backend == "fx"
    assert t.gm.get_parameter("stage1.0.weight") is model.stage1[0].weight
    assert nx.is_directed_acyclic_graph(t.graph)
    data = t.graph.nodes["stage2.0"]
    assert data["shape"] == (2, 16, 8, 8)
    assert data["module_type"] == "Conv2d" and data["op"] == "call_module"
    assert data["params"] == 8 * 16 * 9 + 16
    # FLOPs per sample: 2 * output elements * (C_in * k * k)
    assert data["flops"] == 2 * 16 * 8 * 8 * 8 * 9
    assert t.graph.nodes["fc"]["flops"] == 2 * 5 * 16
    assert [t.graph.nodes[n]["index"] for n in t.order] == list(range(len(t.order)))
    assert t.prediction == "fc" and t.inputs == ("x",)
    assert t.graph.nodes["stage2.0"]["fx_node"] is t.nodes["stage2.0"]


def test_trace_restores_training_mode_and_batch_norm_statistics():
    model = CifarResNet(8, 4).train()
    before = model.bn1.running_mean.clone()
    trace(model, torch.randn(2, 3, 32, 32))
    assert model.training and model.layer1[0].bn1.training
    assert torch.equal(model.bn1.running_mean, before)


def test_two_inputs_and_repeated_module_calls():
    t = trace(TwoFrameFlow(4), make_inputs([(1, 3, 16, 16)] * 2))
    assert t.inputs == ("frame1", "frame2")
    assert {"fnet", "fnet#2", "cnet", "flow_head"} <= set(t.order)
    assert t.shape("fnet#2") == (1, 4, 8, 8)


def test_control_flow_falls_back_to_torch_export():
    model = ShapeBranchNet(4, 1)
    with pytest.raises(torch.fx.proxy.TraceError):
        fx_trace(model)
    t = trace(model, torch.randn(1, 3, 16, 16))
    assert t.backend == "export"
    assert t.gm.meta["hkt_backend"] == "export"
    assert {"stem", "refine.0", "down", "fc"} <= set(t.order)
    # a batch-1 example is exported at batch 2 (torch.export would pin a size-1 batch); the record says so
    assert t.shape("down") == (2, 8, 8, 8) and t.input_shapes == ((2, 3, 16, 16),)
    assert t.gm.get_parameter("stem.weight") is model.stem.weight
    out = t.gm(torch.ones(1, 3, 16, 16))
    assert torch.allclose(out, model.eval()(torch.ones(1, 3, 16, 16)))


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        if x.sum() > 0:  # depends on values: neither fx nor export can trace it
            return self.conv(x)
        return x


class MaskedRows(nn.Module):
    """Rows picked by a boolean mask (a size torch.export can only name: ``u0``), as the
    end-of-sequence lookup of T5 and BART classifiers; the branch on a size keeps torch.fx out."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.head = nn.Linear(4, 3)

    def forward(self, ids):
        h = self.embed(ids)
        if h.shape[1] > 1:
            h = h * 2
        picked = h[ids.eq(1), :]
        return self.head(picked.view(h.shape[0], -1, h.shape[-1])[:, -1, :])


def test_data_dependent_sizes_have_no_graph_shape_and_the_size_seen_on_the_example():
    from hkt_core.trace.kinds import traced_kinds

    ids = torch.tensor([[3, 4, 1], [5, 6, 1]])
    t = trace(MaskedRows(), ids)
    assert t.backend == "export"
    g = t.graph
    picked = [n for n, d in g.nodes(data=True) if d["data_dependent"] and d["example_shape"] == (2, 4)]
    assert picked and all(g.nodes[n]["shape"] is None and g.nodes[n]["flops"] == 4.0 for n in picked)
    # the lookup's (B, D) result, the prediction and everything before the mask keep their shapes
    assert t.shape(t.prediction) == (2, 3) and t.shape("embed") == (2, 3, 4)
    assert all(d["example_shape"] == d["shape"] for d in g.nodes.values() if not d["data_dependent"])
    kinds = traced_kinds(t)
    assert not set(picked) & set(kinds) and kinds["head"].kind == "vector"
    assert all(math.isfinite(d["flops"]) for d in g.nodes.values())


def test_untraceable_model_error_names_construct_and_fix():
    with pytest.raises(TraceError) as err:
        trace(DataDependent(), torch.randn(1, 3, 4, 4))
    msg = str(err.value)
    assert "torch.fx failed" in msg and "torch.export failed" in msg
    assert "if x.sum() > 0" in msg  # the failing construct, quoted from the source
    assert "leaf module" in msg and "declared_blocks" in msg


def test_rejected_input_shape_is_a_clear_error():
    with pytest.raises(TraceError, match=r"rejected example input shape\(s\) \[1, 5, 16, 16\]"):
        trace(PlainCNN(), torch.randn(1, 5, 16, 16))
    with pytest.raises(TraceError, match="a tensor or a non-empty tuple"):
        trace(PlainCNN(), [1, 2])


class LogitsAdapter(Adapter):
    def prediction(self, output):
        return output["logits"]


def test_adapter_names_the_prediction_of_a_multi_output_model():
    x = torch.randn(1, 3, 16, 16)
    assert trace(MultiOutput(), x).prediction == "aux"  # generic rule: the last output
    t = trace(MultiOutput(), x, adapter=LogitsAdapter())
    assert t.prediction == "body"
    assert set(t.outputs) == {"body", "aux"}
