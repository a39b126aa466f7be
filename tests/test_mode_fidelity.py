"""The traced graph is the model, in both modes (docs/engine.md, "Train and eval graphs").

A contract over every family of models the tests build - models written here (a batch norm with
its activation that fx traces through, as timm's ``BatchNormAct2d``; functional dropout and
stochastic depth reading ``self.training``; a model only ``torch.export`` traces), transformers
models from their configs, torchvision and timm models where installed:

- in eval, the Family's native output equals the plain child's and no tensor of the child changes
  (``align`` and building the Family change none either);
- in training, dropout is active and, on the same batch and random seed, the native output and
  every buffer after the step (running statistics, ``num_batches_tracked``) equal the plain
  child's;
- after optimiser steps, the exported child equals the Family's native output in eval;
- ``hkt_core.features`` (what FitNet runs) follows the model's mode the same way.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hkt_core
from hkt_core import HKTConfig
from hkt_core.lockstep.features import features


class NormAct(nn.BatchNorm2d):
    """A batch norm with its activation, defined outside torch.nn (torch.fx traces through it):
    its forward reads ``self.training`` and counts batches, as timm's ``BatchNormAct2d`` does."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
        x = F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                         self.training or not self.track_running_stats, self.momentum, self.eps)
        return F.relu(x)


class DropPath(nn.Module):
    """Stochastic depth written functionally (traced through: ``self.training`` is read in forward)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = torch.rand(x.shape[0], 1, 1, 1, device=x.device) >= self.p
        return x * keep / (1 - self.p)


class Conv_Odd(nn.Module):
    """Odd names; NormAct, nn.BatchNorm2d, stochastic depth, nn.Dropout and F.dropout."""

    def __init__(self, w: int) -> None:
        super().__init__()
        self.Stem_a = nn.Sequential(nn.Conv2d(3, w, 3, padding=1), NormAct(w))
        self.blk_1 = nn.Sequential(nn.Conv2d(w, w, 3, padding=1, stride=2), NormAct(w))
        self.res = nn.Sequential(nn.Conv2d(w, w, 3, padding=1), NormAct(w))
        self.drop_path = DropPath(0.2)
        self.blk_2 = nn.Sequential(nn.Conv2d(w, 2 * w, 3, padding=1, stride=2), nn.BatchNorm2d(2 * w), nn.ReLU())
        self.drop = nn.Dropout(0.3)
        self.Head = nn.Linear(2 * w, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Stem_a(x)
        x = self.blk_1(x)
        x = x + self.drop_path(self.res(x))      # a residual branch with stochastic depth
        x = self.blk_2(x).mean((2, 3))
        return self.Head(F.dropout(self.drop(x), 0.1, self.training))


class TwoInputs_Branchy(nn.Module):
    """Two inputs and Python control flow on a size (fx cannot trace it: torch.export does)."""

    def __init__(self, w: int) -> None:
        super().__init__()
        self.embed = nn.Linear(6, w)
        self.mix_1 = nn.Sequential(nn.Linear(w, w), nn.BatchNorm1d(w), nn.GELU(), nn.Dropout(0.25))
        self.mix_2 = nn.Sequential(nn.Linear(w, w), nn.BatchNorm1d(w), nn.GELU())
        self.out = nn.Linear(w, 4)

    def forward(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        h = self.embed(x * scale)
        if h.shape[-1] % 2 == 0:   # a branch on a size: defeats symbolic tracing
            h = self.mix_1(h)
        h = self.mix_2(h)
        return self.out(F.dropout(h, 0.2, self.training))


def _conv_pair():
    return Conv_Odd(12), Conv_Odd(6), (torch.randn(6, 3, 16, 16),), 3


def _branchy_pair():
    return TwoInputs_Branchy(24), TwoInputs_Branchy(8), (torch.randn(6, 6), torch.rand(6, 6) + 0.5), 2


def _bert_pair():
    pytest.importorskip("transformers")
    from hkt_zoo.transformers_source import transformers_model

    def make(layers: int, width: int) -> nn.Module:
        return transformers_model("BertForSequenceClassification", {
            "vocab_size": 64, "hidden_size": width, "num_hidden_layers": layers, "num_attention_heads": 2,
            "intermediate_size": 2 * width, "num_labels": 3, "max_position_embeddings": 32})

    ids = torch.randint(1, 64, (4, 10))
    mask = torch.ones(4, 10, dtype=torch.long)
    mask[0, 7:] = 0
    return make(4, 32), make(2, 16), (ids, mask), 2


def _vision_pair(library: str):
    if library == "torchvision":
        models = pytest.importorskip("torchvision.models")
        return models.resnet18(num_classes=5), models.mobilenet_v3_small(num_classes=5), \
            (torch.randn(4, 3, 64, 64),), 3
    timm = pytest.importorskip("timm")
    child = "fastvit_t8" if library == "timm-fastvit" else "ghostnet_050"
    return (timm.create_model("cspresnet50", num_classes=5, pretrained=False),
            timm.create_model(child, num_classes=5, pretrained=False), (torch.randn(4, 3, 64, 64),), 3)


PAIRS = {
    "own-conv": _conv_pair,
    "own-export": _branchy_pair,
    "transformers-bert": _bert_pair,
    "torchvision": lambda: _vision_pair("torchvision"),
    "timm": lambda: _vision_pair("timm"),
    "timm-fastvit": lambda: _vision_pair("timm-fastvit"),
}


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_same_state(model: nn.Module, expected: dict[str, torch.Tensor], what: str) -> None:
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, expected[k])]
    assert not changed, f"{what} changed {len(changed)} tensors, e.g. {changed[:3]}"


def _native(out) -> torch.Tensor:
    return out.native


def _plain(model: nn.Module, inputs) -> torch.Tensor:
    out = model(*inputs)
    return out.logits if hasattr(out, "logits") else out


@pytest.fixture(params=list(PAIRS))
def pair(request):
    torch.manual_seed(0)
    parent, child, inputs, stages = PAIRS[request.param]()
    return request.param, parent, child, inputs, stages


def test_the_family_runs_the_child_as_the_child_runs_in_each_mode(pair):
    name, parent, child, inputs, stages = pair
    child.train()
    before = _state(child)
    alignment = hkt_core.align(parent, child, inputs, stages=stages)
    family = hkt_core.Family(parent, child, alignment, HKTConfig(), example_inputs=inputs)
    _assert_same_state(child, before, "align() and building the Family")
    plain = copy.deepcopy(child)

    # eval: the plain child's output, and nothing moves
    family.eval()
    plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(_native(family(*inputs)), _plain(plain, inputs), rtol=0, atol=0)
    _assert_same_state(child, before, "an eval forward of the Family")

    # train: the same output on the same seed, the same statistics after
    family.train()
    plain.train()
    torch.manual_seed(11)
    native = _native(family(*inputs))
    torch.manual_seed(11)
    reference = _plain(plain, inputs)
    torch.testing.assert_close(native, reference, rtol=0, atol=0)
    for key, value in plain.state_dict().items():
        assert torch.equal(child.state_dict()[key], value), f"{name}: {key} moved unlike the plain child's"
    # dropout is active exactly where the child has some: another seed changes the output of
    # both or of neither (the models written here and BERT have dropout)
    torch.manual_seed(12)
    again = _native(family(*inputs))
    torch.manual_seed(12)
    torch.testing.assert_close(again, _plain(plain, inputs), rtol=0, atol=0)
    stochastic = not torch.equal(again, native)
    assert stochastic or name not in ("own-conv", "own-export", "transformers-bert"), \
        f"{name}: two training-mode calls gave one output (no dropout)"


def test_after_training_steps_the_exported_child_is_the_familys_native_output(pair):
    name, parent, child, inputs, stages = pair
    alignment = hkt_core.align(parent, child, inputs, stages=stages)
    family = hkt_core.Family(parent, child, alignment, HKTConfig(alphas=(0.3, 0.7, 0.0)), example_inputs=inputs)
    target = torch.randint(0, 3, (inputs[0].shape[0],))
    optimiser = torch.optim.SGD(family.trainable_parameters(), lr=0.05)
    family.train()
    for _ in range(3):
        optimiser.zero_grad()
        family.loss(family(*inputs), target).backward()
        optimiser.step()
    family.eval()
    exported = family.export_child().eval()
    with torch.no_grad():
        torch.testing.assert_close(_native(family(*inputs)), _plain(exported, inputs), rtol=0, atol=0)
    assert child.training is False and exported.training is False


def test_features_follow_the_models_mode(pair):
    name, parent, child, inputs, stages = pair
    alignment = hkt_core.align(parent, child, inputs, stages=stages)
    names = [p.child for p in alignment.mixing_pairs]
    feats = features(child, names, inputs, output=True)
    plain = copy.deepcopy(child)

    child.eval()
    plain.eval()
    before = _state(child)
    with torch.no_grad():
        torch.testing.assert_close(_plain_out(feats(*inputs)["output"]), _plain(plain, inputs), rtol=0, atol=0)
    _assert_same_state(child, before, "an eval call of features()")

    feats.train()          # sets the model's mode too
    assert child.training
    plain.train()
    torch.manual_seed(5)
    got = _plain_out(feats(*inputs)["output"])
    torch.manual_seed(5)
    torch.testing.assert_close(got, _plain(plain, inputs), rtol=0, atol=0)
    for key, value in plain.state_dict().items():
        assert torch.equal(child.state_dict()[key], value), f"{name}: features() moved {key} unlike the model"


def _plain_out(out):
    return out.logits if hasattr(out, "logits") else out


def test_a_family_from_name_pairs_falls_back_to_export_like_align():
    torch.manual_seed(0)
    parent, child, inputs, _ = _branchy_pair()
    alignment = hkt_core.align(parent, child, inputs, stages=2)
    pairs = [(p.parent, p.child) for p in alignment.pairs]
    family = hkt_core.Family(parent, child, pairs, HKTConfig(), example_inputs=inputs)
    family.eval()
    with torch.no_grad():
        torch.testing.assert_close(family(*inputs).native, child.eval()(*inputs), rtol=0, atol=0)


def test_tracing_in_training_mode_changes_no_buffer_and_counts_batches_as_a_graph_value():
    from hkt_core.trace.modes import mode_graphs
    from hkt_core.adapters import GenericAdapter
    from hkt_core.trace import fx_trace

    model = Conv_Odd(4).train()
    model.drop_path.p = 0.0       # fx traces the rest in training mode
    before = _state(model)
    eval_graph = fx_trace(model.eval(), GenericAdapter())
    graphs = mode_graphs(model.train(), GenericAdapter(), eval_graph, None)
    _assert_same_state(model, before, "tracing")
    assert model.training and graphs[False] is eval_graph and graphs[True] is not eval_graph
    assert "num_batches_tracked" in graphs[True].code and "num_batches_tracked" not in eval_graph.code


def test_moving_the_family_moves_the_tensors_of_exported_graphs_too():
    """``family.to(...)`` replaces the models' buffers; exported graphs (a module tree of their
    own) follow, so the parent runs in the new dtype and the child's statistics still move."""
    torch.manual_seed(0)
    parent, child, inputs, stages = _branchy_pair()
    alignment = hkt_core.align(parent, child, inputs, stages=stages)
    family = hkt_core.Family(parent, child, alignment, HKTConfig(), example_inputs=inputs)
    family.to(torch.float64)
    inputs = tuple(t.double() for t in inputs)
    plain = copy.deepcopy(child)
    family.train()
    plain.train()
    torch.manual_seed(3)
    native = family(*inputs).native
    torch.manual_seed(3)
    torch.testing.assert_close(native, plain(*inputs), rtol=0, atol=0)
    assert native.dtype == torch.float64
    for key, value in plain.state_dict().items():
        assert torch.equal(child.state_dict()[key], value), key


def test_features_of_an_exported_graph_follow_moves_of_the_model():
    torch.manual_seed(0)
    _, child, inputs, _ = _branchy_pair()
    feats = features(child, ["mix_2"], inputs, output=True)
    child.to(torch.float64)
    inputs = tuple(t.double() for t in inputs)
    plain = copy.deepcopy(child)
    feats.train()
    plain.train()
    torch.manual_seed(4)
    got = feats(*inputs)["output"]
    torch.manual_seed(4)
    torch.testing.assert_close(got, plain(*inputs), rtol=0, atol=0)
    for key, value in plain.state_dict().items():
        assert torch.equal(child.state_dict()[key], value), key


class LayerDrop_Net(nn.Module):
    """Skips each layer at random while training (LayerDrop, as transformers' audio encoders do)."""

    def __init__(self, w: int) -> None:
        super().__init__()
        self.inp = nn.Linear(6, w)
        self.layers = nn.ModuleList(nn.Linear(w, w) for _ in range(3))
        self.out = nn.Linear(w, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        for layer in self.layers:
            if self.training and torch.rand([]) < 0.1:
                continue
            h = h + layer(h).relu()
        return self.out(h)


def test_a_child_whose_training_forward_branches_at_random_is_refused_in_one_line(capfd):
    """No traced graph holds a branch on a random number: the Family says so, names the fix and
    prints nothing else (torch's partial graph is held back)."""
    torch.manual_seed(0)
    parent, child, x = LayerDrop_Net(16), LayerDrop_Net(8), torch.randn(4, 6)
    alignment = hkt_core.align(parent, child, x, stages=2)   # the eval graph traces
    capfd.readouterr()
    with pytest.raises(hkt_core.TraceError) as caught:
        hkt_core.Family(parent, child, alignment, HKTConfig(), example_inputs=(x,))
    message = str(caught.value)
    assert len(message.splitlines()) == 1
    assert "branches on a value computed at run time" in message and "layerdrop = 0.0" in message
    assert "def forward" not in capfd.readouterr().err
