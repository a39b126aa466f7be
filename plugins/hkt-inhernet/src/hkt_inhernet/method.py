"""The ``inherit`` training method: the child is the parent itself, compressed, then fine-tuned.

The trainer builds the method with the usual :class:`~hkt_core.train.method.MethodContext`. The
method ignores the child's *architecture* and keeps only its size: it compresses a copy of the
parent to at most the child's parameter count (``budget = params(child) / params(parent)``) and
puts that copy in ``ctx.child``, so :meth:`trainable_module` and :meth:`deployed` return the
compressed network. The parent is never modified. Fine-tuning uses the task loss, or with option
``kd = true`` the task's distillation loss against the frozen parent.

Options (``ctx.options``, the ``[method]`` table of a run's config; all have TOML defaults in
:attr:`InheritMethod.default_options`): at most one of ``budget`` (fraction of the parent's
parameters), ``rank`` or ``energy`` set to a non-zero value (all zero: the child's budget);
``heads``; ``exclude``; ``skip_first_conv``, ``skip_classifier``, ``skip_unprofitable``; and ``kd``
(distil from the parent) with KD's ``temperature`` and ``weight`` (``--set method.temperature=``;
the older ``train.kd_temperature`` / ``train.kd_weight`` are read as these).

A checkpoint of this method holds ``deployed().state_dict()``, i.e. the compressed network's
keys, not the configured child's: :meth:`InheritMethod.deployed_from_state` rebuilds the network
from a fresh parent and such a state dict.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from hkt_core import adapter_for
from hkt_core import ConfigError
from hkt_core import count_parameters
from hkt_core import Method, MethodContext, StepOutput

from .compress import CompressionReport, compress_model, restore
from .policy import DEFAULT_HEADS, CompressionPolicy

#: rank rules a run may set; 0 means "not set"
RULE_OPTIONS = ("budget", "rank", "energy")


class InheritMethod(Method):
    """InherNet: compress the parent by SVD inheritance into the child's budget, then fine-tune."""

    needs_parent = True
    default_options: dict[str, Any] = {
        "budget": 0.0, "rank": 0, "energy": 0.0, "heads": DEFAULT_HEADS, "exclude": [],
        "skip_first_conv": True, "skip_classifier": True, "skip_unprofitable": True, "kd": False,
        "temperature": 4.0, "weight": 0.5,
    }

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        if ctx.parent is None:
            raise ConfigError("method 'inherit' builds the child from the parent's weights: "
                              "it needs a trained parent")
        options = {**self.default_options, **ctx.options}
        self.kd = options.pop("kd")
        if not isinstance(self.kd, bool):
            raise ConfigError(f"option kd must be true or false, got {self.kd!r}")
        self.temperature, self.weight = options.pop("temperature"), options.pop("weight")
        # a context built with the older spelling (TrainConfig(kd_temperature=..., kd_weight=...))
        older = getattr(ctx.train, "kd_temperature", None), getattr(ctx.train, "kd_weight", None)
        if "temperature" not in ctx.options and older[0] is not None:
            self.temperature = older[0]
        if "weight" not in ctx.options and older[1] is not None:
            self.weight = older[1]
        for name, value, ok, allowed in (("temperature", self.temperature, lambda v: 0 < v <= 100, "(0, 100]"),
                                         ("weight", self.weight, lambda v: 0 <= v <= 1, "[0, 1]")):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
                raise ConfigError(f"method option {name} = {value!r} is invalid: a number in {allowed}")
        rules = {key: options.pop(key) for key in RULE_OPTIONS if key in options}
        chosen = {key: value for key, value in rules.items() if value not in (None, 0, 0.0, False)}
        if len(chosen) > 1:
            raise ConfigError(f"set at most one of the options budget, rank, energy (0 = not set); got "
                              f"{', '.join(f'{k}={v}' for k, v in chosen.items())}")
        #: the child the run was configured with: only its parameter count is used
        self.template = ctx.child
        if not chosen:
            chosen = {"budget": self._child_budget(ctx)}
        self.policy = CompressionPolicy.from_options({**options, **chosen})
        child, self.report = compress_model(ctx.parent, self.policy)
        child.requires_grad_(True)  # the parent copy may carry the parent's frozen flags
        ctx.child = child.to(ctx.device)
        self._child_adapter = adapter_for(ctx.child, ctx.manager)
        self._parent_adapter = adapter_for(ctx.parent, ctx.manager)

    @staticmethod
    def _child_budget(ctx: MethodContext) -> float:
        parent_params = count_parameters(ctx.parent)
        child_params = count_parameters(ctx.child)
        budget = child_params / parent_params if parent_params else 1.0
        if budget >= 1.0:
            raise ConfigError(f"method 'inherit' compresses the parent ({parent_params:,} parameters) "
                              f"to the child's size, but the child has {child_params:,}; use a smaller "
                              "child or set option budget, rank or energy")
        return budget

    @property
    def compression(self) -> CompressionReport:
        """The per-layer report of how the child was built from the parent."""
        return self.report

    def training_step(self, inputs: tuple[torch.Tensor, ...], target: Any) -> StepOutput:
        prediction = self._child_adapter.prediction(self.model(*inputs))
        task = self.ctx.task
        if not self.kd:
            loss = task.loss(prediction, target)
            return StepOutput(loss, {"task_loss": float(loss.detach())})
        with torch.no_grad():
            teacher = self._parent_adapter.prediction(self.ctx.parent(*inputs))
        loss = task.distill_loss(prediction, teacher, target, temperature=float(self.temperature),
                                 weight=float(self.weight))
        return StepOutput(loss, {"kd_loss": float(loss.detach())})

    def deployed(self) -> nn.Module:
        """The compressed child (``ctx.child`` after construction)."""
        return self.ctx.child

    @classmethod
    def deployed_from_state(cls, card: Any, state_dict: dict[str, torch.Tensor], manager=None) -> nn.Module:
        """The network a checkpoint of this method holds: the card's parent, rebuilt in compressed
        form from ``state_dict`` (its ``<layer>.heads`` tensors give ranks and heads) and loaded."""
        from hkt_core import build_model

        parent = build_model(card.parent, manager, **dict(card.parent_options or {}))
        return restore(parent, state_dict)
