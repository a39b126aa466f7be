"""The ``inherit`` training method: the child is the parent itself, compressed, then fine-tuned.

The trainer builds the method with the usual :class:`~hkt_core.train.method.MethodContext`. The
method ignores the child's *architecture* and keeps only its size: it compresses a copy of the
parent to at most the child's parameter count (``budget = params(child) / params(parent)``) and
puts that copy in ``ctx.child``, so :meth:`trainable_module` and :meth:`deployed` return the
compressed network. The parent is never modified. Fine-tuning uses the task loss, or with option
``kd = true`` the task's distillation loss against the frozen parent.

Options (``ctx.options``): one rank rule of :class:`~hkt_inhernet.policy.CompressionPolicy`
(``budget``, ``rank``, ``energy`` or ``ranks``; default: the child's budget), ``heads``,
``skip_first_conv``, ``skip_classifier``, ``skip_unprofitable``, ``exclude``, and ``kd``,
``kd_temperature``, ``kd_weight`` (the last two default to the train config's).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from hkt_core.adapters import adapter_for
from hkt_core.errors import ConfigError
from hkt_core.models import count_parameters
from hkt_core.train.method import Method, MethodContext, StepOutput

from .compress import CompressionReport, compress_model
from .policy import CompressionPolicy

KD_OPTIONS = ("kd", "kd_temperature", "kd_weight")


class InheritMethod(Method):
    """InherNet: compress the parent by SVD inheritance into the child's budget, then fine-tune."""

    needs_parent = True

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        if ctx.parent is None:
            raise ConfigError("method 'inherit' builds the child from the parent's weights: "
                              "it needs a trained parent")
        options = dict(ctx.options)
        kd_options = {key: options.pop(key) for key in KD_OPTIONS if key in options}
        self.kd = kd_options.get("kd", False)
        if not isinstance(self.kd, bool):
            raise ConfigError(f"option kd must be true or false, got {self.kd!r}")
        self.kd_temperature = float(kd_options.get("kd_temperature", ctx.train.kd_temperature))
        self.kd_weight = float(kd_options.get("kd_weight", ctx.train.kd_weight))
        if self.kd_temperature <= 0 or not 0.0 <= self.kd_weight <= 1.0:
            raise ConfigError(f"kd_temperature must be > 0 and kd_weight in [0, 1]; got "
                              f"{self.kd_temperature} and {self.kd_weight}")

        #: the child the run was configured with: only its parameter count is used
        self.template = ctx.child
        self.policy = CompressionPolicy.from_options(options, budget=self._child_budget(ctx))
        child, self.report = compress_model(ctx.parent, self.policy)
        child.requires_grad_(True)  # the parent copy may carry the parent's frozen flags
        ctx.child = child.to(ctx.device)
        self._child_adapter = adapter_for(ctx.child)
        self._parent_adapter = adapter_for(ctx.parent)

    @staticmethod
    def _child_budget(ctx: MethodContext) -> float | None:
        parent_params = count_parameters(ctx.parent)
        child_params = count_parameters(ctx.child)
        budget = child_params / parent_params if parent_params else 1.0
        if budget >= 1.0:
            if any(key in ctx.options for key in ("rank", "energy", "ranks", "budget")):
                return None
            raise ConfigError(f"method 'inherit' compresses the parent ({parent_params:,} parameters) "
                              f"to the child's size, but the child has {child_params:,}; use a smaller "
                              "child or set option budget, rank or energy")
        return budget

    @property
    def compression(self) -> CompressionReport:
        """The per-layer report of how the child was built from the parent."""
        return self.report

    def training_step(self, inputs: tuple[torch.Tensor, ...], target: Any) -> StepOutput:
        prediction = self._child_adapter.prediction(self.ctx.child(*inputs))
        task = self.ctx.task
        if not self.kd:
            loss = task.loss(prediction, target)
            return StepOutput(loss, {"task_loss": float(loss.detach())})
        with torch.no_grad():
            teacher = self._parent_adapter.prediction(self.ctx.parent(*inputs))
        loss = task.distill_loss(prediction, teacher, target, temperature=self.kd_temperature,
                                 weight=self.kd_weight)
        return StepOutput(loss, {"kd_loss": float(loss.detach())})

    def deployed(self) -> nn.Module:
        """The compressed child (``ctx.child`` after construction)."""
        return self.ctx.child
