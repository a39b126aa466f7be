"""``dkd``: Decoupled Knowledge Distillation (Zhao et al., CVPR 2022), a logit method.

The KD loss splits into a target-class term (TCKD: the binary distribution "target / any other
class") and a non-target term (NCKD: the distribution over the other classes alone), weighed
separately and added to the task's cross-entropy::

    loss = CE(child, y) + warm(epoch) * T^2 * mean_b [ alpha * KL(b_T || b_S) + beta * KL(q_T || q_S) ]

``b = (p_y, 1 - p_y)`` and ``q`` = the softmax over the non-target logits, all at temperature ``T``;
``warm`` rises linearly to 1 over the first ``warmup_epochs`` epochs (mdistiller's
``min(epoch / warmup, 1)`` with 1-based epochs). The defaults are the paper's and mdistiller's
(alpha 1, beta 8, T 4, 20 warm-up epochs).
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F

from ...errors import ConfigError
from .method import MethodContext, StepOutput, number_option
from .kd import KDMethod
from .registry import method


@attrs.frozen
class DKDOptions:
    """``dkd`` options (the ``[method]`` table)."""

    #: the weight of TCKD, the target-class term
    alpha: float = number_option(1.0, at_least=0)
    #: the weight of NCKD, the non-target term
    beta: float = number_option(8.0, at_least=0)
    #: the softening temperature
    temperature: float = number_option(4.0, above=0)
    #: epochs over which the DKD weight rises linearly to 1 (0: from the first step)
    warmup_epochs: int = number_option(20, at_least=0, integer=True)


def dkd_loss(student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor, *, alpha: float, beta: float,
             temperature: float) -> torch.Tensor:
    """``T^2 * mean_b (alpha * TCKD + beta * NCKD)`` for scores ``(B, K)`` and class indices ``(B,)``."""
    s, t = student / temperature, teacher.to(student.dtype) / temperature
    gt = F.one_hot(target, s.shape[1]).bool()
    rest = s.shape[1] - 1

    def binary(scores: torch.Tensor) -> torch.Tensor:   # log (p_y, 1 - p_y)
        all_ = scores.logsumexp(1)
        return torch.stack([scores[gt] - all_, scores[~gt].view(-1, rest).logsumexp(1) - all_], 1)

    def kl(log_teacher: torch.Tensor, log_student: torch.Tensor) -> torch.Tensor:
        return F.kl_div(log_student, log_teacher, reduction="none", log_target=True).sum(1)

    tckd = kl(binary(t), binary(s))
    nckd = kl(F.log_softmax(t[~gt].view(-1, rest), 1), F.log_softmax(s[~gt].view(-1, rest), 1))
    return (alpha * tckd + beta * nckd).mean() * temperature ** 2


@method("dkd")
class DKDMethod(KDMethod):
    """Decoupled Knowledge Distillation from the frozen parent (module docstring); options
    :class:`DKDOptions`. The parent runs as ``kd`` runs it (folded BatchNorms when
    ``train.fold_parent_bn``)."""

    Options = DKDOptions

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        from ...tasks import ClassificationTask

        if not isinstance(ctx.task, ClassificationTask):
            raise ConfigError(f"dkd decouples class scores (B, K) against class indices: it needs the "
                              f"classification task, not {getattr(ctx.task, 'name', type(ctx.task).__name__)!r}")
        self.on_epoch_start(0)

    def on_epoch_start(self, epoch: int) -> None:
        """The DKD weight of ``epoch`` (0-based; a pure function of it, so a resumed run continues)."""
        warmup = self.options.warmup_epochs
        self.warm = min((epoch + 1) / warmup, 1.0) if warmup else 1.0

    def training_step(self, inputs, target):
        student = self.child_adapter.prediction(self.model(*inputs))
        with torch.no_grad():
            teacher = self.parent_adapter.prediction(self.teacher(*inputs))
        task = self.ctx.task.loss(student, target)
        keep = target != self.ctx.task.ignore_index if self.ctx.task.ignore_index is not None else None
        if keep is not None:   # samples the task ignores take no part (none left: no DKD term)
            student, teacher, target = student[keep], teacher[keep], target[keep]
        o = self.options
        dkd = dkd_loss(student, teacher, target, alpha=o.alpha, beta=o.beta, temperature=o.temperature) \
            if len(target) else student.sum() * 0
        return StepOutput(task + self.warm * dkd, {"task": float(task.detach()), "dkd": float(dkd.detach())})
