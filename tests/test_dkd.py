"""The ``dkd`` method (Decoupled Knowledge Distillation, Zhao et al. 2022): its loss against float64
references written out here (from probabilities, and mdistiller's masked formulation), the
warm-up, exact resume and two gloo processes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import hkt_core
from hkt_core.config import HKTConfig, TrainConfig
from hkt_core.errors import ConfigError
from hkt_core.pairs import PairCard
from hkt_core.train.method import MethodContext
from hkt_core.train.methods import dkd_loss
from method_runs import ddp_matches_one_process, resumes_exactly
from test_fitnet import _tiny_forward
from test_train_support import card_dict, make_child, make_parent


def _card(name: str = "dkd-pair") -> PairCard:
    return PairCard.from_dict(card_dict(name))


def _context(task: str = "classification", **options) -> MethodContext:
    torch.manual_seed(0)
    return MethodContext(child=make_child(), task=hkt_core.lookup("tasks", task), train=TrainConfig(),
                         hkt=HKTConfig(), card=_card(), parent=make_parent().eval().requires_grad_(False),
                         example_inputs=(torch.randn(2, 1, 8, 8),), options=options)


def _reference(student, teacher, y, alpha, beta, t):
    """DKD from the probabilities, float64: TCKD on (p_y, 1 - p_y), NCKD on the renormalised rest."""
    ps, pt = F.softmax(student / t, 1), F.softmax(teacher / t, 1)
    rows = torch.arange(len(y))
    ps_y, pt_y = ps[rows, y], pt[rows, y]
    tckd = pt_y * torch.log(pt_y / ps_y) + (1 - pt_y) * torch.log((1 - pt_y) / (1 - ps_y))
    other = torch.ones_like(ps, dtype=torch.bool)
    other[rows, y] = False
    qs = ps[other].view(len(y), -1) / (1 - ps_y)[:, None]
    qt = pt[other].view(len(y), -1) / (1 - pt_y)[:, None]
    nckd = (qt * torch.log(qt / qs)).sum(1)
    return t * t * (alpha * tckd + beta * nckd).mean()


def _mdistiller(student, teacher, y, alpha, beta, t):
    """mdistiller's dkd_loss (target masked by subtracting 1000), float64."""
    gt = torch.zeros_like(student).scatter_(1, y[:, None], 1)
    ps, pt = F.softmax(student / t, 1), F.softmax(teacher / t, 1)
    cat = lambda p: torch.stack([(p * gt).sum(1), (p * (1 - gt)).sum(1)], 1)  # noqa: E731
    tckd = F.kl_div(torch.log(cat(ps)), cat(pt), reduction="sum") * t ** 2 / len(y)
    nckd = F.kl_div(F.log_softmax(student / t - 1000.0 * gt, 1), F.softmax(teacher / t - 1000.0 * gt, 1),
                    reduction="sum") * t ** 2 / len(y)
    return alpha * tckd + beta * nckd


def test_dkd_loss_matches_float64_references():
    gen = torch.Generator().manual_seed(0)
    student = 3 * torch.randn(16, 10, generator=gen, dtype=torch.float64)
    teacher = 3 * torch.randn(16, 10, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 10, (16,), generator=gen)
    got = dkd_loss(student, teacher, y, alpha=0.7, beta=8.0, temperature=4.0)
    assert float(got) == pytest.approx(float(_reference(student, teacher, y, 0.7, 8.0, 4.0)), rel=1e-12)
    assert float(got) == pytest.approx(float(_mdistiller(student, teacher, y, 0.7, 8.0, 4.0)), rel=1e-10)
    # alpha = beta = 1 on one class pair is not KD (the decoupling drops a (1 - p_y) factor from NCKD)
    kd = F.kl_div(F.log_softmax(student / 4, 1), F.softmax(teacher / 4, 1), reduction="batchmean") * 16
    assert float(dkd_loss(student, teacher, y, alpha=1.0, beta=1.0, temperature=4.0)) != pytest.approx(float(kd))


def test_the_step_is_the_task_loss_plus_the_warmed_up_dkd_term():
    ctx = _context(alpha=0.5, beta=4.0, temperature=2.0, warmup_epochs=4)
    dkd = hkt_core.lookup("methods", "dkd")(ctx)
    x, y = torch.randn(6, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2])
    w = {f"c.{k}": v.double() for k, v in ctx.child.state_dict().items()}
    w |= {f"p.{k}": v.double() for k, v in ctx.parent.state_dict().items()}
    child, parent = _tiny_forward(w, "c.", x.double())["head"], _tiny_forward(w, "p.", x.double())["head"]
    term = _reference(child, parent, y, 0.5, 4.0, 2.0)
    for epoch, warm in ((0, 0.25), (2, 0.75), (3, 1.0), (9, 1.0)):
        dkd.on_epoch_start(epoch)
        dkd.train(True)
        out = dkd.training_step((x,), y)
        expected = F.cross_entropy(child, y) + warm * term
        assert float(out.loss.detach()) == pytest.approx(float(expected), rel=1e-5), epoch
        # a KL between close float32 distributions: its own relative rounding is ~1e-4
        assert out.logs["dkd"] == pytest.approx(float(term), rel=1e-3, abs=1e-7)
    out.loss.backward()
    assert all(p.grad is None for p in ctx.parent.parameters())


def test_options_and_tasks_it_does_not_apply_to_are_one_line_refusals():
    method = hkt_core.lookup("methods", "dkd")
    assert method.default_options == {"alpha": 1.0, "beta": 8.0, "temperature": 4.0, "warmup_epochs": 20}
    with pytest.raises(ConfigError, match=r"^method option temperature = 0 is invalid: a number > 0$"):
        method(_context(temperature=0))
    with pytest.raises(ConfigError, match=r"^method option warmup_epochs = -1 is invalid: an integer >= 0$"):
        method(_context(warmup_epochs=-1))
    with pytest.raises(ConfigError, match=r"^dkd decouples class scores .* not 'regression'$"):
        method(_context("regression"))


def test_samples_the_task_ignores_take_no_part():
    from hkt_core.tasks import ClassificationTask

    ctx = _context(warmup_epochs=0)
    ctx.task = ClassificationTask(ignore_index=-1)
    dkd = hkt_core.lookup("methods", "dkd")(ctx)
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        all_kept = dkd.training_step((x[:2],), torch.tensor([0, 2])).logs["dkd"]
        some_ignored = dkd.training_step((x,), torch.tensor([0, 2, -1, -1])).logs["dkd"]
        none_kept = dkd.training_step((x,), torch.tensor([-1, -1, -1, -1])).logs["dkd"]
    assert some_ignored == pytest.approx(all_kept) and none_kept == 0.0


def test_dkd_resumes_exactly_and_exports_a_plain_child(tmp_path, isolated_home):
    run = resumes_exactly(_card(), "dkd", tmp_path, "dkd", warmup_epochs=2)
    assert run.config["method_options"]["warmup_epochs"] == 2


@pytest.mark.subprocess
def test_dkd_on_two_gloo_processes_matches_one(isolated_home, tmp_path):
    ddp_matches_one_process(_card("dkd-ddp"), "dkd", isolated_home, tmp_path, "method.warmup_epochs=1")
