"""HKT variants beyond the paper, each a registered option measured by ``benchmarks/quality.py``.

- ``hkt-kd`` (a method, :class:`hkt_core.train.methods.HKTKDMethod`): HKT whose native term L2 is the task's distillation loss against the
  frozen parent's own predictions (Hinton KD for classification, ``train.kd_temperature`` and
  ``train.kd_weight``) instead of the hard-label loss: ``a1*L1 + a2*KD(native, parent) + a3*L3``.
  With ``inherit_loss = "task"`` every term of plain HKT is against the labels, so the parent's
  knowledge reaches the child only through mixed features; this adds the parent's soft targets.
- ``lam_schedule = "anneal"`` (an option of ``hkt`` and ``hkt-kd``): the mixing weight ``lam``
  falls linearly from ``HKTConfig.lam`` at the first epoch to 0 at :data:`ANNEAL_END` of the
  epochs and stays 0 after, so the child is weaned from the parent's features before it is
  deployed alone. ``"constant"`` (the default) keeps ``lam`` throughout, as the paper does.
- ``ga-learned`` (a mixture): Genetic Attention whose weight is learned per mixing point and
  direction, ``x' + sigmoid(w) * GA(x', tau)`` with ``sigmoid(w)`` starting at ``lam`` (the paper's
  "adaptive stage weighting"); the trained weights are saved with the other ETM operators.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ConfigError
from ..etm.attention import genetic_attention
from ..etm.mixtures import Mixture

LAM_SCHEDULES = ("constant", "anneal")
#: the fraction of the epochs after which an annealed ``lam`` is 0
ANNEAL_END = 0.75


def check_lam_schedule(schedule: str) -> str:
    if schedule not in LAM_SCHEDULES:
        raise ConfigError(f"method option lam_schedule = {schedule!r} is invalid: one of {', '.join(LAM_SCHEDULES)}")
    return schedule


def scheduled_lam(lam: float, schedule: str, epoch: int, epochs: int) -> float:
    """``lam`` for ``epoch`` (0-based) of ``epochs`` under ``schedule``."""
    if schedule == "constant":
        return lam
    if schedule == "anneal":
        end = max(1.0, ANNEAL_END * epochs)
        return lam * max(0.0, 1.0 - epoch / end)
    check_lam_schedule(schedule)
    raise AssertionError(schedule)


class LearnedGateMixture(Mixture):
    """``x' + sigmoid(w) * GA(query=x', source=tau)`` with ``w`` a trained scalar, ``sigmoid(w) = lam`` at
    the start (``lam`` is clipped to [0.01, 0.99] there, so the weight can still move)."""

    def __init__(self, lam: float = 0.6, tokens: str = "auto") -> None:
        super().__init__(lam, tokens)
        start = min(0.99, max(0.01, self.lam))
        self.weight_logit = nn.Parameter(torch.tensor(math.log(start / (1.0 - start))))

    def weight(self) -> torch.Tensor:
        return torch.sigmoid(self.weight_logit)

    def forward(self, receiver: torch.Tensor, donor: torch.Tensor) -> torch.Tensor:
        return receiver + self.weight().to(receiver.dtype) * genetic_attention(receiver, donor, self.tokens)


__all__ = ["ANNEAL_END", "LAM_SCHEDULES", "LearnedGateMixture", "check_lam_schedule",
           "scheduled_lam"]
