"""Family behaviour a training run relies on, on four model shapes: a residual chain, a U-Net
with skips, a two-input model with parallel branches and a token model.

Forward shapes; L3's gradient reaches the child; the parent gets no gradient and stays bitwise
unchanged over optimiser steps; the child's BatchNorm buffers match a native-only run; export
gives back the child alone; shared child compute runs once and the parent's unreached part runs
without autograd.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hkt_core
from hkt_core import AlignmentError, ConfigError, HKTConfig, RegistryError, builtins
from hkt_core.family import Family, HKTLoss, HKTOutput
from family_support import CORE, ToyTask


def conv_bn(cin, cout, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ResBlock(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + x)


class ResChain(nn.Module):
    def __init__(self, width, blocks=2, classes=4):
        super().__init__()
        self.stem = conv_bn(3, width)
        self.layer1 = nn.Sequential(*[ResBlock(width) for _ in range(blocks)])
        self.down = conv_bn(width, 2 * width, stride=2)
        self.layer2 = nn.Sequential(*[ResBlock(2 * width) for _ in range(blocks)])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x):
        x = self.layer2(self.down(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


class UNet(nn.Module):
    """Two-level U-Net: the encoder's first stage is read again by the decoder (skip)."""

    def __init__(self, width, classes=3):
        super().__init__()
        self.enc1 = conv_bn(3, width)
        self.enc2 = conv_bn(width, 2 * width, stride=2)
        self.up = nn.ConvTranspose2d(2 * width, width, 2, stride=2)
        self.dec = conv_bn(2 * width, width)
        self.out = nn.Conv2d(width, classes, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        d = self.dec(torch.cat([self.up(e2), e1], 1))
        return self.out(d)


class TwoInput(nn.Module):
    """Two inputs, two parallel branches, fused."""

    def __init__(self, width, classes=4):
        super().__init__()
        self.branch_a = conv_bn(3, width)
        self.branch_b = conv_bn(1, width)
        self.fuse = conv_bn(2 * width, width)
        self.fc = nn.Linear(width, classes)

    def forward(self, a, b):
        f = self.fuse(torch.cat([self.branch_a(a), self.branch_b(b)], 1))
        return self.fc(f.mean((2, 3)))


class TokenNet(nn.Module):
    def __init__(self, dim, classes=4):
        super().__init__()
        self.embed = nn.Linear(6, dim)
        self.norm1, self.mlp1 = nn.LayerNorm(dim), nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(),
                                                                 nn.Linear(2 * dim, dim))
        self.norm2 = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        t = self.embed(x)
        t = t + self.mlp1(self.norm1(t))
        return self.head(self.norm2(t).mean(1))


def _unet_target(n, gen):
    return torch.randint(0, 3, (n, 8, 8), generator=gen)


CASES = {
    # name: (parent, child, pairs, inputs(batch, gen), target(batch, gen), first shared child module)
    "residual": (lambda: ResChain(8), lambda: ResChain(4, blocks=1),
                 [("layer1.1.bn2", "layer1.0.bn2"), ("flatten", "flatten"), ("fc", "fc")],
                 lambda n, g: (torch.randn(n, 3, 8, 8, generator=g),),
                 lambda n, g: torch.randint(0, 4, (n,), generator=g)),
    "unet": (lambda: UNet(8), lambda: UNet(4), [("enc1.2", "enc1.2"), ("enc2.2", "enc2.2"), ("out", "out")],
             lambda n, g: (torch.randn(n, 3, 8, 8, generator=g),), _unet_target),
    "two_input": (lambda: TwoInput(6), lambda: TwoInput(3),
                  [("branch_b.2", "branch_b.2"), ("branch_a.2", "branch_a.2"), ("fc", "fc")],
                  lambda n, g: (torch.randn(n, 3, 6, 6, generator=g), torch.randn(n, 1, 6, 6, generator=g)),
                  lambda n, g: torch.randint(0, 4, (n,), generator=g)),
    "tokens": (lambda: TokenNet(8), lambda: TokenNet(4), [("embed", "embed"), ("add", "add"), ("head", "head")],
               lambda n, g: (torch.randn(n, 5, 6, generator=g),), lambda n, g: torch.randint(0, 4, (n,), generator=g)),
}


class SegToyTask(ToyTask):
    def inherit_loss(self, prediction, target):
        one_hot = F.one_hot(target, prediction.shape[1]).movedim(-1, 1).to(prediction.dtype)
        return (prediction.softmax(1) - one_hot).abs().mean()


def build(case, config=None, seed=0, fold_parent_bn=True):
    make_parent, make_child, pairs, make_inputs, make_target = CASES[case]
    torch.manual_seed(seed)
    parent, child = make_parent(), make_child()
    gen = torch.Generator().manual_seed(seed)
    example = make_inputs(2, gen)
    task = SegToyTask() if case == "unet" else ToyTask()
    fam = Family(parent, child, pairs, config or HKTConfig(), example_inputs=example, task=task, manager=CORE,
                 fold_parent_bn=fold_parent_bn)
    return fam, parent, child, lambda n: make_inputs(n, gen), lambda n: make_target(n, gen)


@pytest.mark.parametrize("case", list(CASES))
def test_forward_shapes(case):
    fam, parent, child, inputs, _ = build(case)
    x = inputs(3)
    out = fam(*x)
    assert isinstance(out, HKTOutput)
    with torch.no_grad():
        expected_child, expected_parent = child.eval()(*x).shape, parent(*x).shape
    assert out.native.shape == out.inherited.shape == expected_child
    assert out.parent_head.shape == expected_parent


@pytest.mark.parametrize("case", list(CASES))
def test_l3_gradient_reaches_the_child_and_the_parent_gets_none(case):
    fam, parent, child, inputs, target = build(case)
    x, y = inputs(4), target(4)
    out = fam(*x)
    l3 = fam.task.inherit_loss(out.parent_head, y)
    params = [p for p in child.parameters()]
    grads = torch.autograd.grad(l3, params, allow_unused=True, retain_graph=True)
    reached = [g for g in grads if g is not None and g.abs().sum() > 0]
    assert reached, "L3 must reach child parameters through the parent's later blocks"
    fam.loss(out, y).backward()
    assert all(p.grad is None for p in parent.parameters())
    assert all(not p.requires_grad for p in parent.parameters())
    assert all(p.grad is not None for p in fam.points.parameters())


@pytest.mark.parametrize("case", list(CASES))
def test_parent_is_bitwise_unchanged_and_child_bn_follows_the_native_stream(case):
    fam, parent, child, inputs, target = build(case)
    parent_state = {k: v.clone() for k, v in parent.state_dict().items()}
    fam.train()
    assert not parent.training and child.training
    twin = copy.deepcopy(child)             # native-only run of the same child
    optimiser = torch.optim.SGD(fam.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    twin_optimiser = torch.optim.SGD(twin.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    for _ in range(3):
        x, y = inputs(4), target(4)
        out = fam(*x)
        optimiser.zero_grad()
        fam.loss(out, y).backward()
        # the twin sees exactly the child's weights, so its BN buffers must evolve identically
        with torch.no_grad():
            for p_twin, p_child in zip(twin.parameters(), child.parameters()):
                p_twin.copy_(p_child)
        twin(*x)
        optimiser.step()
    for key, value in parent.state_dict().items():
        assert torch.equal(value, parent_state[key]), key
    child_buffers, twin_buffers = dict(child.named_buffers()), dict(twin.named_buffers())
    assert child_buffers or case == "tokens", "the convolutional test models have BatchNorm buffers"
    for name, buf in child_buffers.items():
        torch.testing.assert_close(buf, twin_buffers[name], rtol=0, atol=0, msg=name)
    del twin_optimiser


@pytest.mark.parametrize("case", list(CASES))
def test_export_child_is_the_child_alone(case):
    fam, parent, child, inputs, target = build(case)
    optimiser = torch.optim.SGD(fam.trainable_parameters(), lr=0.05)
    x, y = inputs(4), target(4)
    fam.loss(fam(*x), y).backward()
    optimiser.step()
    exported = fam.export_child()
    assert type(exported) is type(child)
    assert sum(p.numel() for p in exported.parameters()) == sum(p.numel() for p in child.parameters())
    assert exported.state_dict().keys() == child.state_dict().keys()
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in exported.modules())
    fam.eval()
    exported.eval()
    with torch.no_grad():
        torch.testing.assert_close(exported(*x), fam(*x).native, rtol=0, atol=0)
    # exported weights are the trained ones, and the copy is independent of the Family
    for (name, a), b in zip(exported.state_dict().items(), child.state_dict().values()):
        assert torch.equal(a, b), name
    assert next(exported.parameters()).data_ptr() != next(child.parameters()).data_ptr()


def test_shared_child_compute_runs_once_and_unreached_parent_runs_without_autograd():
    # unfolded parent: the hooks watch the parent's own convolutions
    fam, parent, child, inputs, _ = build("residual", fold_parent_bn=False)
    calls: dict[str, int] = {}
    grad_modes: dict[str, set[bool]] = {}

    def count(name):
        def hook(module, args, output):
            calls[name] = calls.get(name, 0) + 1
        return hook

    def record(name):
        def hook(module, args, output):
            grad_modes.setdefault(name, set()).add(torch.is_grad_enabled())
        return hook

    handles = [child.stem[0].register_forward_hook(count("stem")),
               child.layer2[0].conv1.register_forward_hook(count("layer2")),
               child.fc.register_forward_hook(count("fc")),
               parent.stem[0].register_forward_hook(record("stem")),
               parent.layer2[0].conv1.register_forward_hook(record("layer2")),
               parent.fc.register_forward_hook(record("fc"))]
    try:
        fam(*inputs(2))
    finally:
        for h in handles:
            h.remove()
    # before the first parent->child point: once; after it: native + inherited
    assert calls == {"stem": 1, "layer2": 2, "fc": 2}
    # parent blocks no child signal reaches run without autograd; after the first head point with it
    assert grad_modes == {"stem": {False}, "layer2": {True}, "fc": {True}}


def test_family_train_keeps_the_parent_in_eval_mode():
    fam, parent, child, inputs, _ = build("unet")
    fam.train()
    assert child.training and not parent.training
    assert not any(m.training for m in parent.modules())
    parent.train()             # even if someone flips it directly, forward puts it back
    fam(*inputs(2))
    assert not parent.training
    fam.eval()
    assert not child.training


def test_composite_loss_weights_the_three_parts():
    cfg = HKTConfig(alphas=(0.2, 0.6, 0.2), inherit_loss="mae")   # the paper's MAE in L1/L3 (task loss: below)
    fam, parent, child, inputs, target = build("residual", cfg)
    x, y = inputs(4), target(4)
    out = fam(*x)
    parts = fam.loss_parts(out, y)
    assert isinstance(parts, HKTLoss)
    task = ToyTask()
    torch.testing.assert_close(parts.l1, task.inherit_loss(out.inherited, y))
    torch.testing.assert_close(parts.l2, task.loss(out.native, y))
    torch.testing.assert_close(parts.l3, task.inherit_loss(out.parent_head, y))
    torch.testing.assert_close(parts.total, 0.2 * parts.l1 + 0.6 * parts.l2 + 0.2 * parts.l3)
    torch.testing.assert_close(fam.loss(out, y), parts.total)
    fam_task = Family(parent, child, CASES["residual"][2], HKTConfig(inherit_loss="task"),
                      example_inputs=x, task=task, manager=CORE)
    out = fam_task(*x)
    torch.testing.assert_close(fam_task.loss_parts(out, y).l1, task.loss(out.inherited, y))


def test_zero_weight_parts_are_logged_without_autograd():
    fam, *_ , inputs, target = build("residual", HKTConfig(alphas=(0.0, 1.0, 0.0)))
    parts = fam.loss_parts(fam(*inputs(2)), target(2))
    assert not parts.l1.requires_grad and not parts.l3.requires_grad and parts.total.requires_grad
    torch.testing.assert_close(parts.total, parts.l2)


class ToyPlugin:
    @hkt_core.hookimpl
    def hkt_register_losses(self, registry):
        registry.add("toy", ToyTask())


def test_task_comes_from_the_losses_registry():
    manager = hkt_core.get_plugin_manager(autoload=False, plugins={"core": builtins, "toy": ToyPlugin()})
    torch.manual_seed(0)
    fam = Family(ResChain(8), ResChain(4, blocks=1), CASES["residual"][2], HKTConfig(),
                 example_inputs=torch.randn(2, 3, 8, 8), manager=manager, task="toy")
    assert isinstance(fam.task, ToyTask)
    bad = Family(ResChain(8), ResChain(4, blocks=1), CASES["residual"][2], HKTConfig(),
                 example_inputs=torch.randn(2, 3, 8, 8), manager=manager, task="toys")
    with pytest.raises(RegistryError, match="unknown tasks 'toys'"):  # the kind is named 'tasks' now
        _ = bad.task


def test_alignment_record_supplies_the_example_inputs():
    from hkt_core.align import Alignment, BlockPair

    torch.manual_seed(0)
    record = Alignment(pairs=[BlockPair("stem.2", "stem.2", (1, 8, 8, 8), (1, 4, 8, 8), 1.0),
                              BlockPair("fc", "fc", (1, 4), (1, 4), 1.0)],
                       input_shapes=[(2, 3, 8, 8)])
    fam = Family(ResChain(8), ResChain(4, blocks=1), record, HKTConfig(), task=ToyTask(), manager=CORE)
    assert fam(torch.randn(2, 3, 8, 8)).inherited.shape == (2, 4)


# -- failure paths --------------------------------------------------------------------------------
def _family(pairs, config=HKTConfig(), example=True):
    torch.manual_seed(0)
    return Family(ResChain(8), ResChain(4, blocks=1), pairs, config,
                  example_inputs=torch.randn(2, 3, 8, 8) if example else None, task=ToyTask(), manager=CORE)


@pytest.mark.parametrize("pairs, config, error, message", [
    ([("stem.2", "stem.9"), ("fc", "fc")], HKTConfig(), AlignmentError, "child: unknown node 'stem.9'; closest: "),
    ([("fc", "fc")], HKTConfig(), AlignmentError, "at least two aligned pairs"),
    ([("stem.2", "stem.2", "x"), ("fc", "fc")], HKTConfig(), AlignmentError, r"must be \(parent_name, child_name\)"),
    ([("layer2.1.bn2", "layer2.0.bn2"), ("stem.2", "stem.2"), ("fc", "fc")], HKTConfig(), AlignmentError,
     "not order-preserving"),
    ([("stem.2", "stem.2"), ("fc", "fc")], HKTConfig(directions=("both", "both")), ConfigError,
     "names 2 points but the alignment has 1"),
    ([("flatten", "flatten"), ("fc", "fc")], HKTConfig(tokens="spatial"), ConfigError, "identically zero"),
    ([("stem.2", "stem.2"), ("fc", "fc")], HKTConfig(mixture="none"), ConfigError, "a1 must be 0"),
    ([("stem.2", "stem.2"), ("fc", "fc")], HKTConfig(mixture="mse"), ConfigError, "a3 must be 0"),
    ([("stem.2", "stem.2"), ("fc", "fc")], HKTConfig(mixture="gaa"), RegistryError, "unknown mixtures 'gaa'"),
    ([("stem.2", "stem.2"), ("fc", "fc")], HKTConfig(transfer="identity"), AlignmentError,
     "mixing point 0 .*needs equal shapes"),
])
def test_bad_alignments_and_configs_fail_clearly(pairs, config, error, message):
    with pytest.raises(error, match=message):
        _family(pairs, config)


def test_example_inputs_are_required_without_a_record():
    with pytest.raises(AlignmentError, match="pass example_inputs"):
        _family([("stem.2", "stem.2"), ("fc", "fc")], example=False)


def test_several_donor_nodes_need_a_combining_extractor():
    pairs = [(["layer1.0.bn2", "layer1.1.bn2"], "layer1.0.bn2"), ("fc", "fc")]
    with pytest.raises(ValueError, match="exactly one value"):
        _family(pairs)
    fam = _family(pairs, HKTConfig(extractor="concat"))
    assert fam.points[0].to_child_transfer.proj.in_channels == 16
    assert fam(torch.randn(2, 3, 8, 8)).inherited.shape == (2, 4)


class TwoHeads(nn.Module):
    """Returns (features, logits): the adapter's prediction (the last tensor) is the logits."""

    def __init__(self, width):
        super().__init__()
        self.body = conv_bn(3, width)
        self.fc = nn.Linear(width, 4)

    def forward(self, x):
        f = self.body(x).mean((2, 3))
        return f, self.fc(f)


def test_models_with_several_outputs_use_the_adapters_prediction():
    torch.manual_seed(0)
    parent, child = TwoHeads(6), TwoHeads(3)
    fam = Family(parent, child, [("body", "body"), ("fc", "fc")], HKTConfig(), example_inputs=torch.randn(2, 3, 6, 6),
                 task=ToyTask(), manager=CORE)
    x = torch.randn(3, 3, 6, 6)
    out = fam(x)
    assert out.native.shape == out.inherited.shape == out.parent_head.shape == (3, 4)
    fam.eval()
    with torch.no_grad():
        torch.testing.assert_close(fam(x).native, child(x)[1], rtol=0, atol=0)


class ConvBNBlock(nn.Module):
    """Kept opaque by its adapter: the tracer records one call, BatchNorm inside."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


class LeafNet(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.a = ConvBNBlock(3, width)
        self.b = ConvBNBlock(width, width)
        self.fc = nn.Linear(width, 4)

    def forward(self, x):
        return self.fc(self.b(self.a(x)).mean((2, 3)))


class LeafAdapter(hkt_core.Adapter):
    model_classes = (LeafNet,)
    leaf_modules = (ConvBNBlock,)


class LeafPlugin:
    @hkt_core.hookimpl
    def hkt_register_adapters(self, registry):
        registry.add("leafnet", LeafAdapter())


def test_child_bn_inside_leaf_modules_follows_the_native_stream():
    manager = hkt_core.get_plugin_manager(autoload=False, plugins={"core": builtins, "leaf": LeafPlugin()})
    torch.manual_seed(0)
    parent, child = LeafNet(6), LeafNet(3)
    fam = Family(parent, child, [("a", "a"), ("fc", "fc")], HKTConfig(), example_inputs=torch.randn(2, 3, 6, 6),
                 task=ToyTask(), manager=manager)
    assert "b" in fam._cg.by_name and "b.bn" not in fam._cg.by_name     # the block stayed opaque
    twin = copy.deepcopy(child)
    for _ in range(2):
        x = torch.randn(4, 3, 6, 6)
        fam(x)
        twin(x)
    for (name, buf), twin_buf in zip(child.named_buffers(), twin.buffers()):
        torch.testing.assert_close(buf, twin_buf, rtol=0, atol=0, msg=name)
    assert child.b.bn.num_batches_tracked.item() == 2
