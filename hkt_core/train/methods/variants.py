"""HKT variants beyond the paper, each a registered option measured by ``benchmarks/quality.py``.

- ``hkt-kd`` (a method, :class:`hkt_core.train.methods.HKTKDMethod`): HKT whose native term L2 is the task's distillation loss against the
  frozen parent's own predictions (Hinton KD for classification, the options ``temperature`` and
  ``weight``) instead of the hard-label loss: ``a1*L1 + a2*KD(native, parent) + a3*L3``.
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

from ...errors import ConfigError
from ...etm.mixtures import LearnedGateMixture  # re-exported: it lives with the other mixtures

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


__all__ = ["ANNEAL_END", "LAM_SCHEDULES", "LearnedGateMixture", "check_lam_schedule",
           "scheduled_lam"]
