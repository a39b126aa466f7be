"""``fitnet``: FitNet hints at the automatically aligned points; ``fitnet-kd``: with the distillation term."""

from __future__ import annotations

import attrs
import torch
from torch import nn

from .aligned import ALIGNMENT_CHOICES, AlignedFeatures, alignment_choice_ok
from .kd import temperature_option, weight_option
from .method import Method, MethodContext, StepOutput, number_option, option
from .registry import method

#: FitNet's hint weight by default. The hint is a relative squared error (each sample's parent value's
#: mean square divides it), so it starts near 1 whatever the values' scale; with a raw mean squared error
#: (RepDistiller's ``-b 100``, mdistiller's ``FEAT_WEIGHT: 100``) the parent ResNet-56's 1-D maps
#: made every weight of 10 or more diverge at the card's learning rate
FITNET_HINT_WEIGHT = 1.0


@attrs.frozen
class FitNetOptions:
    """``fitnet`` / ``fitnet-kd`` options (the ``[method]`` table)."""

    #: the weight of the relative hint
    hint_weight: float = number_option(FITNET_HINT_WEIGHT, at_least=0)
    #: where to hint (:data:`~hkt_core.train.aligned.ALIGNMENT_CHOICES`)
    alignment: str = option("auto", alignment_choice_ok, ALIGNMENT_CHOICES)


@method("fitnet")
class FitNetMethod(Method):
    """FitNet hints (Romero et al., 2015) at the points the alignment chose, in one stage: at every
    aligned point but the predictions, the child's value is mapped onto the parent's by a learned
    transfer (:class:`~hkt_core.train.aligned.AlignedFeatures`, the Family's rule, so any two kinds
    that can mix can be hinted: tokens onto maps, maps onto vectors, ...) and the mean squared error
    to the frozen parent's value, relative to that value's mean square, is added to the task loss::

        loss = task(child, y) + hint_weight * mean_k mean_b |tau_k(child_kb) - parent_kb|^2 / |parent_kb|^2

    (per sample ``b``: the denominator is a constant of the frozen parent, so the hint is scale-free
    and one weight serves maps, tokens and vectors of any magnitude; it is a mean over samples, so
    distributed ranks average to the one-process loss; Romero et al.'s plain L2 hint weighs each
    sample by the parent value's norm instead).

    Options (:class:`FitNetOptions`): ``hint_weight``, ``alignment``. The transfers are saved beside
    the child for resuming and are not part of what is exported: the child alone.
    """

    needs_parent = True
    Options = FitNetOptions

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        from ...errors import ConfigError

        self.hint_weight = self.options.hint_weight
        alignment = self.aligned_at(self.options.alignment)
        if not alignment.mixing_pairs:
            raise ConfigError("fitnet needs at least one aligned point before the predictions (stages >= 2)")
        #: the child, the transfers and both networks' values at the hint points
        self.hinted = AlignedFeatures(ctx.parent, ctx.child, alignment, ctx.example_inputs, transfers=True,
                                      layouts=getattr(ctx.card, "layouts", None), manager=ctx.manager,
                                      adapters=(self.parent_adapter, self.child_adapter))
        self.points = [(p.parent, p.child) for p in self.hinted.points]

    def trainable_module(self) -> nn.Module:
        return self.hinted

    def extra_state_module(self) -> nn.Module:
        return self.hinted

    def hint(self, child_values, parent_values) -> torch.Tensor:
        """The relative hint, a mean over points and samples (class docstring)."""
        losses = []
        for v in self.hinted.values(child_values, parent_values):
            error = (v.mapped - v.parent).pow(2).flatten(1).mean(1)
            losses.append((error / v.parent.pow(2).flatten(1).mean(1).clamp_min(1e-12)).mean())
        return torch.stack(losses).mean()

    def task_term(self, inputs, target, values, parent_values) -> tuple[torch.Tensor, dict[str, float]]:
        """The term beside the hint: the task loss."""
        task = self.ctx.task.loss(self.child_adapter.prediction(values["output"]), target)
        return task, {"task": float(task.detach())}

    def training_step(self, inputs, target):
        values = self.model(*inputs)
        parent_values = self.hinted.parent_values(*inputs)
        term, logs = self.task_term(inputs, target, values, parent_values)
        hint = self.hint(values, parent_values)
        return StepOutput(term + self.hint_weight * hint, {**logs, "hint": float(hint.detach())})


@attrs.frozen
class FitNetKDOptions(FitNetOptions):
    """``fitnet-kd`` options: those of ``fitnet`` and the distillation ``temperature`` and ``weight`` (as ``kd``'s)."""

    temperature: float = temperature_option()
    weight: float = weight_option()


@method("fitnet-kd")
class FitNetKDMethod(FitNetMethod):
    """FitNet hints plus the distillation term: the task loss becomes the task's distillation loss
    against the parent's predictions (the options ``temperature`` and ``weight``, as in ``kd``);
    the parent's predictions come from the same run that gives its hinted values."""

    Options = FitNetKDOptions

    def task_term(self, inputs, target, values, parent_values):
        ctx = self.ctx
        teacher = self.parent_adapter.prediction(parent_values["output"])
        distill = ctx.task.distill_loss(self.child_adapter.prediction(values["output"]), teacher, target,
                                        temperature=self.options.temperature, weight=self.options.weight)
        return distill, {"distill": float(distill.detach())}
