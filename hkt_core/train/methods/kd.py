"""``kd``: Hinton distillation from the frozen, trained parent (the task's distillation loss)."""

from __future__ import annotations

import torch
from torch import nn

from .method import Method, StepOutput
from .registry import method


@method("kd", roles=("every-pair", "demo"))
class KDMethod(Method):
    """Distillation with the task's distillation loss (Hinton KD for classification) from the
    frozen, trained parent; temperature and weight come from ``train.kd_temperature`` and
    ``train.kd_weight``."""

    needs_parent = True

    @property
    def teacher(self) -> nn.Module:
        """The frozen parent as the distillation term runs it: BatchNorms folded into a copy when
        ``train.fold_parent_bn`` is on (:mod:`hkt_core.lockstep.fold`; the parent itself is unchanged)."""
        if getattr(self, "_teacher", None) is None:
            from ...lockstep.fold import folded_parent

            parent = self.ctx.parent
            self._teacher = folded_parent(parent) if getattr(self.ctx.train, "fold_parent_bn", False) else parent
        return self._teacher

    def training_step(self, inputs, target):
        ctx = self.ctx
        student = self.child_adapter.prediction(self.model(*inputs))
        with torch.no_grad():
            teacher = self.parent_adapter.prediction(self.teacher(*inputs))
        loss = ctx.task.distill_loss(student, teacher, target, temperature=ctx.train.kd_temperature,
                                     weight=ctx.train.kd_weight)
        return StepOutput(loss, {"distill": float(loss.detach())})
