"""The method protocol: what a training method receives and returns per step.

A method is a class registered in the ``methods`` registry: the core's with ``@method("kd")`` on the
class (:mod:`hkt_core.train.methods.registry`), a plugin's the same way or by ``registry.add``. The
trainer builds it once per run with a :class:`MethodContext`, optimises the parameters of
:meth:`Method.trainable_module`, calls :meth:`Method.training_step` for every training batch and
evaluates :meth:`Method.deployed` (the child alone) on validation and test data.

A method's options are a typed, frozen record (:attr:`Method.Options`, fields made with
:func:`option` / :func:`number_option`): the trainer's ``[method]`` table (``default_options``, read
from the record's defaults) updated by ``--set method.<key>=...``, checked once when the method is
built and read as ``self.options``.
"""

from __future__ import annotations

import math
import contextlib
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import attrs
import torch
from torch import nn

from ...adapters import adapter_for
from ...config import HKTConfig, TrainConfig
from ...errors import ConfigError


def option(default: Any, check: Callable[[Any], bool], what: str, *, real: bool = False) -> Any:
    """A field of an options record: its ``default`` and the rule a value follows; a value that breaks
    it is one :class:`~hkt_core.errors.ConfigError` line, ``method option NAME = VALUE is invalid: WHAT``.
    ``real``: a float field (an integer given in the ``[method]`` table is read as a float)."""
    def validate(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if not check(value):
            raise ConfigError(f"method option {attribute.name} = {value!r} is invalid: {what}")

    return attrs.field(default=default, validator=validate, metadata={"real": real})


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def number_option(default: float, *, at_least: float | None = None, above: float | None = None,
                  integer: bool = False) -> Any:
    """A number field (an integer with ``integer=True``) of an options record, ``>= at_least`` or
    ``> above``; :func:`read_options` reads an integer given for a float field as a float."""
    kind = "an integer" if integer else "a number"
    bound = f" >= {at_least:g}" if at_least is not None else f" > {above:g}" if above is not None else ""

    def check(value: Any) -> bool:
        if not _is_number(value) or (integer and not isinstance(value, int)):
            return False
        return (at_least is None or value >= at_least) and (above is None or value > above)

    return option(default, check, f"{kind}{bound}", real=not integer)


def read_options(record: type, given: Mapping[str, Any], method_name: str) -> Any:
    """``record`` built from the ``[method]`` table ``given``: an unknown key or a value a field
    refuses is one :class:`~hkt_core.errors.ConfigError` line."""
    known = [f.name for f in attrs.fields(record)]
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ConfigError(f"method {method_name!r} has no option(s) {', '.join(unknown)}; it takes: "
                          f"{', '.join(sorted(known)) or 'none'}")   # the words of hkt_core.train's own check
    built = record(**dict(given))
    reals = {f.name: float(getattr(built, f.name)) for f in attrs.fields(record)
             if f.metadata.get("real") and type(getattr(built, f.name)) is int}
    return attrs.evolve(built, **reals) if reals else built


def option_defaults(record: type) -> dict[str, Any]:
    """The ``[method]`` table of a record's defaults (what ``default_options`` is for a method with one)."""
    return attrs.asdict(record())


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
            from ...plugins.host import resolve_manager

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
    #: default keyword options of the method; they form the ``[method]`` table of config.toml (read
    #: from :attr:`Options` when the method has one)
    default_options: dict[str, Any] = {}
    #: the method's options record (an ``attrs.frozen`` class whose fields all have defaults, see
    #: :func:`option`); None: the method reads ``ctx.options`` itself
    Options: ClassVar[type | None] = None
    #: the name ``@method`` registered the class under ("" for a class registered otherwise)
    method_name: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("Options") is not None and "default_options" not in cls.__dict__:
            cls.default_options = option_defaults(cls.Options)

    def __init__(self, ctx: MethodContext) -> None:
        self.ctx = ctx
        self._wrapped: nn.Module | None = None
        #: the checked options record (:attr:`Options`), None for a method without one
        self.options = (read_options(self.Options, ctx.options, self.method_name or type(self).__name__)
                        if self.Options is not None else None)
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

    def step(self, inputs: tuple[torch.Tensor, ...], target: Any,
             update: Callable[[torch.Tensor], None]) -> StepOutput:
        """One training step: the seam the trainer and its pre-flight call. The default runs
        :meth:`training_step` (under the run's autocast, :meth:`forward_context`) and hands its loss
        to ``update``, which checks it is finite, clears the gradients, back-propagates and takes the
        optimiser step. A method that needs two backward passes, or an optimiser step of its own,
        overrides this and calls ``update`` (or steps itself) as it needs."""
        with self.forward_context():
            result = self.training_step(inputs, target)
        update(result.loss)
        return result

    def forward_context(self):
        """The context the forward pass runs in: the run's autocast, set by the trainer
        (:meth:`use_forward_context`); none by default."""
        factory = self.__dict__.get("_forward_context")
        return factory() if factory is not None else contextlib.nullcontext()

    def use_forward_context(self, factory: Callable[[], Any] | None) -> None:
        """Set by the trainer: a factory of the context :meth:`step` runs the forward pass in."""
        self._forward_context = factory

    def on_epoch_start(self, epoch: int) -> None:
        """Called by the trainer before each training epoch (0-based, also after a resume): for
        settings that follow a schedule. The default does nothing."""

    def train(self, mode: bool = True) -> None:
        self.trainable_module().train(mode)
        if self.ctx.parent is not None:
            self.ctx.parent.eval()

    # -- for methods that mix or compare at aligned points ----------------------------------------
    @property
    def alignment(self) -> Any:
        """The alignment the method mixes or compares at (None for a method that aligns nothing): the
        one :meth:`aligned_at` chose, else the one the trainer gave (``ctx.alignment``). The trainer
        and the pre-flight read it here, and the trainer records it in the run folder."""
        chosen = self.__dict__.get("_aligned")
        return chosen if chosen is not None else self.ctx.alignment

    def aligned_at(self, choice: Any = "auto", stages: int | None = None) -> Any:
        """The run's alignment: the one the trainer gave (a resumed run's recorded ``alignment.json``)
        or the one ``choice`` selects (:data:`hkt_core.train.methods.aligned.ALIGNMENT_CHOICES`;
        ``stages`` other than the card's aligns automatically at that count). The method keeps it
        (:attr:`alignment`); the context is not written."""
        if self.alignment is None:
            from .aligned import method_alignment

            self._aligned = method_alignment(self.ctx, choice, stages=stages)
        return self.alignment
