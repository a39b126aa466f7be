"""The built-in training methods: ``parent``, ``baseline``, ``kd``, ``hkt`` and ``hkt-kd``.

Each follows :class:`~hkt_core.train.method.Method`. During training a method calls
:attr:`Method.model` (the trainable module, wrapped for distributed training when the trainer runs
under torchrun) rather than the bare module, so gradients are synchronised across processes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .method import Method, MethodContext, StepOutput

__all__ = ["BUILTIN_METHODS", "BaselineMethod", "HKTKDMethod", "HKTMethod", "KDMethod", "Method", "MethodContext",
           "ParentMethod", "StepOutput"]


def _call(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> Any:
    return module(*inputs)


class BaselineMethod(Method):
    """The child alone, trained on the task loss."""

    def training_step(self, inputs, target):
        prediction = self.child_adapter.prediction(_call(self.model, inputs))
        loss = self.ctx.task.loss(prediction, target)
        return StepOutput(loss, {"task": float(loss.detach())})


class ParentMethod(BaselineMethod):
    """Trains the pair's parent from scratch on the task loss (the trainer then caches it).

    The trainer puts the parent network in ``ctx.child``: it is the network this method trains,
    evaluates and saves.
    """

    trains_parent = True


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
            from ..lockstep.fold import folded_parent

            parent = self.ctx.parent
            self._teacher = folded_parent(parent) if getattr(self.ctx.train, "fold_parent_bn", False) else parent
        return self._teacher

    def training_step(self, inputs, target):
        ctx = self.ctx
        student = self.child_adapter.prediction(_call(self.model, inputs))
        with torch.no_grad():
            teacher = self.parent_adapter.prediction(_call(self.teacher, inputs))
        loss = ctx.task.distill_loss(student, teacher, target, temperature=ctx.train.kd_temperature,
                                     weight=ctx.train.kd_weight)
        return StepOutput(loss, {"distill": float(loss.detach())})


class HKTMethod(Method):
    """Hereditary Knowledge Transfer: the child trains inside a :class:`hkt_core.Family` with the
    frozen parent; the ETM operators train with it and are saved beside the child for resuming.
    What is evaluated, saved and exported is the child alone (the native stream).

    Option ``lam_schedule``: ``constant`` (the paper: ``lam`` throughout) or ``anneal`` (``lam``
    falls to 0 during training, see :func:`hkt_core.train.variants.scheduled_lam`).
    """

    needs_parent = True
    default_options = {"lam_schedule": "constant"}

    @property
    def ddp_find_unused_parameters(self) -> bool:
        """A stream whose loss weight is 0 is scored without autograd: its operators get no gradient."""
        a1, _, a3 = self.ctx.hkt.alphas
        return a1 == 0 or a3 == 0

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        from ..align import align
        from ..family import Family
        from .variants import check_lam_schedule

        self.lam_schedule = check_lam_schedule(ctx.options.get("lam_schedule", "constant"))
        layouts = dict(getattr(ctx.card, "layouts", None) or {})  # a card's [alignment] layouts
        if ctx.alignment is None:
            card = ctx.card
            ctx.alignment = align(ctx.parent, ctx.child, ctx.example_inputs,
                                  stages=card.stages if card is not None else 2,
                                  pairs=card.alignment if card is not None else None, manager=ctx.manager,
                                  layouts=layouts)
        # The run's task (the card's) scores the streams.
        self.family = Family(ctx.parent, ctx.child, ctx.alignment, ctx.hkt, example_inputs=ctx.example_inputs,
                             task=ctx.task, manager=ctx.manager, layouts=layouts,
                             fold_parent_bn=getattr(ctx.train, "fold_parent_bn", False)).to(ctx.device)

    def trainable_module(self) -> nn.Module:
        return self.family

    def on_epoch_start(self, epoch: int) -> None:
        """Every mixture's ``lam`` for ``epoch`` under ``lam_schedule`` (a pure function of the epoch,
        so a resumed run continues the schedule exactly)."""
        from ..etm.mixtures import Mixture
        from .variants import scheduled_lam

        lam = scheduled_lam(self.ctx.hkt.lam, self.lam_schedule, epoch, self.ctx.train.epochs)
        for module in self.family.modules():
            if isinstance(module, Mixture):
                module.lam = lam

    def extra_state_module(self) -> nn.Module:
        return self.family

    def training_step(self, inputs, target):
        output = _call(self.model, inputs)
        parts = self.family.loss_parts(output, target)
        logs = {"l1": float(parts.l1.detach()), "l2": float(parts.l2.detach()),
                "l3": float(parts.l3.detach())}
        return StepOutput(parts.total, logs)

    def train(self, mode: bool = True) -> None:
        self.family.train(mode)
        self.ctx.parent.eval()


class HKTKDMethod(HKTMethod):
    """HKT plus a distillation term on the native output: L2 becomes the task's distillation loss
    against the parent's predictions (the parent runs once more per step, without autograd)."""

    teacher = KDMethod.teacher

    def training_step(self, inputs, target):
        ctx = self.ctx
        output = _call(self.model, inputs)
        parts = self.family.loss_parts(output, target)
        with torch.no_grad():
            teacher = self.parent_adapter.prediction(_call(self.teacher, inputs))
        distill = ctx.task.distill_loss(output.native, teacher, target, temperature=ctx.train.kd_temperature,
                                        weight=ctx.train.kd_weight)
        a1, a2, a3 = ctx.hkt.alphas
        total = a2 * distill
        if a1 > 0:
            total = total + a1 * parts.l1
        if a3 > 0:
            total = total + a3 * parts.l3
        logs = {"l1": float(parts.l1.detach()), "l2": float(parts.l2.detach()), "l3": float(parts.l3.detach()),
                "distill": float(distill.detach())}
        return StepOutput(total, logs)


#: The methods the core registers.
BUILTIN_METHODS: dict[str, type[Method]] = {
    "parent": ParentMethod,
    "baseline": BaselineMethod,
    "kd": KDMethod,
    "hkt": HKTMethod,
    "hkt-kd": HKTKDMethod,
}
