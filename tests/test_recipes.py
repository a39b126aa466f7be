"""Recipes that fit the family: `hkt pairs new` starts a pair with attention layers from the
transformer recipe (AdamW, warm-up then linear decay, a learning rate by size) and any other from
the convolutional one; the linear schedule and AdamW against plain references; macro-F1 exact over
batches and processes against a float64 reference."""

from __future__ import annotations

import math
import textwrap

import pytest
import torch
from torch import nn

import hkt_core
from hkt_core.config import TrainConfig
from hkt_core.pairs.card import PairCard
from hkt_core.pairs.scaffold import (FINE_TUNING_LR, TRANSFORMER_LR, TRANSFORMER_RECIPE, attention_layers,
                                     recipe_for)
from hkt_core.tasks.metrics import MacroF1, MetricAccumulator
from hkt_core.train.optim import build_optimizer, learning_rate


# -- the linear schedule -------------------------------------------------------------------------

@pytest.mark.parametrize("epochs, warmup, steps", [(15, 1, 13), (3, 0, 7), (5, 2, 1), (4, 1, 10)])
def test_linear_schedule_is_warm_up_then_a_straight_line_to_zero(epochs, warmup, steps):
    """Against a plain reference: with W warm-up steps and T steps in all, step s (0-based) trains
    at lr (s + 1) / W during the warm-up, then at lr (T - s) / (T - W), a LambdaLR of torch's."""
    train = TrainConfig(epochs=epochs, lr=1e-3, optimizer="adamw", schedule="linear", warmup_epochs=warmup)
    total, warm = epochs * steps, warmup * steps

    def factor(s: int) -> float:
        return (s + 1) / warm if s < warm else (total - s) / (total - warm)

    weight = nn.Parameter(torch.zeros(1))
    reference = torch.optim.lr_scheduler.LambdaLR(torch.optim.SGD([weight], lr=train.lr), factor)
    ours = []
    for epoch in range(epochs):
        for step in range(steps):
            ours.append(learning_rate(train, epoch, step, steps))
    expected = []
    for _ in range(total):
        expected.append(reference.get_last_lr()[0])
        reference.optimizer.step()
        reference.step()
    assert ours == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert ours[warm - 1 if warm else 0] == pytest.approx(train.lr)
    assert ours[-1] == pytest.approx(train.lr / (total - warm))   # the last step is the line's last, above 0
    assert all(a >= b for a, b in zip(ours[warm:], ours[warm + 1:]))   # never rises after the warm-up


def test_linear_schedule_is_a_validated_choice():
    assert TrainConfig(schedule="linear").schedule == "linear"
    with pytest.raises(hkt_core.ConfigError, match=r"^TrainConfig.schedule = 'lineal' is invalid: must be one of "
                                                   r"none, multistep, cosine, linear; did you mean 'linear'\?$"):
        TrainConfig(schedule="lineal")
    with pytest.raises(hkt_core.ConfigError, match=r"^TrainConfig.warmup_epochs = -1 is invalid: must be an "
                                                   r"integer >= 0$"):
        TrainConfig(warmup_epochs=-1)


# -- AdamW ------------------------------------------------------------------------------------------

def test_adamw_steps_as_the_plain_algorithm():
    """build_optimizer's AdamW against AdamW written out (Loshchilov & Hutter: decoupled decay,
    bias-corrected moments, torch's defaults betas (0.9, 0.999) and eps 1e-8) in float64, with no
    decay on biases and normalisation scales (1-D tensors)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3), nn.Linear(3, 2)).double()
    train = TrainConfig(optimizer="adamw", lr=1e-2, weight_decay=0.1)
    optimizer = build_optimizer(model, train)
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    m = {n: torch.zeros_like(p) for n, p in params.items()}
    v = {n: torch.zeros_like(p) for n, p in params.items()}
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for t in range(1, 6):
        x = torch.randn(8, 4, dtype=torch.float64)
        optimizer.zero_grad()
        model(x).pow(2).mean().backward()
        grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
        optimizer.step()
        for n, g in grads.items():
            decay = train.weight_decay if params[n].dim() > 1 else 0.0
            params[n] = params[n] * (1 - train.lr * decay)
            m[n] = beta1 * m[n] + (1 - beta1) * g
            v[n] = beta2 * v[n] + (1 - beta2) * g * g
            m_hat, v_hat = m[n] / (1 - beta1 ** t), v[n] / (1 - beta2 ** t)
            params[n] = params[n] - train.lr * m_hat / (v_hat.sqrt() + eps)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), params[n], rtol=1e-10, atol=1e-12)


# -- macro-F1 -----------------------------------------------------------------------------------

def _reference_macro_f1(scores: torch.Tensor, target: torch.Tensor, ignore_index: int | None = None) -> float:
    """Macro-F1 from the confusion counts in float64, over the classes in the truth or the
    predictions (scikit-learn's average="macro")."""
    predicted = scores.argmax(1)
    keep = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
    predicted, target = predicted[keep].tolist(), target[keep].tolist()
    f1s = []
    for k in sorted(set(predicted) | set(target)):
        tp = sum(p == k and t == k for p, t in zip(predicted, target))
        fp = sum(p == k and t != k for p, t in zip(predicted, target))
        fn = sum(p != k and t == k for p, t in zip(predicted, target))
        f1s.append(2.0 * tp / (2 * tp + fp + fn))
    return math.fsum(f1s) / len(f1s)


def test_macro_f1_sums_counts_exactly_over_uneven_batches_and_ranks():
    g = torch.Generator().manual_seed(3)
    classes = 5
    target = torch.randint(0, classes, (203,), generator=g)
    target[target == 4] = 0                          # class 4 never occurs in the truth...
    scores = torch.randn(203, classes, generator=g)
    scores[:7, 4] = 10.0                             # ...but is predicted 7 times (an F1 of 0 that counts)
    scores[7:60, 0] = 10.0                           # a majority-class habit
    reference = _reference_macro_f1(scores, target)
    # two "ranks", each summing uneven batches; their stats added as all_reduce(SUM) adds them
    cuts = [0, 1, 17, 64, 100, 101, 150, 203]
    ranks = [MetricAccumulator([MacroF1()]) for _ in range(2)]
    for i, (a, b) in enumerate(zip(cuts, cuts[1:])):
        ranks[i % 2].update(scores[a:b], target[a:b])
    total = ranks[0].totals[0] + ranks[1].totals[0]
    ranks[0].reduce(lambda t: total)
    assert ranks[0].values()["macro_f1"] == pytest.approx(reference, rel=1e-15, abs=0)
    per_batch = [_reference_macro_f1(scores[a:b], target[a:b]) for a, b in zip(cuts, cuts[1:])]
    assert abs(sum(per_batch) / len(per_batch) - reference) > 1e-3   # a mean of batch F1s would be wrong
    try:
        from sklearn.metrics import f1_score
    except ImportError:
        return
    assert reference == pytest.approx(f1_score(target.numpy(), scores.argmax(1).numpy(), average="macro"), abs=1e-12)


def test_macro_f1_leaves_ignored_targets_out_and_is_in_classification():
    g = torch.Generator().manual_seed(1)
    target = torch.randint(0, 3, (40,), generator=g)
    target[::5] = -100
    scores = torch.randn(40, 3, generator=g)
    metric = MacroF1(ignore_index=-100)
    assert metric.compute(metric.stats(scores, target)) == pytest.approx(_reference_macro_f1(scores, target, -100))
    task = hkt_core.default_manager().lookup("tasks", "classification")
    names = [m.name for m in task.metrics()]
    assert names[0] == "accuracy" and "macro_f1" in names and task.primary_metric == "accuracy"
    assert "macro_f1" in hkt_core.default_manager().registry("metrics")
    # a child that always predicts its majority class: accuracy high, macro-F1 says it
    always = torch.zeros(40, 3)
    always[:, 0] = 1.0
    labels = torch.tensor([0] * 30 + [1] * 5 + [2] * 5)
    assert MacroF1().compute(MacroF1().stats(always, labels)) == pytest.approx((2 * 30 / 70) / 3)


# -- the recipe of a new card --------------------------------------------------------------------------

class TinyTransformer(nn.Module):
    """A model with attention layers (a transformer) of about ``width**2`` parameters."""

    def __init__(self, width: int = 8, classes: int = 3) -> None:
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(width, 2, 2 * width, batch_first=True)
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        return self.head(self.layer(x).mean(1))


def test_the_recipe_follows_the_models_attention_layers_and_size():
    conv = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten())
    assert recipe_for(conv, "defaults")[0] == {} and "no attention layers" in recipe_for(conv, "defaults")[1]
    assert recipe_for(None, "")[0] == {}
    small = TinyTransformer()
    assert attention_layers(small) == ["MultiheadAttention"]
    settings, why = recipe_for(small, "defaults")
    assert settings == {**TRANSFORMER_RECIPE, "lr": TRANSFORMER_LR[0][1]} and "MultiheadAttention" in why
    assert TrainConfig(**settings).schedule == "linear" and settings["optimizer"] == "adamw"
    with torch.device("meta"):   # sizes without the memory
        mid, large = TinyTransformer(1024 * 4), TinyTransformer(1024 * 9)
    sizes = [sum(p.numel() for p in m.parameters()) for m in (mid, large)]
    assert 20e6 < sizes[0] <= 200e6 < sizes[1]
    assert [recipe_for(m, "defaults")[0]["lr"] for m in (mid, large)] == [6e-4, 3e-4]
    small.hkt_pretrained = "/weights"
    assert recipe_for(small, "defaults")[0]["lr"] == FINE_TUNING_LR


MODELS = textwrap.dedent('''
    import torch
    from torch import nn
    from hkt_core import DatasetBundle


    class Mixer(nn.Module):
        """Feature tokens through one attention layer."""

        def __init__(self, width: int = 8):
            super().__init__()
            self.embed = nn.Linear(1, width)
            self.attention = nn.MultiheadAttention(width, 2, batch_first=True)
            self.head = nn.Linear(width, 3)

        def forward(self, x):
            tokens = self.embed(x.unsqueeze(-1))
            return self.head(self.attention(tokens, tokens, tokens)[0].mean(1))


    def mlp(hidden: int = 16):
        return nn.Sequential(nn.Linear(6, hidden), nn.ReLU(), nn.Linear(hidden, 3))


    def rows(n_train: int = 60):
        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(n_train + 20, 6, generator=g), torch.arange(n_train + 20) % 3
        data = torch.utils.data.TensorDataset(x, y)
        train, test = torch.utils.data.Subset(data, range(n_train)), torch.utils.data.Subset(data, range(n_train, n_train + 20))
        return DatasetBundle(train, test, [(6,)], {"num_classes": 3})
''')


def _new(tmp_path, monkeypatch, parent, child, dataset) -> tuple[PairCard, str]:
    from hkt_core.cli.main import main

    (tmp_path / "recipe_models.py").write_text(MODELS, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    target = tmp_path / "card.toml"
    assert main(["pairs", "new", "recipe-pair", "--parent", parent, "--child", child, "--dataset", dataset,
                 "-o", str(target), "--force"]) == 0
    return PairCard.from_toml(target), target.read_text(encoding="utf-8")


def test_a_transformer_parent_and_an_mlp_child_each_get_their_recipe(tmp_path, monkeypatch):
    card, text = _new(tmp_path, monkeypatch, "recipe_models:Mixer", "recipe_models:mlp", "recipe_models:rows")
    assert (card.train.optimizer, card.train.schedule, card.train.lr) == ("sgd", "cosine", 0.1)   # the MLP child
    assert card.parent_train["optimizer"] == "adamw" and card.parent_train["schedule"] == "linear"
    assert card.parent_train["lr"] == 1e-3 and card.parent_train["warmup_epochs"] == 1
    words = " ".join(line.lstrip("# ") for line in text.splitlines())
    assert "attention layers (MultiheadAttention)" in words and "no attention layers" in words
    recipes = text[text.index("[train]"):text.index("[hkt]")]
    assert all(len(line) <= 100 for line in recipes.splitlines())


def test_a_transformer_child_trains_from_the_transformer_recipe(tmp_path, monkeypatch):
    card, text = _new(tmp_path, monkeypatch, "recipe_models:Mixer", "recipe_models:Mixer", "recipe_models:rows")
    assert (card.train.optimizer, card.train.schedule, card.train.warmup_epochs) == ("adamw", "linear", 1)
    assert (card.train.lr, card.train.weight_decay, card.train.grad_clip, card.train.epochs) == (1e-3, 0.01, 1.0, 15)
    assert card.parent_train == {} and "# the parent: the same recipe" in text


def test_a_convolutional_pair_keeps_the_convolutional_recipe(tmp_path, monkeypatch):
    if "digits_cnn_large" not in hkt_core.default_manager().registry("models"):
        pytest.skip("the vision plugin is not installed")
    card, text = _new(tmp_path, monkeypatch, "digits_cnn_large", "digits_cnn_small", "digits")
    assert card.train == TrainConfig() and card.parent_train == {}


def test_a_zoo_transformers_pair_starts_from_the_transformer_recipe(tmp_path, monkeypatch):
    """The source needs options before it builds (the card's architecture and config): its
    registered example decides the family, and the card says the rate follows the size."""
    pytest.importorskip("transformers")
    if "transformers" not in hkt_core.default_manager().registry("models"):
        pytest.skip("the zoo plugin's transformers source is not installed")
    card, text = _new(tmp_path, monkeypatch, "transformers", "transformers", "token-recall")
    assert (card.train.optimizer, card.train.schedule, card.train.lr) == ("adamw", "linear", 1e-3)
    words = " ".join(line.lstrip("# ") for line in text.splitlines())
    assert "BertSelfAttention" in words and "set lr by the rule" in words
