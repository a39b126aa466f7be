"""``--compile``: the Family's lockstep step recorded as one graph, in-place compilation, fallback.

Recording is checked against the Family's own interpreter (bitwise: same outputs, gradients and
BatchNorm statistics) without compiling anything, for an fx graph and an export graph. The fallback
tests call ``torch.compile`` with a backend that fails at once (no compiler runs); an export-traced
Family is compiled with the "eager" backend (Dynamo only); the one real compilation is the
digits-demo run in test_scale_cli.py.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hkt_core
from hkt_core import HKTConfig, builtins
from hkt_core.family import Family
from hkt_core.train.compiling import CompileReport, compile_family, compile_module, is_compiled, uncompile

CORE = hkt_core.get_plugin_manager(autoload=False, plugins={"core": builtins})


class Task:
    def loss(self, prediction, target):
        return F.cross_entropy(prediction, target)

    def inherit_loss(self, prediction, target):
        return (prediction.softmax(1) - F.one_hot(target, prediction.shape[1]).to(prediction.dtype)).abs().mean()


class TwoEyes(nn.Module):
    """Two inputs, odd names, BatchNorm, an in-place ReLU whose input a mixing point reads, a skip."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.left_eye = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width))
        self.right_eye = nn.Conv2d(2, width, 3, padding=1)
        self.squash_ = nn.ReLU(inplace=True)
        self.deeper = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.out_layer = nn.Linear(width, 5)

    def forward(self, a, b):
        fused = self.squash_(self.left_eye(a) + self.right_eye(b))
        deep = self.deeper(fused) + fused
        return self.out_layer(deep.mean((2, 3)))


POINTS = [("left_eye", "left_eye"), ("deeper", "deeper"), ("out_layer", "out_layer")]


def _families(config: HKTConfig = HKTConfig(lam=0.5)) -> tuple[Family, Family]:
    """Two identical Families (same weights, same operators) over fresh copies of the networks."""
    torch.manual_seed(0)
    parent, child = TwoEyes(8).eval(), TwoEyes(4)
    example = (torch.randn(2, 1, 6, 6), torch.randn(2, 2, 6, 6))
    made = []
    for _ in range(2):
        torch.manual_seed(1)
        made.append(Family(copy.deepcopy(parent), copy.deepcopy(child), POINTS, config, example_inputs=example,
                           task=Task(), manager=CORE))
    return made[0], made[1]


def _batch(n: int = 6):
    gen = torch.Generator().manual_seed(3)
    return (torch.randn(n, 1, 6, 6, generator=gen), torch.randn(n, 2, 6, 6, generator=gen)), torch.arange(n) % 5


@pytest.mark.parametrize("config", [HKTConfig(lam=0.5), HKTConfig(lam=0.5, mixture="mse", alphas=(0.4, 0.6, 0.0)),
                                    HKTConfig(lam=0.7, directions=("backbone", "head"))],
                         ids=["ga-both", "mse", "per-point-directions"])
def test_recorded_step_matches_the_interpreter_bitwise(config):
    eager, recorded = _families(config)
    inputs, target = _batch()
    step = recorded.record_step(*inputs)
    for family in (eager, recorded):
        family.train()
    for _ in range(2):   # twice: BatchNorm statistics and gradients accumulate alike
        out_a = eager(*inputs)
        out_b = recorded.output(*step(*inputs))
        for a, b in zip(out_a, out_b):
            assert (a is None) == (b is None)
            assert a is None or torch.equal(a, b)
        eager.loss(out_a, target).backward()
        recorded.loss(out_b, target).backward()
    for (name, p), q in zip(eager.named_parameters(), recorded.parameters()):
        assert (p.grad is None) == (q.grad is None), name
        assert p.grad is None or torch.equal(p.grad, q.grad), name
    # the child's BatchNorm statistics follow the native stream only, in both
    for (name, a), b in zip(eager.state_dict().items(), recorded.state_dict().values()):
        assert torch.equal(a, b), name
    assert int(recorded.child.left_eye[1].num_batches_tracked) == 2


def test_recorded_step_has_no_interpreter_left():
    """One flat graph: module calls of the Family's own modules and tensor operations only."""
    _, family = _families()
    step = family.record_step(*_batch()[0])
    ops = {n.op for n in step.graph.nodes}
    assert ops <= {"placeholder", "call_module", "call_function", "call_method", "get_attr", "output"}
    targets = {str(n.target) for n in step.graph.nodes if n.op == "call_module"}
    assert "family.points.0.to_child_mixture" in targets and "family.parent.out_layer" in targets
    assert any(t.startswith("scratch.") for t in targets), "the inherited stream's BatchNorm runs on a twin"
    # no parameter was copied: the graph's parameters are the Family's, and the frozen parent's
    # BatchNorm-folded convolutions (new tensors by design, hkt_core.lockstep.fold)
    folded = {id(p) for m in family._folded for p in m.parameters()}
    assert folded, "the parent's BatchNorms were folded"
    used = {id(p) for p in step.parameters()}
    assert used <= {id(p) for p in family.parameters()} | folded and folded <= used
    assert {id(p) for p in family.trainable_parameters()} <= used


def _failing_backend(gm, example_inputs):
    raise RuntimeError("this backend cannot compile anything")


class Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(3, 2)

    def forward(self, x):
        return self.layer(x).relu()


def test_a_module_that_cannot_compile_runs_eagerly_after_one_warning_line(capsys):
    model = Small()
    report = CompileReport()
    assert compile_module(model, "child", report, backend=_failing_backend) is model
    x = torch.randn(4, 3)
    assert torch.equal(model(x), model.layer(x).relu())
    assert torch.equal(model(x), model.layer(x).relu())
    lines = capsys.readouterr().err.strip().splitlines()
    # the silent phase is announced once, then one warning line says it fell back
    assert lines[0] == "hkt: torch.compile: compiling the child on its first call (this takes a while)"
    assert len(lines) == 2 and "could not compile the child" in lines[1] and "runs eagerly" in lines[1]
    assert not is_compiled(model) and not report.compiled
    assert report.to_dict()["compile_fallbacks"]["child"].startswith("BackendCompilerFailed")
    assert list(model.state_dict()) == ["layer.weight", "layer.bias"]


def test_a_family_that_cannot_compile_trains_eagerly(capsys):
    eager, family = _families()
    report = CompileReport()
    compile_family(family, report, backend=_failing_backend)
    inputs, target = _batch()
    eager.train(), family.train()
    a, b = eager(*inputs), family(*inputs)
    assert all(x is None or torch.equal(x, y) for x, y in zip(a, b))
    assert "could not compile the Family's lockstep step" in capsys.readouterr().err
    assert not report.compiled and not is_compiled(family)


def test_eval_mode_and_uncompile_use_the_interpreter():
    _, family = _families()
    calls = []
    report = CompileReport()
    compile_family(family, report, backend=lambda gm, ex: calls.append(1) or gm.forward)
    inputs, _ = _batch()
    family.eval()
    family(*inputs)
    assert not calls and not report.ran
    family.train()
    family(*inputs)
    assert calls and report.compiled
    uncompile(family)
    assert not is_compiled(family)


# -- export-traced Families ----------------------------------------------------------------------

class ShapeGated(nn.Module):
    """A branch on a size (torch.fx cannot trace it: torch.export does), BatchNorm (its buffers are
    read and updated through get_attr in the export graph) and a dict of outputs."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.head = nn.Linear(width, 5)

    def forward(self, x):
        h = self.stem(x)
        if h.shape[-1] > 4:
            h = self.body(h) + h
        pooled = h.mean((2, 3))
        return {"features": pooled, "logits": self.head(pooled)}


EXPORT_POINTS = [("stem.0", "stem.0"), ("mean", "mean"), ("head", "head")]


def _export_families() -> tuple[Family, Family]:
    torch.manual_seed(0)
    parent, child = ShapeGated(8).eval(), ShapeGated(4)
    made = []
    for _ in range(2):
        torch.manual_seed(1)
        made.append(Family(copy.deepcopy(parent), copy.deepcopy(child), EXPORT_POINTS, HKTConfig(lam=0.5),
                           example_inputs=torch.randn(2, 1, 6, 6), task=Task(), manager=CORE))
    assert made[0]._cg.gm.meta.get("hkt_backend") == "export"
    return made[0], made[1]


def test_recorded_step_of_an_export_graph_matches_the_interpreter_bitwise():
    eager, recorded = _export_families()
    x, target = torch.randn(6, 1, 6, 6, generator=torch.Generator().manual_seed(3)), torch.arange(6) % 5
    step = recorded.record_step(x)
    for family in (eager, recorded):
        family.train()
    for _ in range(2):
        out_a, raw = eager(x), step(x)
        assert isinstance(raw[0], dict), "the step returns what the model returns, not the graph's flat outputs"
        out_b = recorded.output(*raw)
        for a, b in zip(out_a, out_b):
            assert (a is None) == (b is None)
            assert a is None or torch.equal(a, b)
        eager.loss(out_a, target).backward()
        recorded.loss(out_b, target).backward()
    for (name, p), q in zip(eager.named_parameters(), recorded.parameters()):
        assert (p.grad is None) == (q.grad is None), name
        assert p.grad is None or torch.equal(p.grad, q.grad), name
    for (name, a), b in zip(eager.state_dict().items(), recorded.state_dict().values()):
        assert torch.equal(a, b), name
    assert int(recorded.child.stem[1].num_batches_tracked) == 2   # the native stream's updates only


def test_an_export_traced_family_compiles_and_gives_the_uncompiled_loss(capsys):
    eager, compiled = _export_families()
    report = CompileReport()
    compile_family(compiled, report, backend="eager")
    x, target = torch.randn(6, 1, 6, 6, generator=torch.Generator().manual_seed(3)), torch.arange(6) % 5
    for family in (eager, compiled):
        family.train()
    losses = [family.loss(family(x), target) for family in (eager, compiled)]
    assert report.compiled and report.to_dict()["compile_fallbacks"] == {}
    assert "could not compile" not in capsys.readouterr().err
    torch.testing.assert_close(losses[0], losses[1], rtol=0, atol=1e-6)


def test_a_step_that_cannot_be_recorded_runs_eagerly_after_one_line_that_says_so(capsys, monkeypatch):
    eager, family = _export_families()

    def unrecordable(*inputs):
        raise NotImplementedError("argument of type: <class 'torch.fx.node.Node'>")

    monkeypatch.setattr(family, "record_step", unrecordable)
    report = CompileReport()
    compile_family(family, report, backend=_failing_backend)
    x = torch.randn(6, 1, 6, 6)
    eager.train(), family.train()
    a, b = eager(x), family(x)
    assert all(u is None or torch.equal(u, v) for u, v in zip(a, b))
    family(x)   # said once
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and "could not compile the Family's lockstep step" in lines[1]
    assert "could not be recorded as one graph: NotImplementedError" in lines[1] and "runs eagerly" in lines[1]
    assert not report.compiled and not is_compiled(family)
    assert report.to_dict()["compile_fallbacks"]["Family's lockstep step"].startswith("the step could not be recorded")
