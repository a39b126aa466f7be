"""The cheaper frozen parent and the fused Genetic Attention: exact against plain references.

- Genetic Attention's fused path (contiguous 4-D inputs) against the float64 reference and the
  legacy path (3-D views) it replaced;
- BatchNorm folding (hkt_core.lockstep.fold) on a copy: the parent bitwise unchanged, the outputs equal to
  float32 rounding, the names kept, the switch off leaves the Family as before;
- the interpreter's no-grad regions: the same grad modes per node as one region per node;
- the numerics switches in the run identity: old runs read as recorded, a resume keeps them.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hkt_core import HKTConfig, builtins, get_plugin_manager
from hkt_core.align.record import BlockPair
from hkt_core.etm.attention import (attention_path, current_attention_path, genetic_attention, vector_cost,
                                    wide_vector_notes)
from hkt_core.family import Family
from hkt_core.lockstep.fold import fold_batchnorm, foldable_pairs, folded_conv, folded_copy, folded_parent
from hkt_core.train import identity
from test_etm_operators import reference_ga  # Eq. 2 in float64, one sample at a time

CORE = get_plugin_manager(autoload=False, plugins={"core": builtins})


@pytest.mark.parametrize("shape,layout", [((2, 8, 6, 5), "spatial"), ((2, 8, 6, 5), "channel"),
                                          ((3, 16), "channel"), ((2, 4, 7), "spatial")])
def test_fused_path_matches_the_float64_reference_and_the_legacy_path(shape, layout):
    gen = torch.Generator().manual_seed(3)
    q, v = torch.randn(*shape, generator=gen, dtype=torch.float64), torch.randn(*shape, generator=gen, dtype=torch.float64)
    want = reference_ga(q, v, layout)
    assert current_attention_path() == "fused"
    fused = genetic_attention(q, v, layout)
    with attention_path("legacy"):
        legacy = genetic_attention(q, v, layout)
    assert current_attention_path() == "fused"
    torch.testing.assert_close(fused, want, rtol=0, atol=1e-12)
    torch.testing.assert_close(legacy, want, rtol=0, atol=1e-12)
    torch.testing.assert_close(genetic_attention(q.float(), v.float(), layout).double(), want, rtol=1e-4, atol=1e-5)
    # gradients too
    qg, vg = q.clone().requires_grad_(), v.clone().requires_grad_()
    genetic_attention(qg, vg, layout).square().sum().backward()
    qr, vr = q.clone().requires_grad_(), v.clone().requires_grad_()
    reference_ga(qr, vr, layout).square().sum().backward()
    torch.testing.assert_close(qg.grad, qr.grad, rtol=0, atol=1e-10)
    torch.testing.assert_close(vg.grad, vr.grad, rtol=0, atol=1e-10)


def test_attention_path_refuses_unknown_paths():
    with pytest.raises(ValueError, match="must be one of fused, legacy"):
        with attention_path("flash"):
            pass


def test_fused_spatial_attention_saves_no_tokens_by_tokens_matrix():
    """What the fused kernel buys: autograd keeps no N x N attention matrix (the legacy path does)."""
    q = torch.randn(2, 16, 32, 32, requires_grad=True)
    v = torch.randn(2, 16, 32, 32, requires_grad=True)

    def saved(path):
        sizes = []

        def pack(t):
            sizes.append(t.numel())
            return t

        with attention_path(path), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            genetic_attention(q, v, "spatial")
        return max(sizes)

    tokens = 32 * 32
    assert saved("legacy") >= 2 * tokens * tokens
    assert saved("fused") < tokens * tokens


# -- BatchNorm folding ----------------------------------------------------------------------------
class Net(nn.Module):
    """Convolutions followed by BatchNorm, one whose output is also read elsewhere (not foldable),
    a shortcut with Python control flow on the rank, and a classifier."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.conv3, self.bn3 = nn.Conv2d(8, 8, 1, groups=2), nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        y = self.conv2(x)
        x = F.relu(self.bn2(y) + y)           # conv2's output has two readers: stays unfolded
        x = F.relu(self.bn3(self.conv3(x)))
        return self.fc(x.mean((2, 3)))


def _randomised(model: nn.Module) -> nn.Module:
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen))
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=gen))
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen))
    return model.eval()


def test_folded_conv_equals_conv_then_batchnorm_in_float64():
    conv, bn = nn.Conv2d(4, 6, 3, padding=1, groups=2), _randomised(nn.Sequential(nn.BatchNorm2d(6)))[0]
    conv, bn = conv.double(), bn.double()
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(folded_conv(conv, bn)(x), bn(conv(x)), rtol=1e-12, atol=1e-12)


def test_folding_works_on_a_copy_and_keeps_outputs_to_float32_rounding():
    torch.manual_seed(0)
    model = _randomised(Net())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded, count = folded_copy(model)
    assert count == 2                                     # bn1, bn3; bn2 reads a value read elsewhere
    x = torch.randn(4, 3, 6, 6)
    with torch.no_grad():
        want = copy.deepcopy(model).double()(x.double())
        got, plain = folded(x), model(x)
    # as close to the float64 result as the unfolded float32 network is
    scale = want.abs().max().item()
    assert (got.double() - want).abs().max().item() <= 1e-5 * scale
    assert (plain.double() - want).abs().max().item() <= 1e-5 * scale
    # the parent and its state dict are bitwise unchanged, and its modules are its own
    assert model.state_dict().keys() == before.keys()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert isinstance(model.bn1, nn.BatchNorm2d) and model.conv1.bias is None
    assert folded_parent(nn.Sequential(nn.Linear(3, 3))) is not None


def test_kept_nodes_are_not_folded():
    from torch import fx

    gm = fx.symbolic_trace(_randomised(Net()))
    conv1 = next(n for n in gm.graph.nodes if n.target == "conv1")
    assert len(foldable_pairs(gm)) == 2
    assert len(fold_batchnorm(gm, keep={conv1})) == 1
    assert isinstance(gm.bn1, nn.BatchNorm2d) and isinstance(gm.bn3, nn.Identity)


class Shortcut(nn.Module):
    def forward(self, x):
        if x.dim() == 3:          # control flow plain torch.fx cannot trace
            return x
        return x[:, :, ::1, ::1]


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv, self.bn, self.shortcut = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), Shortcut()

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)) + self.shortcut(x))


class Deep(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.layer1, self.layer2 = nn.Sequential(Block(8), Block(8)), nn.Sequential(Block(8))
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(self.layer2(self.layer1(self.stem(x))).mean((2, 3)))


def test_a_model_with_untraceable_control_flow_is_folded_around_it():
    model = _randomised(Deep())
    folded, count = folded_copy(model)
    assert count == 4
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-5, atol=1e-5)


def _vision_pair():
    from hkt_core.models import build_model
    from hkt_core.plugins import default_manager

    manager = default_manager()   # hkt-vision's CIFAR ResNets and their adapter (blocks are opaque)
    torch.manual_seed(0)
    return _randomised(build_model("resnet20", manager)), build_model("resnet20", manager), manager


@pytest.mark.parametrize("points", [[("layer1", "layer1"), ("pool", "pool"), ("fc", "fc")],
                                    [("layer2", "layer2"), ("fc", "fc")]])
def test_family_with_the_folded_parent_matches_the_unfolded_one(points):
    parent, child, manager = _vision_pair()
    before = {k: v.clone() for k, v in parent.state_dict().items()}
    x, y = torch.randn(3, 3, 16, 16), torch.randint(0, 10, (3,))
    fams = []
    for fold in (False, True):
        torch.manual_seed(1)
        fams.append(Family(parent, copy.deepcopy(child), points, HKTConfig(lam=0.5), example_inputs=x[:2],
                           manager=manager, fold_parent_bn=fold))
    plain, folded = fams
    assert not plain._folded and len(folded._folded) == 19      # every BatchNorm of ResNet-20
    assert plain.state_dict().keys() == folded.state_dict().keys()
    out_plain, out_folded = plain(x), folded(x)
    for a, b in zip(out_plain[:3], out_folded[:3]):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4 * a.abs().max().item())
    plain.loss(out_plain, y).backward()
    folded.loss(out_folded, y).backward()
    for (name, p), q in zip(plain.named_parameters(), folded.parameters()):
        if p.grad is not None:
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-3, atol=1e-4 * p.grad.abs().max().item(), msg=name)
    assert all(torch.equal(before[k], v) for k, v in parent.state_dict().items())


def test_folded_modules_follow_the_family_to_another_dtype():
    parent, child, manager = _vision_pair()
    fam = Family(parent, child, [("layer1", "layer1"), ("fc", "fc")], HKTConfig(),
                 example_inputs=torch.randn(2, 3, 16, 16), manager=manager)
    fam.double()
    assert fam._folded and all(p.dtype == torch.float64 for m in fam._folded for p in m.parameters())
    assert fam(torch.randn(2, 3, 16, 16, dtype=torch.float64)).native.dtype == torch.float64


# -- the interpreter's no-grad regions --------------------------------------------------------------
def test_nodes_outside_grad_run_without_autograd_in_regions():
    from hkt_core.adapters import GenericAdapter
    from hkt_core.lockstep import LockstepGraph

    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    graph = LockstepGraph(model, GenericAdapter(), "parent")
    nodes = graph.sorted(graph.nodes)
    grad = {nodes[2], nodes[3]}                          # a run in the middle needs autograd
    env: dict = {}
    graph.bind_inputs(env, (torch.randn(3, 4),))
    graph.run(nodes, env, env.__getitem__, set(), grad=grad)
    needs = [isinstance(env[n], torch.Tensor) and env[n].requires_grad for n in nodes[:-1]]
    assert needs == [False, False, True, True, False]    # exactly the nodes in ``grad`` have autograd
    env = {}
    graph.bind_inputs(env, (torch.randn(3, 4),))
    graph.run(nodes, env, env.__getitem__, set(), grad=set())
    assert not any(isinstance(env[n], torch.Tensor) and env[n].requires_grad for n in nodes)


# -- run identity -----------------------------------------------------------------------------------
def test_runs_from_before_the_switches_read_as_recorded_and_resume_keeps_them(tmp_path):
    from hkt_core.config import to_toml

    old = {"method": "hkt", "train": {"epochs": 2, "lr": 0.1}}
    new = {"method": "hkt", "train": {"epochs": 2, "lr": 0.1, "fold_parent_bn": True, "fused_attention": True}}
    assert set(identity.differences(old, new)) == {"train.fold_parent_bn", "train.fused_attention"}
    (tmp_path / "config.toml").write_text(to_toml(old))
    assert identity.recorded_numerics(tmp_path) == {"fold_parent_bn": False, "fused_attention": False}
    assert identity.check_resume(tmp_path, new, epoch=1) == {}       # not refused, nothing rewritten
    assert "fold_parent_bn" not in (tmp_path / "config.toml").read_text()


def test_a_resumed_run_computes_with_its_recorded_switches(tmp_path, monkeypatch, isolated_home):
    """hkt.train(resume=True) under today's defaults continues an old run with its switches off."""
    import hkt_core
    from hkt_core.config import read_toml, to_toml
    from test_train_support import install_user_card

    seen = []
    real = Family.__init__

    def spy(self, *args, **kwargs):
        seen.append((kwargs.get("fold_parent_bn"), current_attention_path()))
        real(self, *args, **kwargs)

    card = install_user_card(isolated_home)
    hkt_core.reset_default_manager()
    parent = hkt_core.train(card.name, "parent", out=tmp_path / "parent", epochs=1, progress=False)
    out = tmp_path / "run"
    monkeypatch.setattr(Family, "__init__", spy)

    class Stop(Exception):
        pass

    def stop(epoch, record):
        raise Stop

    with pytest.raises(Stop):     # stopped after its first of two epochs
        hkt_core.train(card.name, "hkt", out=out, epochs=2, progress=False, callbacks=[stop],
                       parent_weights=parent.path / "child.safetensors")
    assert seen[-1] == (True, "fused")
    stored = read_toml(out / "config.toml")             # made to look like a run from before the switches
    for table in (stored["train"], stored["card"]["train"]):
        for key in ("fold_parent_bn", "fused_attention"):
            table.pop(key)
    (out / "config.toml").write_text(to_toml(stored))
    hkt_core.train(card.name, "hkt", out=out, epochs=2, progress=False, resume=True,
                   parent_weights=parent.path / "child.safetensors")
    assert seen[-1] == (False, "legacy")
    assert "fold_parent_bn" not in (out / "config.toml").read_text()


# -- wide vectors ---------------------------------------------------------------------------------
def test_wide_vector_notes_name_the_cost_and_the_cheaper_choices():
    pairs = [BlockPair("layer4", "layer4", (1, 2048, 2, 2), (1, 512, 2, 2), 1.0),
             BlockPair("pool", "pool", (1, 2048), (1, 512), 1.0), BlockPair("fc", "fc", (1, 10), (1, 10), 1.0)]
    notes = wide_vector_notes(pairs)
    assert len(notes) == 2 and "point 2 parent 'pool' is a 2048-wide vector" in notes[0]
    assert f"{vector_cost(2048) / 1e6:.1f}M" in notes[0] and "hkt.mixture=gate" in notes[0]
    assert vector_cost(2048) == 2 * 2048 ** 2
    assert wide_vector_notes([BlockPair("pool", "pool", (1, 64), (1, 64), 1.0), pairs[-1]]) == []


def test_the_numerics_switches_leave_parent_cache_keys_as_they_were():
    """A parent trains alone (nothing to fold, no Genetic Attention): caches filled before stay valid."""
    import attrs

    from hkt_core.train.parents import parent_key, parent_train_config
    from test_parent_cache_key import card as make_card

    card = make_card()
    train = parent_train_config(card)
    key = parent_key(card, train)
    assert parent_key(card, attrs.evolve(train, fold_parent_bn=False, fused_attention=False)) == key


def test_loading_the_parents_weights_refolds():
    """The fold is a function of the weights: new parent weights (loaded into the parent, or into
    the Family holding it) reach the folded copies."""
    parent, child, manager = _vision_pair()
    x = torch.randn(2, 3, 16, 16)
    points = [("layer1", "layer1"), ("fc", "fc")]

    def family(p, fold=True):
        torch.manual_seed(2)
        return Family(p, copy.deepcopy(child), points, HKTConfig(), example_inputs=x, manager=manager,
                      fold_parent_bn=fold).eval()

    fam, teacher = family(parent), folded_parent(parent)
    other = copy.deepcopy(parent)
    for m in other.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_var.mul_(3.0)
            m.running_mean.add_(0.5)
    parent.load_state_dict(other.state_dict())          # straight into the parent
    with torch.no_grad():
        want = other(x)
        tol = 1e-4 * want.abs().max().item()
        torch.testing.assert_close(teacher(x), want, rtol=1e-4, atol=tol)
        head = family(parent, fold=False)(x).parent_head
        torch.testing.assert_close(fam(x).parent_head, head, rtol=1e-4, atol=1e-4 * head.abs().max().item())
    fresh = family(_randomised(copy.deepcopy(other)))   # other BatchNorm statistics
    for m in fresh.parent.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.add_(1.0)
    fresh.load_state_dict(fam.state_dict())             # through the Family
    with torch.no_grad():
        torch.testing.assert_close(fresh(x).parent_head, fam(x).parent_head)


WIDE_MODELS = """
from torch import nn


class Wide(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.body, self.act, self.head = nn.Linear(8, width), nn.ReLU(), nn.Linear(width, 3)

    def forward(self, x):
        return self.head(self.act(self.body(x)))


def parent():
    return Wide(1024)


def child():
    return Wide(16)
"""


def test_hkt_align_says_what_a_wide_vector_point_costs(tmp_path, monkeypatch, capsys):
    from hkt_core.cli.main import main

    (tmp_path / "wide_models.py").write_text(WIDE_MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["align", "wide_models:parent", "wide_models:child", "--input-shape", "2,8", "--pair", "act=act"]) == 0
    out = capsys.readouterr().out
    assert "note: point 1 parent 'act' is a 1024-wide vector" in out and "hkt.mixture=gate" in out
    assert "child 'act'" not in out                     # 16 wide: no note
