"""The ``flow`` task: RAFT's sequence loss, the HKT inheritance MAE and L1 distillation.

How outputs are read: a RAFT model returns the list of its ``N`` full-resolution iterates; the
final flow is the last one. The engine passes losses and metrics the adapter's prediction, which
for RAFT is the final flow tensor carrying the earlier iterates in its ``flow_iterates``
attribute (:meth:`hkt_flow.adapter.RAFTAdapter.prediction`). So the task loss (L2, the baseline's
loss) is the sequence loss over all iterates, while the HKT terms L1 and L3 and the metrics use
the final flow only. Every method here also accepts the plain list, or a plain flow tensor
(a sequence of one: the task loss is then the L1 of that flow).

Per iterate, the L1 is the core's :func:`~hkt_core.tasks.losses.masked_l1`: the mean absolute error over
valid pixels and both flow components (pixels whose true flow is longer than ``max_flow`` are left out, as RAFT does); RAFT's
sequence loss weights iterate ``i`` of ``N`` by ``gamma ** (N - 1 - i)``.
"""

from __future__ import annotations

from typing import Any

import torch

from hkt_core.tasks.losses import masked_l1
from hkt_core.tasks import Task

from .metrics import flow_metrics
from .target import final_flow, iterates, split_target


def sequence_loss(prediction: Any, target: torch.Tensor, *, gamma: float = 0.8,
                  max_flow: float = 400.0) -> torch.Tensor:
    """RAFT's exponentially weighted L1 over the iterates: sum_i gamma^(N-1-i) * L1_i."""
    flow, valid = split_target(target)
    if max_flow > 0:
        valid = valid * (torch.linalg.vector_norm(flow, dim=1) < max_flow).to(valid.dtype)
    preds = iterates(prediction)
    n = len(preds)
    loss = flow.new_zeros(())
    for i, pred in enumerate(preds):
        loss = loss + gamma ** (n - 1 - i) * masked_l1(pred, flow, valid)
    return loss


class FlowTask(Task):
    """Optical flow (registered as ``flow``): sequence loss, valid-pixel MAE, L1 distillation."""

    name = "flow"
    primary_metric = "epe"
    higher_is_better = False

    def __init__(self, gamma: float = 0.8, max_flow: float = 400.0) -> None:
        if not 0 < gamma <= 1:
            raise ValueError(f"gamma = {gamma!r}: the sequence-loss decay must lie in (0, 1]")
        self.gamma = gamma
        self.max_flow = max_flow

    def loss(self, prediction: Any, target: torch.Tensor) -> torch.Tensor:
        """Sequence loss on the iterates (L1 of the final flow for a single tensor)."""
        return sequence_loss(prediction, target, gamma=self.gamma, max_flow=self.max_flow)

    def inherit_loss(self, prediction: Any, target: torch.Tensor) -> torch.Tensor:
        """MAE between the final flow and the true flow over valid pixels (HKT's L1 and L3)."""
        flow, valid = split_target(target)
        return masked_l1(final_flow(prediction), flow, valid)

    def distill_loss(self, student: Any, teacher: Any, target: torch.Tensor, *,
                     temperature: float = 4.0, weight: float = 0.9) -> torch.Tensor:
        """``weight`` * sequence L1 to the parent's final flow + (1 - weight) * the task loss.

        The parent's flow is a dense pseudo ground truth (valid everywhere); ``temperature`` has
        no meaning for regression and is ignored.
        """
        teacher_flow = final_flow(teacher).detach()
        imitation = sequence_loss(student, teacher_flow, gamma=self.gamma, max_flow=0.0)
        return weight * imitation + (1 - weight) * self.loss(student, target)

    def metrics(self):
        return flow_metrics()

    def example(self, batch_size: int = 4, generator: torch.Generator | None = None):
        """A random ``(flow prediction, (flow, valid))`` batch of 8x8 maps (for contract tests)."""
        prediction = 3 * torch.randn(batch_size, 2, 8, 8, generator=generator)
        flow = 3 * torch.randn(batch_size, 2, 8, 8, generator=generator)
        valid = torch.rand(batch_size, 8, 8, generator=generator) > 0.2
        return prediction, (flow, valid)
