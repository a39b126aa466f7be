"""``hkt``: Hereditary Knowledge Transfer inside a :class:`hkt_core.Family`; ``hkt-kd``: with the
distillation term as its native loss."""

from __future__ import annotations

from typing import Any

import attrs
import torch
from torch import nn

from .aligned import ALIGNMENT_CHOICES, alignment_choice_ok
from .method import Method, MethodContext, StepOutput, option
from .kd import KDMethod, temperature_option, weight_option
from .registry import method


def _schedule_ok(value: Any) -> bool:
    from .variants import LAM_SCHEDULES

    return value in LAM_SCHEDULES


@attrs.frozen
class HKTOptions:
    """``hkt`` / ``hkt-kd`` options (the ``[method]`` table)."""

    #: ``constant`` (the paper: ``lam`` throughout) or ``anneal`` (``lam`` falls to 0 during training,
    #: :func:`hkt_core.train.variants.scheduled_lam`)
    lam_schedule: str = option("constant", _schedule_ok, "one of constant, anneal")
    #: where to mix (:data:`~hkt_core.train.aligned.ALIGNMENT_CHOICES`; ``random`` is the control of an
    #: alignment claim)
    alignment: str = option("auto", alignment_choice_ok, ALIGNMENT_CHOICES)


@method("hkt", roles=("every-pair", "demo"))
class HKTMethod(Method):
    """Hereditary Knowledge Transfer: the child trains inside a :class:`hkt_core.Family` with the
    frozen parent; the ETM operators train with it and are saved beside the child for resuming.
    What is evaluated, saved and exported is the child alone (the native stream).

    Options (:class:`HKTOptions`): ``lam_schedule``, ``alignment``.
    """

    needs_parent = True
    Options = HKTOptions

    @property
    def ddp_find_unused_parameters(self) -> bool:
        """A stream whose loss weight is 0 is scored without autograd: its operators get no gradient."""
        a1, _, a3 = self.ctx.hkt.alphas
        return a1 == 0 or a3 == 0

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        from ...family import Family

        self.lam_schedule = self.options.lam_schedule
        layouts = dict(getattr(ctx.card, "layouts", None) or {})  # a card's [alignment] layouts
        # The run's task (the card's) scores the streams.
        self.family = Family(ctx.parent, ctx.child, self.aligned_at(self.options.alignment), ctx.hkt,
                             example_inputs=ctx.example_inputs, task=ctx.task, manager=ctx.manager, layouts=layouts,
                             fold_parent_bn=getattr(ctx.train, "fold_parent_bn", False)).to(ctx.device)

    def trainable_module(self) -> nn.Module:
        return self.family

    def on_epoch_start(self, epoch: int) -> None:
        """Every mixture's ``lam`` for ``epoch`` under ``lam_schedule`` (a pure function of the epoch,
        so a resumed run continues the schedule exactly)."""
        from ...etm.mixtures import Mixture
        from .variants import scheduled_lam

        lam = scheduled_lam(self.ctx.hkt.lam, self.lam_schedule, epoch, self.ctx.train.epochs)
        for module in self.family.modules():
            if isinstance(module, Mixture):
                module.lam = lam

    def extra_state_module(self) -> nn.Module:
        return self.family

    def training_step(self, inputs, target):
        output = self.model(*inputs)
        parts = self.family.loss_parts(output, target)
        logs = {"l1": float(parts.l1.detach()), "l2": float(parts.l2.detach()),
                "l3": float(parts.l3.detach())}
        return StepOutput(parts.total, logs)

    def train(self, mode: bool = True) -> None:
        self.family.train(mode)
        self.ctx.parent.eval()


@attrs.frozen
class HKTKDOptions(HKTOptions):
    """``hkt-kd`` options: those of ``hkt`` and the distillation ``temperature`` and ``weight`` (as ``kd``'s)."""

    temperature: float = temperature_option()
    weight: float = weight_option()


@method("hkt-kd")
class HKTKDMethod(HKTMethod):
    """HKT plus a distillation term on the native output: L2 becomes the task's distillation loss
    against the parent's predictions (the parent runs once more per step, without autograd)."""

    Options = HKTKDOptions
    teacher = KDMethod.teacher

    def training_step(self, inputs, target):
        ctx = self.ctx
        output = self.model(*inputs)
        with torch.no_grad():
            teacher = self.parent_adapter.prediction(self.teacher(*inputs))
            task_loss = ctx.task.loss(output.native, target)   # logged as l2, as plain HKT logs it

        def distill() -> torch.Tensor:
            return ctx.task.distill_loss(output.native, teacher, target, temperature=self.options.temperature,
                                         weight=self.options.weight)

        parts = self.family.loss_parts(output, target, native=distill)   # L2 is the distillation term
        logs = {"l1": float(parts.l1.detach()), "l2": float(task_loss), "l3": float(parts.l3.detach()),
                "distill": float(parts.l2.detach())}
        return StepOutput(parts.total, logs)
