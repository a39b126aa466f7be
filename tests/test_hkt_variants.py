"""HKT variants: ``hkt-kd``, the lam schedule (``lam_schedule = "anneal"``) and the learned gate."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import hkt_core
from hkt_core.config import HKTConfig, TrainConfig
from hkt_core.errors import ConfigError
from hkt_core.etm import GeneticAttentionMixture
from hkt_core.train.method import MethodContext
from hkt_core.train.variants import ANNEAL_END, LearnedGateMixture, scheduled_lam
from test_etm_operators import reference_ga
from test_train_support import make_child, make_dataset, make_parent, tiny_card


def _ctx(method: str, hkt: HKTConfig, train: TrainConfig | None = None, **options) -> MethodContext:
    torch.manual_seed(0)
    return MethodContext(child=make_child(), task=hkt_core.lookup("losses", "classification"),
                         train=train or TrainConfig(epochs=8), hkt=hkt, card=tiny_card(),
                         parent=make_parent().eval().requires_grad_(False), example_inputs=(torch.randn(2, 1, 8, 8),),
                         options={"lam_schedule": "constant", **options})


def _batch(n: int = 12):
    bundle = make_dataset(n_train=n, n_test=3)
    return (torch.stack([bundle.train[i][0] for i in range(n)]),
            torch.stack([bundle.train[i][1] for i in range(n)]))


def test_annealed_lam_falls_linearly_to_zero_and_stays_there():
    epochs = 8
    end = ANNEAL_END * epochs  # 6
    values = [scheduled_lam(0.6, "anneal", e, epochs) for e in range(epochs)]
    assert values == pytest.approx([0.6 * max(0.0, 1 - e / end) for e in range(epochs)])
    assert values[0] == 0.6 and values[6] == 0.0 and values[7] == 0.0
    assert all(a > b for a, b in zip(values[:6], values[1:7]))
    assert [scheduled_lam(0.6, "constant", e, epochs) for e in range(epochs)] == [0.6] * epochs
    assert scheduled_lam(0.5, "anneal", 0, 1) == 0.5


def test_the_hkt_method_sets_every_mixture_lam_per_epoch():
    method = hkt_core.lookup("methods", "hkt")(_ctx("hkt", HKTConfig(), lam_schedule="anneal"))
    mixtures = [m for m in method.family.modules() if isinstance(m, GeneticAttentionMixture)]
    points = [m for p in method.family.points for m in (p.to_child_mixture, p.to_parent_mixture) if m is not None]
    assert len(points) == 2 and all(any(m is q for q in mixtures) for m in points)  # both directions, one point
    for epoch in (0, 3, 7, 2):  # any order: a pure function of the epoch (resume is exact)
        method.on_epoch_start(epoch)
        assert all(m.lam == pytest.approx(scheduled_lam(0.6, "anneal", epoch, 8)) for m in mixtures)
    constant = hkt_core.lookup("methods", "hkt")(_ctx("hkt", HKTConfig(lam=0.4)))
    constant.on_epoch_start(5)
    assert {m.lam for m in constant.family.modules() if isinstance(m, GeneticAttentionMixture)} == {0.4}


def test_a_bad_lam_schedule_is_refused_before_training(tmp_path):
    with pytest.raises(ConfigError, match="lam_schedule = 'cosine' is invalid: one of constant, anneal"):
        hkt_core.lookup("methods", "hkt")(_ctx("hkt", HKTConfig(), lam_schedule="cosine"))
    with pytest.raises(ConfigError, match="has no option"):
        hkt_core.train(tiny_card(), "kd", out=tmp_path / "x", method_options={"lam_schedule": "anneal"})


def test_an_annealed_run_reaches_lam_zero_and_records_the_schedule(tmp_path):
    manager = hkt_core.get_plugin_manager()
    run = hkt_core.train(tiny_card(), "hkt", manager=manager, out=tmp_path / "a", epochs=4,
                         method_options={"lam_schedule": "anneal"})
    assert run.config["method_options"] == {"lam_schedule": "anneal", "alignment": "auto"}
    assert len(run.metrics) == 4


def test_hkt_kd_replaces_the_native_loss_by_distillation():
    """The composite loss against a reference written here: a1*L1 + a2*KD(native, parent) + a3*L3."""
    hkt = HKTConfig(inherit_loss="task", alphas=(0.2, 0.6, 0.2))
    method = hkt_core.lookup("methods", "hkt-kd")(_ctx("hkt-kd", hkt, temperature=3.0, weight=0.7))
    x, y = _batch()
    method.train(True)
    torch.manual_seed(1)
    step = method.training_step((x,), y)
    torch.manual_seed(1)
    output = method.family(x)
    with torch.no_grad():
        teacher = method.ctx.parent(x).double()
    native, t = output.native.double(), 3.0
    kl = F.kl_div(F.log_softmax(native / t, 1), F.softmax(teacher / t, 1), reduction="batchmean") * t * t
    distill = 0.7 * kl + 0.3 * F.cross_entropy(native, y)
    expected = (0.2 * F.cross_entropy(output.inherited.double(), y) + 0.6 * distill
                + 0.2 * F.cross_entropy(output.parent_head.double(), y))
    assert float(step.loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
    assert step.logs["distill"] == pytest.approx(float(distill.detach()), rel=1e-5)
    assert step.logs["l2"] == pytest.approx(float(F.cross_entropy(native, y).detach()), rel=1e-5)


def test_hkt_kd_trains_a_run(tmp_path):
    run = hkt_core.train(tiny_card(), "hkt-kd", out=tmp_path / "r", epochs=1, hkt={"inherit_loss": "task"})
    assert run.summary["method"] == "hkt-kd" and "train_distill" in run.metrics[0]


def test_learned_gate_starts_at_lam_and_matches_the_reference():
    gen = torch.Generator().manual_seed(3)
    q = torch.randn(4, 6, 5, generator=gen, dtype=torch.float64)
    v = torch.randn(4, 6, 5, generator=gen, dtype=torch.float64)
    mix = LearnedGateMixture(lam=0.3, tokens="spatial").double()
    assert float(mix.weight().detach()) == pytest.approx(0.3)
    w = float(mix.weight().detach())
    torch.testing.assert_close(mix(q, v), q + w * reference_ga(q, v, "spatial"), rtol=1e-10, atol=1e-10)
    with torch.no_grad():
        mix.weight_logit.fill_(2.0)
    w = 1 / (1 + math.exp(-2.0))
    torch.testing.assert_close(mix(q, v), q + w * reference_ga(q, v, "spatial"), rtol=1e-10, atol=1e-10)
    assert float(LearnedGateMixture(lam=0.0).weight().detach()) == pytest.approx(0.01)  # can still open


def test_learned_gate_is_trained_and_saved_per_mixing_point(tmp_path):
    from safetensors.torch import load_file

    assert hkt_core.lookup("mixtures", "ga-learned") is LearnedGateMixture
    run = hkt_core.train(tiny_card(), "hkt", out=tmp_path / "g", epochs=2, lr=0.2,
                         hkt={"mixture": "ga-learned", "inherit_loss": "task"})
    saved = {k: v for k, v in load_file(str(run.path / "method.safetensors")).items() if "weight_logit" in k}
    assert len(saved) >= 2  # a learned weight per direction of the one mixing point
    start = math.log(0.6 / 0.4)
    assert any(abs(float(v) - start) > 1e-6 for v in saved.values()), "the gate weights were trained"


def test_variants_are_registered_with_the_core():
    assert hkt_core.registry("methods").entry("hkt-kd").plugin == "core"
    assert hkt_core.registry("mixtures").entry("ga-learned").plugin == "core"
    assert hkt_core.lookup("methods", "hkt").default_options == {"lam_schedule": "constant", "alignment": "auto"}
