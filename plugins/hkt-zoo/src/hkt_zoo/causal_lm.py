"""The causal language-model task: next-token cross-entropy, exact perplexity and token accuracy,
and a token-level, masked distillation loss.

**Layout.** The prediction is the per-token logits ``(B, T, V)`` of a causal LM (``logits[:, t]``
scores the token at ``t + 1``). The target is the labels ``(B, T)``, aligned with the input ids
(the data set's ``input_ids`` with ``-100`` where nothing is to be predicted), or the pair
``(labels, attention_mask)``. The shift is done here, once: position ``t`` of the logits is scored
against label ``t + 1``, and a position counts only when that label is not ``-100`` and, with a
mask, the mask is 1 there. Models are given no labels, so they never shift a second time.

**Losses.** ``loss``: the mean negative log-likelihood over the counted tokens of the batch.
``inherit_loss`` (HKT's L1/L3 with ``hkt.inherit_loss = "mae"``): the mean absolute error between
the softmax and the one-hot next token, per counted token, over the vocabulary.
``distill_loss`` (method ``kd``): ``weight * T^2 * D + (1 - weight) * loss``, where ``D`` is the
mean over the counted tokens of a divergence between the teacher's and the student's next-token
distributions at temperature ``T``:

- ``forward_kl`` (task ``causal-lm``, the default): ``KL(p_teacher || p_student)``, Hinton's;
- ``reverse_kl`` (task ``causal-lm-reverse-kl``): ``KL(p_student || p_teacher)``;
- ``jsd`` (task ``causal-lm-jsd``): the generalized Jensen-Shannon divergence of GKD (TRL's
  ``beta``): with the mixture ``m = (1 - beta) p_student + beta p_teacher``,
  ``beta KL(p_teacher || m) + (1 - beta) KL(p_student || m)``; ``beta = 0`` and ``beta = 1`` are
  the forward and the reverse KL, as in TRL.

**Metrics** are sums, so they are exact under any batching and across processes: ``perplexity``
is ``exp(sum of token NLL / token count)`` and ``token_accuracy`` is ``(correct, count)``, never a
mean of per-batch means.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from hkt_core import ConfigError, Metric, Task

#: the label of a position that is not predicted (padding, masked tokens), as in transformers
IGNORE_INDEX = -100
#: the divergences of the distillation loss
DIVERGENCES = ("forward_kl", "reverse_kl", "jsd")


def split_target(target: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(labels, attention_mask or None)`` of a causal-LM target."""
    if isinstance(target, (tuple, list)):
        if len(target) != 2:
            raise ValueError(f"causal-lm: a target is labels (B, T) or (labels, attention_mask); got {len(target)} items")
        return target[0], target[1]
    return target, None


def shifted(prediction: torch.Tensor, target: Any, where: str = "causal-lm"
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The logits of the positions that predict a next token, ``(B, T-1, V)``, their labels
    ``(B, T-1)`` (``-100`` replaced by 0) and the boolean mask of counted positions ``(B, T-1)``.
    Raises ``ValueError`` naming the shapes, or a label outside the vocabulary."""
    labels, mask = split_target(target)
    if not isinstance(prediction, torch.Tensor) or prediction.dim() != 3:
        shape = tuple(prediction.shape) if isinstance(prediction, torch.Tensor) else type(prediction).__name__
        raise ValueError(f"{where}: expected per-token logits (B, T, vocab) and labels (B, T); got a prediction of "
                         f"shape {shape}")
    if not isinstance(labels, torch.Tensor) or tuple(labels.shape) != tuple(prediction.shape[:2]):
        shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"{where}: expected labels (B, T) = {tuple(prediction.shape[:2])} for logits "
                         f"{tuple(prediction.shape)}; got labels of shape {shape}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"{where}: labels must be integer token ids (or {IGNORE_INDEX}), got dtype {labels.dtype}")
    if mask is not None and tuple(mask.shape) != tuple(labels.shape):
        raise ValueError(f"{where}: attention mask of shape {tuple(mask.shape)} for labels {tuple(labels.shape)}")
    vocab = prediction.shape[-1]
    nxt = labels[:, 1:]
    valid = nxt != IGNORE_INDEX
    if mask is not None:
        valid = valid & (mask[:, 1:] != 0)
    bad = valid & ((nxt < 0) | (nxt >= vocab))
    if bool(bad.any()):
        ids = sorted({int(v) for v in nxt[bad].unique()[:5]})
        raise ValueError(f"{where}: labels hold token id(s) {ids} but the model's vocabulary has {vocab} tokens "
                         f"(ids 0..{vocab - 1}, or {IGNORE_INDEX} for no prediction): the model's vocab_size must "
                         f"cover the tokenizer's")
    safe = torch.where(valid, nxt, torch.zeros_like(nxt)).long()
    return prediction[:, :-1], safe, valid


def token_nll(logits: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per-position negative log-likelihood in float32 (at least), 0 where not counted."""
    flat = logits.reshape(-1, logits.shape[-1])
    nll = F.cross_entropy(flat.to(torch.promote_types(flat.dtype, torch.float32)), labels.reshape(-1),
                          reduction="none")
    return nll.reshape(labels.shape) * valid.to(nll.dtype)


def _mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Sum of ``values`` over counted positions / their count (0 when none counts)."""
    return (values * valid.to(values.dtype)).sum() / valid.sum().clamp_min(1).to(values.dtype)


def divergence(student: torch.Tensor, teacher: torch.Tensor, kind: str = "forward_kl", *, beta: float = 0.5,
               temperature: float = 1.0) -> torch.Tensor:
    """Per-position divergence ``(...,)`` between next-token distributions over the last dimension
    at ``temperature`` (no ``T^2`` factor here); the teacher is detached."""
    if kind not in DIVERGENCES:
        raise ValueError(f"divergence {kind!r} is invalid: one of {', '.join(DIVERGENCES)}")
    dtype = torch.promote_types(student.dtype, torch.float32)
    log_s = F.log_softmax(student.to(dtype) / temperature, dim=-1)
    log_t = F.log_softmax(teacher.detach().to(dtype) / temperature, dim=-1)
    if kind == "forward_kl" or (kind == "jsd" and beta == 0):
        return (log_t.exp() * (log_t - log_s)).sum(-1)
    if kind == "reverse_kl" or beta == 1:
        return (log_s.exp() * (log_s - log_t)).sum(-1)
    log_m = torch.logaddexp(log_s + math.log1p(-beta), log_t + math.log(beta))
    kl_t = (log_t.exp() * (log_t - log_m)).sum(-1)
    kl_s = (log_s.exp() * (log_s - log_m)).sum(-1)
    return beta * kl_t + (1 - beta) * kl_s


class CausalLMTask(Task):
    """Next-token prediction: cross-entropy with the shift done once, padding and masked positions
    ignored; perplexity (primary) and token accuracy; a token-level, masked distillation loss."""

    name = "causal-lm"
    primary_metric = "perplexity"
    higher_is_better = False

    def __init__(self, divergence: str = "forward_kl", *, beta: float = 0.5, name: str | None = None) -> None:
        if divergence not in DIVERGENCES:
            raise ValueError(f"CausalLMTask divergence = {divergence!r} is invalid: one of {', '.join(DIVERGENCES)}")
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 <= beta <= 1:
            raise ValueError(f"CausalLMTask beta = {beta!r} is invalid: a number in [0, 1]")
        self.divergence, self.beta = divergence, float(beta)
        if name is not None:
            self.name = name

    def loss(self, prediction, target):
        logits, labels, valid = shifted(prediction, target, self.name)
        return _mean(token_nll(logits, labels, valid), valid)

    def inherit_loss(self, prediction, target):
        logits, labels, valid = shifted(prediction, target, self.name)
        probs = logits.to(torch.promote_types(logits.dtype, torch.float32)).softmax(-1)
        hot = F.one_hot(labels, logits.shape[-1]).to(probs.dtype)
        return _mean((probs - hot).abs().sum(-1), valid) / logits.shape[-1]

    def distill_loss(self, student, teacher, target, *, temperature=4.0, weight=0.9):
        if not isinstance(teacher, torch.Tensor) or student.shape != teacher.shape:
            if isinstance(teacher, torch.Tensor) and student.shape[:-1] == teacher.shape[:-1]:
                try:
                    check_vocabularies(int(teacher.shape[-1]), int(student.shape[-1]), "teacher", "student")
                except ConfigError as exc:
                    raise ValueError(f"{self.name}: {exc}") from None
            raise ValueError(f"{self.name}: student logits {tuple(student.shape)} and teacher logits "
                             f"{tuple(getattr(teacher, 'shape', ()))} must have the same shape")
        logits, labels, valid = shifted(student, target, self.name)
        per_token = divergence(logits, teacher[:, :-1], self.divergence, beta=self.beta, temperature=temperature)
        kd = _mean(per_token, valid) * temperature ** 2
        if weight == 1:
            return kd
        return weight * kd + (1 - weight) * _mean(token_nll(logits, labels, valid), valid)

    def metrics(self):
        return [Perplexity(), TokenAccuracy()]

    def example(self, batch_size=4, generator=None):
        """Logits (B, 6, 11) and labels (B, 6) with a few positions ignored (-100)."""
        logits = torch.randn(batch_size, 6, 11, generator=generator)
        labels = torch.randint(0, 11, (batch_size, 6), generator=generator)
        ignored = torch.rand(batch_size, 6, generator=generator) < 0.2
        return logits, labels.masked_fill(ignored, IGNORE_INDEX)


class Perplexity(Metric):
    """exp(mean token negative log-likelihood) over every counted token of the split; stats = (sum
    of token NLL, tokens), summed over batches and processes before the exponential."""

    name = "perplexity"
    higher_is_better = False

    def stats(self, prediction, target):
        logits, labels, valid = shifted(prediction, target, self.name)
        nll = token_nll(logits.detach(), labels, valid)
        return torch.stack([nll.double().sum(), valid.sum().double()]).cpu()

    def compute(self, stats):
        return float(torch.exp(stats[0] / stats[1])) if stats[1] > 0 else float("nan")


class TokenAccuracy(Metric):
    """Share of counted tokens whose arg-max next-token prediction is right; stats = (correct, tokens)."""

    name = "token_accuracy"
    higher_is_better = True

    def stats(self, prediction, target):
        logits, labels, valid = shifted(prediction, target, self.name)
        hits = (logits.argmax(-1) == labels) & valid
        return torch.tensor([float(hits.sum()), float(valid.sum())], dtype=torch.float64)

    def compute(self, stats):
        return float(stats[0] / stats[1]) if stats[1] > 0 else float("nan")


def vocabulary_size(model: Any) -> int | None:
    """The number of tokens a causal LM scores: its output embedding's rows, else
    ``config.vocab_size``; None when the model states neither."""
    get = getattr(model, "get_output_embeddings", None)
    try:
        head = get() if callable(get) else None
    except (NotImplementedError, AttributeError):
        head = None
    weight = getattr(head, "weight", None)
    if isinstance(weight, torch.Tensor) and weight.dim() == 2:
        return int(weight.shape[0])
    size = getattr(getattr(model, "config", None), "vocab_size", None)
    return int(size) if isinstance(size, int) else None


def check_vocabularies(parent: Any, child: Any, parent_role: str = "parent", child_role: str = "child",
                       data_vocab: int | None = None) -> None:
    """Refuse, in one line (:class:`hkt_core.ConfigError`), a pair whose vocabularies differ, or a
    model whose vocabulary does not cover the data set's tokenizer (``info["vocab_size"]``).
    ``parent`` and ``child`` are models or vocabulary sizes."""
    sizes = {role: (model if isinstance(model, int) else vocabulary_size(model))
             for role, model in ((parent_role, parent), (child_role, child))}
    a, b = sizes[parent_role], sizes[child_role]
    if a is not None and b is not None and a != b:
        raise ConfigError(f"the {parent_role}'s vocabulary has {a} tokens but the {child_role}'s has {b}: a causal-LM "
                          f"pair distils next-token distributions, so both need one tokenizer and one vocab_size; "
                          f"fix: give both models vocab_size = {max(a, b)} (config.vocab_size in [parent_options] "
                          f"and [child_options])")
    if data_vocab is not None:
        for role, size in sizes.items():
            if size is not None and size < data_vocab:
                raise ConfigError(f"the {role}'s vocabulary has {size} tokens but the data set's tokenizer has "
                                  f"{data_vocab} (info['vocab_size']); fix: [{role}_options] config.vocab_size = "
                                  f"{data_vocab}")


def lm_tasks() -> dict[str, CausalLMTask]:
    """The causal-LM tasks the plugin registers, by name: one per divergence of the distillation loss."""
    return {"causal-lm": CausalLMTask("forward_kl"),
            "causal-lm-reverse-kl": CausalLMTask("reverse_kl", name="causal-lm-reverse-kl"),
            "causal-lm-jsd": CausalLMTask("jsd", beta=0.5, name="causal-lm-jsd")}


__all__ = ["DIVERGENCES", "IGNORE_INDEX", "CausalLMTask", "Perplexity", "TokenAccuracy", "check_vocabularies",
           "divergence", "lm_tasks", "shifted", "split_target", "token_nll", "vocabulary_size"]
