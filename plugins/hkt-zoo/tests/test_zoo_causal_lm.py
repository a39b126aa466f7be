"""The causal-LM task of hkt-zoo: the shift done once, padding and masked positions ignored, metrics
that add up exactly across batches and processes, and the three distillation divergences against
float64 references written out plainly here."""

from __future__ import annotations

import math

import pytest
import torch

from hkt_core import ConfigError
from hkt_core.plugins import default_manager
from hkt_core.tasks.metrics import MetricAccumulator
from hkt_zoo.causal_lm import (IGNORE_INDEX, CausalLMTask, Perplexity, TokenAccuracy, check_vocabularies,
                               vocabulary_size)


def _batch(b=3, t=7, v=5, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, t, v, generator=g, dtype=dtype)
    labels = torch.randint(0, v, (b, t), generator=g)
    labels[0, 4:] = IGNORE_INDEX          # padding at the end of a row
    labels[2, 2] = IGNORE_INDEX           # a masked position inside a row
    return logits, labels


def _counted(labels):
    """(row, position) of each logit that is scored: the next label exists and is not -100."""
    return [(i, t) for i in range(labels.shape[0]) for t in range(labels.shape[1] - 1)
            if int(labels[i, t + 1]) != IGNORE_INDEX]


def _log_softmax(row):
    top = max(row)
    total = sum(math.exp(x - top) for x in row)
    return [x - top - math.log(total) for x in row]


def test_every_task_and_metric_honours_its_contract(hkt_contracts):
    manager = default_manager()
    for name in ("causal-lm", "causal-lm-reverse-kl", "causal-lm-jsd"):
        hkt_contracts.check_entry("tasks", name, manager)
    for name in ("perplexity", "token_accuracy"):
        hkt_contracts.check_metric(name, manager.lookup("metrics", name), task="causal-lm", manager=manager)


def test_the_loss_is_the_next_token_nll_with_the_shift_done_once():
    logits, labels = _batch()
    task = CausalLMTask()
    nll = [-_log_softmax(logits[i, t].tolist())[int(labels[i, t + 1])] for i, t in _counted(labels)]
    assert float(task.loss(logits, labels)) == pytest.approx(sum(nll) / len(nll), rel=1e-12)


def test_the_loss_equals_transformers_own_shifted_loss_of_a_causal_lm():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=30, n_embd=16, n_layer=1, n_head=2, n_positions=16,
                                     bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(config).eval()
    ids = torch.randint(0, 30, (2, 9))
    labels = ids.clone()
    labels[1, 6:] = IGNORE_INDEX
    with torch.no_grad():
        out = model(input_ids=ids, labels=labels)     # transformers shifts inside the model
    assert float(CausalLMTask().loss(out.logits, labels)) == pytest.approx(float(out.loss), rel=1e-5)


def test_padding_and_masked_positions_take_part_in_nothing():
    logits, labels = _batch()
    mask = torch.ones_like(labels)
    mask[1, 5:] = 0                                 # padding stated by the attention mask only
    task, stats = CausalLMTask(), Perplexity()
    other = logits.clone()
    other[0, 3:] = 100 * torch.randn_like(other[0, 3:])    # scores of ignored next tokens (labels[0, 4:])
    other[2, 1] = -7.0                                  # predicts labels[2, 2] = -100
    other[1, 4:] = 9.0                                  # predicts positions masked out (mask[1, 5:])
    for fn in (task.loss, task.inherit_loss, stats.stats, TokenAccuracy().stats):
        a, b = fn(logits, (labels, mask)), fn(other, (labels, mask))
        assert torch.equal(torch.as_tensor(a), torch.as_tensor(b)), fn
    assert float(TokenAccuracy().stats(logits, (labels, mask))[1]) == len(_counted(labels)) - 2
    grad = logits.clone().requires_grad_(True)
    task.distill_loss(grad, logits.flip(0), (labels, mask), temperature=2.0, weight=0.5).backward()
    assert grad.grad[0, 3:].abs().sum() == 0 and grad.grad[2, 1].abs().sum() == 0 and grad.grad[1, 4:].abs().sum() == 0
    assert grad.grad[:, -1].abs().sum() == 0             # the last position predicts nothing
    assert grad.grad[0, 0].abs().sum() > 0


def test_metrics_add_up_exactly_over_batches_and_processes():
    logits, labels = _batch(b=6, t=9, v=7, seed=3)
    labels[3, 1:] = IGNORE_INDEX                   # batches of very different token counts
    nll = [-_log_softmax(logits[i, t].tolist())[int(labels[i, t + 1])] for i, t in _counted(labels)]
    hits = [int(logits[i, t].argmax()) == int(labels[i, t + 1]) for i, t in _counted(labels)]
    exact = {"perplexity": math.exp(sum(nll) / len(nll)), "token_accuracy": sum(hits) / len(hits)}
    task = CausalLMTask()
    one = MetricAccumulator(task.metrics())
    one.update(logits, labels)
    # two "ranks" of uneven batches, summed as all_reduce(SUM) would
    ranks = [MetricAccumulator(task.metrics()) for _ in range(2)]
    ranks[0].update(logits[:1], labels[:1])
    ranks[0].update(logits[1:4], labels[1:4])
    ranks[1].update(logits[4:], labels[4:])
    summed = iter([a + b for a, b in zip(ranks[0].totals, ranks[1].totals)])
    ranks[0].reduce(lambda own: next(summed))
    for values in (one.values(), ranks[0].values()):
        assert values["perplexity"] == pytest.approx(exact["perplexity"], rel=1e-12)
        assert values["token_accuracy"] == pytest.approx(exact["token_accuracy"], abs=0)
    per_batch = [math.exp(float(task.loss(logits[a:b], labels[a:b]))) for a, b in ((0, 1), (1, 4), (4, 6))]
    assert abs(sum(per_batch) / 3 - exact["perplexity"]) > 1e-3   # what a mean of means would have said


def _reference_divergence(student, teacher, labels, kind, beta, temperature):
    """Mean over counted positions of the divergence of the next-token distributions at T, times T^2;
    float64, one position and one token at a time."""
    total, count = 0.0, 0
    for i, t in _counted(labels):
        log_s = _log_softmax([x / temperature for x in student[i, t].tolist()])
        log_t = _log_softmax([x / temperature for x in teacher[i, t].tolist()])
        p_s, p_t = [math.exp(x) for x in log_s], [math.exp(x) for x in log_t]
        if kind == "forward_kl":
            d = sum(p_t[k] * (log_t[k] - log_s[k]) for k in range(len(p_s)))
        elif kind == "reverse_kl":
            d = sum(p_s[k] * (log_s[k] - log_t[k]) for k in range(len(p_s)))
        else:   # generalized JSD: m = (1 - beta) p_s + beta p_t
            m = [(1 - beta) * p_s[k] + beta * p_t[k] for k in range(len(p_s))]
            kl_t = sum(p_t[k] * math.log(p_t[k] / m[k]) for k in range(len(p_s)))
            kl_s = sum(p_s[k] * math.log(p_s[k] / m[k]) for k in range(len(p_s)))
            d = beta * kl_t + (1 - beta) * kl_s
        total, count = total + d, count + 1
    return total / count * temperature ** 2


@pytest.mark.parametrize("kind, beta", [("forward_kl", 0.5), ("reverse_kl", 0.5), ("jsd", 0.5), ("jsd", 0.1),
                                        ("jsd", 0.9)])
@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_each_divergence_matches_its_float64_reference(kind, beta, temperature):
    student, labels = _batch(seed=1)
    teacher, _ = _batch(seed=2)
    task = CausalLMTask(kind, beta=beta)
    got = float(task.distill_loss(student, teacher, labels, temperature=temperature, weight=1.0))
    assert got == pytest.approx(_reference_divergence(student, teacher, labels, kind, beta, temperature), rel=1e-10)
    mixed = float(task.distill_loss(student, teacher, labels, temperature=temperature, weight=0.3))
    assert mixed == pytest.approx(0.3 * got + 0.7 * float(task.loss(student, labels)), rel=1e-10)


def test_jsd_ends_are_the_two_kls_as_in_trl():
    student, labels = _batch(seed=1)
    teacher, _ = _batch(seed=2)
    for beta, kind in ((0.0, "forward_kl"), (1.0, "reverse_kl")):
        jsd = CausalLMTask("jsd", beta=beta).distill_loss(student, teacher, labels, temperature=1.0, weight=1.0)
        kl = CausalLMTask(kind).distill_loss(student, teacher, labels, temperature=1.0, weight=1.0)
        assert float(jsd) == pytest.approx(float(kl), rel=1e-12)
    same = CausalLMTask("jsd").distill_loss(student, student.clone(), labels, temperature=1.0, weight=1.0)
    assert abs(float(same)) < 1e-12


def test_the_teacher_gets_no_gradient_and_bad_settings_are_refused():
    student, labels = _batch(dtype=torch.float32)
    student.requires_grad_(True)
    teacher = torch.randn_like(student, requires_grad=True)
    for kind in ("forward_kl", "reverse_kl", "jsd"):
        CausalLMTask(kind).distill_loss(student, teacher, labels).backward()
        assert teacher.grad is None and student.grad is not None
    with pytest.raises(ValueError, match="divergence = 'kl' is invalid"):
        CausalLMTask("kl")
    with pytest.raises(ValueError, match="beta = 2 is invalid"):
        CausalLMTask("jsd", beta=2)


def test_labels_outside_the_vocabulary_and_wrong_shapes_are_one_line():
    logits, labels = _batch(v=5)
    labels[1, 3] = 9
    with pytest.raises(ValueError, match=r"labels hold token id\(s\) \[9\] but the model's vocabulary has 5 tokens"):
        CausalLMTask().loss(logits, labels)
    with pytest.raises(ValueError, match=r"expected per-token logits \(B, T, vocab\)"):
        CausalLMTask().loss(logits[:, 0], labels)
    with pytest.raises(ValueError, match=r"expected labels \(B, T\) = \(3, 7\)"):
        CausalLMTask().loss(logits, labels[:, :4])


def test_a_pair_whose_vocabularies_differ_is_refused_in_one_line():
    student, labels = _batch(v=5)
    teacher = torch.randn(3, 7, 6, dtype=torch.float64)
    with pytest.raises(ValueError) as info:
        CausalLMTask().distill_loss(student, teacher, labels)
    message = str(info.value)
    assert "the teacher's vocabulary has 6 tokens but the student's has 5" in message and "\n" not in message
    transformers = pytest.importorskip("transformers")
    small = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=258, n_embd=8, n_layer=1, n_head=2,
                                                                 bos_token_id=0, eos_token_id=0))
    big = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=300, n_embd=8, n_layer=1, n_head=2,
                                                               bos_token_id=0, eos_token_id=0))
    assert vocabulary_size(small) == 258
    with pytest.raises(ConfigError, match="the parent's vocabulary has 300 tokens but the child's has 258: .*; fix: "
                                          "give both models vocab_size = 300"):
        check_vocabularies(big, small)
    with pytest.raises(ConfigError, match=r"the parent's vocabulary has 258 tokens but the data set's tokenizer has "
                                          r"280 \(info\['vocab_size'\]\)"):
        check_vocabularies(small, small, data_vocab=280)
    check_vocabularies(big, big, data_vocab=258)
