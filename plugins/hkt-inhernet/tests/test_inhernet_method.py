"""The ``inherit`` method under the Method protocol, driven as the trainer drives it."""

import pytest
import torch
import torch.nn.functional as F

from hkt_core.config import HKTConfig, TrainConfig
from hkt_core.errors import ConfigError
from hkt_core.models import count_parameters
from hkt_core.tasks import Task
from hkt_core.train.method import Method, MethodContext, StepOutput
from hkt_inhernet import InheritedLayer, restore
from hkt_inhernet.method import InheritMethod
from inhernet_models import small_cnn, tiny_cnn


class CrossEntropyTask(Task):
    """Cross-entropy and Hinton KD written out plainly; records the KD calls it receives."""

    name = "test-classification"

    def __init__(self):
        self.kd_calls = []

    def loss(self, prediction, target):
        return F.cross_entropy(prediction, target)

    def distill_loss(self, student, teacher, target, *, temperature=4.0, weight=0.9):
        self.kd_calls.append((temperature, weight, teacher.requires_grad))
        soft = F.kl_div(F.log_softmax(student / temperature, -1), F.softmax(teacher / temperature, -1),
                        reduction="batchmean") * temperature ** 2
        return (1 - weight) * F.cross_entropy(student, target) + weight * soft


def _context(options=None, parent=None, child=None, **train):
    parent = small_cnn(num_classes=4) if parent is None else parent
    parent.requires_grad_(False).eval()
    return MethodContext(child=tiny_cnn(num_classes=4) if child is None else child,
                         task=CrossEntropyTask(), train=TrainConfig(**train), hkt=HKTConfig(),
                         parent=parent, options=dict(options or {}))


def _batch():
    gen = torch.Generator().manual_seed(3)
    return (torch.randn(32, 3, 8, 8, generator=gen),), torch.randint(0, 4, (32,), generator=gen)


def test_builds_the_compressed_child_at_the_childs_budget():
    ctx = _context()
    template = ctx.child
    parent_state = {k: v.clone() for k, v in ctx.parent.state_dict().items()}
    method = InheritMethod(ctx)
    assert isinstance(method, Method) and InheritMethod.needs_parent
    child = method.deployed()
    assert child is ctx.child is method.trainable_module()
    assert child is not template and method.template is template
    assert count_parameters(child) <= count_parameters(template)
    assert any(isinstance(m, InheritedLayer) for m in child.modules())
    assert all(p.requires_grad for p in child.parameters())
    assert method.compression.params_after == count_parameters(child)
    # the parent is neither replaced nor changed
    assert all(torch.equal(parent_state[k], v) for k, v in ctx.parent.state_dict().items())
    assert not any(isinstance(m, InheritedLayer) for m in ctx.parent.modules())


def test_fine_tuning_lowers_the_loss_and_leaves_the_parent_alone():
    ctx = _context()
    method = InheritMethod(ctx)
    parent_state = {k: v.clone() for k, v in ctx.parent.state_dict().items()}
    optimizer = torch.optim.Adam(method.trainable_module().parameters(), lr=1e-2)
    inputs, target = _batch()
    method.train(True)
    losses = []
    for _ in range(20):
        optimizer.zero_grad()
        out = method.training_step(inputs, target)
        assert isinstance(out, StepOutput) and "task_loss" in out.logs
        out.loss.backward()
        optimizer.step()
        losses.append(out.loss.item())
    assert losses[-1] < 0.8 * losses[0]
    assert not ctx.parent.training
    assert all(torch.equal(parent_state[k], v) for k, v in ctx.parent.state_dict().items())
    # checkpoints are the deployed child's state dict; restore() rebuilds it from a fresh parent
    state = method.deployed().state_dict()
    rebuilt = restore(small_cnn(num_classes=4), state).eval()
    method.deployed().eval()
    torch.testing.assert_close(rebuilt(inputs[0]), method.deployed()(inputs[0]))


def test_kd_uses_the_tasks_distillation_loss_with_the_configured_temperature():
    ctx = _context({"kd": True}, kd_temperature=2.0, kd_weight=0.5)
    method = InheritMethod(ctx)
    inputs, target = _batch()
    out = method.training_step(inputs, target)
    assert ctx.task.kd_calls == [(2.0, 0.5, False)]  # the teacher's logits carry no graph
    out.loss.backward()
    assert "kd_loss" in out.logs
    assert all(p.grad is None for p in ctx.parent.parameters())


def test_default_options_are_what_a_run_config_stores():
    """The runner fills ctx.options from default_options (TOML values: no None); zeros mean unset."""
    import tomli_w

    tomli_w.dumps({"method": InheritMethod.default_options})
    ctx = _context(dict(InheritMethod.default_options))
    template_params = count_parameters(ctx.child)
    method = InheritMethod(ctx)
    assert method.policy.rule == "budget" and not method.kd
    assert count_parameters(method.deployed()) <= template_params
    method = InheritMethod(_context({**InheritMethod.default_options, "energy": 0.5, "exclude": ["fc1"]}))
    assert method.policy.rule == "energy" and "fc1" not in method.compression.ranks()


def test_checkpoint_rebuilds_from_the_cards_parent(models_on_path):
    ctx = _context()
    method = InheritMethod(ctx)
    card = type("Card", (), {"parent": f"{models_on_path}:small_cnn", "parent_options": {"num_classes": 4}})()
    rebuilt = InheritMethod.deployed_from_state(card, method.deployed().state_dict()).eval()
    x = _batch()[0][0]
    torch.testing.assert_close(rebuilt(x), method.deployed().eval()(x))


def test_explicit_compression_options_replace_the_childs_budget():
    ctx = _context({"rank": 3, "heads": 3})
    method = InheritMethod(ctx)
    assert method.policy.rule == "rank" and method.policy.heads == 3
    assert set(method.compression.ranks().values()) == {3}


def test_failures_say_what_is_wrong():
    ctx = _context()
    ctx.parent = None
    with pytest.raises(ConfigError, match="needs a trained parent"):
        InheritMethod(ctx)
    with pytest.raises(ConfigError, match="the child has [\\d,]+; use a smaller child"):
        InheritMethod(_context(child=small_cnn(num_classes=4)))
    with pytest.raises(ConfigError, match="unknown compression option"):
        InheritMethod(_context({"budjet": 0.2}))
    with pytest.raises(ConfigError, match="at most one of the options budget, rank, energy"):
        InheritMethod(_context({"budget": 0.2, "rank": 3}))
    with pytest.raises(ConfigError, match="option kd must be true or false"):
        InheritMethod(_context({"kd": "yes"}))
    with pytest.raises(ConfigError, match="cannot be met"):
        InheritMethod(_context({"budget": 0.01}))
