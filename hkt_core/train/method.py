"""The method protocol: what a training method receives and returns per step.

A method is a class registered in the ``methods`` registry (``registry.add("kd", KDMethod)``). The
trainer builds it once per run with a :class:`MethodContext`, optimises the parameters of
:meth:`Method.trainable_module`, calls :meth:`Method.training_step` for every training batch and
evaluates :meth:`Method.deployed` (the child alone) on validation and test data.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from torch import nn

from ..adapters import adapter_for
from ..config import HKTConfig, TrainConfig


@attrs.define
class MethodContext:
    """Everything a method may use. ``parent`` is None unless the method sets ``needs_parent``."""

    child: nn.Module
    task: Any  # hkt_core.tasks.Task
    train: TrainConfig
    hkt: HKTConfig
    card: Any = None  # hkt_core.pairs.PairCard
    parent: nn.Module | None = None
    alignment: Any = None  # hkt_core.Alignment, for methods that mix
    example_inputs: tuple[torch.Tensor, ...] = ()
    device: torch.device = attrs.field(factory=lambda: torch.device("cpu"))
    options: dict[str, Any] = attrs.field(factory=dict)
    #: the plugin manager the run looks names up in (None: the process-wide default, resolved here)
    manager: Any = None

    def __attrs_post_init__(self) -> None:
        if self.manager is None:
            from ..plugins.host import resolve_manager

            self.manager = resolve_manager(None)


@attrs.frozen
class StepOutput:
    """One training step's result: the loss to back-propagate and scalars to log."""

    loss: torch.Tensor
    logs: dict[str, float] = attrs.field(factory=dict)


class Method:
    """Base class of training methods.

    Subclasses set ``needs_parent`` when they use a trained parent, and implement
    :meth:`training_step`. The default trainable module is the child; methods with trainable
    operators of their own (HKT's transfers) return a module holding both, and name the child's
    prefix in ``child_prefix`` so checkpoints store exactly ``child.state_dict()``.

    In :meth:`training_step`, call :attr:`model` (not the bare trainable module): under distributed
    training it is the ``DistributedDataParallel`` wrapper that synchronises gradients.
    """

    needs_parent: bool = False
    #: trains the parent itself (the ``parent`` method): the trainer then caches the result
    trains_parent: bool = False
    #: passed to DistributedDataParallel: True when some trainable parameters may get no gradient
    ddp_find_unused_parameters: bool = False
    #: default keyword options of the method; they form the ``[method]`` table of config.toml
    default_options: dict[str, Any] = {}

    def __init__(self, ctx: MethodContext) -> None:
        self.ctx = ctx
        self._wrapped: nn.Module | None = None
        #: the adapters of the networks, resolved once: they say which output is the prediction
        self.child_adapter = adapter_for(ctx.child, ctx.manager)
        self.parent_adapter = adapter_for(ctx.parent, ctx.manager) if ctx.parent is not None else None

    @property
    def model(self) -> nn.Module:
        """The trainable module to call in :meth:`training_step` (wrapped for DDP if distributed)."""
        wrapped = getattr(self, "_wrapped", None)
        return wrapped if wrapped is not None else self.trainable_module()

    def wrap(self, wrapped: nn.Module | None) -> None:
        """Set by the trainer: the distributed wrapper of :meth:`trainable_module`."""
        self._wrapped = wrapped

    def trainable_module(self) -> nn.Module:
        """The module whose parameters the optimiser updates (the child by default)."""
        return self.ctx.child

    def extra_state_module(self) -> nn.Module | None:
        """Trainable parts that are not the child (saved beside it for exact resume)."""
        return None

    def deployed(self) -> nn.Module:
        """The network that is evaluated and exported: the child alone."""
        return self.ctx.child

    def training_step(self, inputs: tuple[torch.Tensor, ...], target: Any) -> StepOutput:
        raise NotImplementedError

    def on_epoch_start(self, epoch: int) -> None:
        """Called by the trainer before each training epoch (0-based, also after a resume): for
        settings that follow a schedule. The default does nothing."""

    def train(self, mode: bool = True) -> None:
        self.trainable_module().train(mode)
        if self.ctx.parent is not None:
            self.ctx.parent.eval()
