"""``kd``: Hinton distillation from the frozen, trained parent (the task's distillation loss)."""

from __future__ import annotations

import attrs
import torch
from torch import nn

from .method import Method, StepOutput, option
from .registry import method


def _number_in(lo: float, hi: float, *, lo_open: bool = False):
    def check(value) -> bool:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
        return ok and (lo < value if lo_open else lo <= value) and value <= hi
    return check


def temperature_option() -> float:
    """The distillation temperature, in (0, 100]: 4, the benchmark's choice on its positive-control pair."""
    return option(4.0, _number_in(0.0, 100.0, lo_open=True), "a number in (0, 100]", real=True)


def weight_option() -> float:
    """The weight of the distillation term against the task loss, in [0, 1]: 0.5, the benchmark's choice."""
    return option(0.5, _number_in(0.0, 1.0), "a number in [0, 1]", real=True)


@attrs.frozen
class KDOptions:
    """``kd`` options (the ``[method]`` table): the softening ``temperature`` and the ``weight`` of
    the distillation term (formerly ``train.kd_temperature`` and ``train.kd_weight``,
    :data:`hkt_core.config.MOVED_SETTINGS`)."""

    temperature: float = temperature_option()
    weight: float = weight_option()


@method("kd", roles=("every-pair", "demo"))
class KDMethod(Method):
    """Distillation with the task's distillation loss (Hinton KD for classification) from the
    frozen, trained parent; temperature and weight are the method's options (:class:`KDOptions`,
    ``--set method.temperature=2``)."""

    needs_parent = True
    Options = KDOptions

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
        loss = ctx.task.distill_loss(student, teacher, target, temperature=self.options.temperature,
                                     weight=self.options.weight)
        return StepOutput(loss, {"distill": float(loss.detach())})
