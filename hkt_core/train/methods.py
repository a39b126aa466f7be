"""The built-in training methods: ``parent``, ``baseline``, ``kd``, ``hkt``, ``hkt-kd``, ``fitnet`` and ``fitnet-kd``.

Each follows :class:`~hkt_core.train.method.Method`. During training a method calls
:attr:`Method.model` (the trainable module, wrapped for distributed training when the trainer runs
under torchrun) rather than the bare module, so gradients are synchronised across processes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .method import Method, MethodContext, StepOutput

__all__ = ["ALIGNMENT_CHOICES", "BUILTIN_METHODS", "BaselineMethod", "FitNetKDMethod", "FitNetMethod", "HKTKDMethod",
           "HKTMethod", "KDMethod", "Method", "MethodContext", "ParentMethod", "StepOutput", "method_alignment"]

#: the ``alignment`` option of the methods that align (``hkt``, ``hkt-kd``, ``fitnet``, ``fitnet-kd``)
ALIGNMENT_CHOICES = "'auto' (the card's alignment: its [alignment] pairs or the automatic one), 'random' " \
                    "(a random valid alignment drawn with the run's seed) or 'random:N' (drawn with seed N)"


def method_alignment(ctx: MethodContext, choice: Any) -> Any:
    """The alignment a run mixes (or hints) at: ``choice`` is the method's ``alignment`` option
    (:data:`ALIGNMENT_CHOICES`); the card gives ``stages``, its fixed pairs and its layouts."""
    from ..align import align
    from ..errors import ConfigError

    card = ctx.card
    stages = card.stages if card is not None else 2
    layouts = dict(getattr(card, "layouts", None) or {})
    if choice == "auto":
        return align(ctx.parent, ctx.child, ctx.example_inputs, stages=stages,
                     pairs=card.alignment if card is not None else None, manager=ctx.manager, layouts=layouts)
    seed = None
    if isinstance(choice, str) and choice == "random":
        seed = int(ctx.train.seed)
    elif isinstance(choice, str) and choice.startswith("random:") and choice[7:].isdigit():
        seed = int(choice[7:])
    if seed is None:
        raise ConfigError(f"method option alignment = {choice!r} is invalid: {ALIGNMENT_CHOICES}")
    return align(ctx.parent, ctx.child, ctx.example_inputs, stages=stages, method="random", seed=seed,
                 manager=ctx.manager, layouts=layouts)



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
    falls to 0 during training, see :func:`hkt_core.train.variants.scheduled_lam`). Option
    ``alignment``: where to mix (:data:`ALIGNMENT_CHOICES`; ``random`` is the control of an
    alignment claim).
    """

    needs_parent = True
    default_options = {"lam_schedule": "constant", "alignment": "auto"}

    @property
    def ddp_find_unused_parameters(self) -> bool:
        """A stream whose loss weight is 0 is scored without autograd: its operators get no gradient."""
        a1, _, a3 = self.ctx.hkt.alphas
        return a1 == 0 or a3 == 0

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        from ..family import Family
        from .variants import check_lam_schedule

        self.lam_schedule = check_lam_schedule(ctx.options.get("lam_schedule", "constant"))
        layouts = dict(getattr(ctx.card, "layouts", None) or {})  # a card's [alignment] layouts
        if ctx.alignment is None:
            ctx.alignment = method_alignment(ctx, ctx.options.get("alignment", "auto"))
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
        with torch.no_grad():
            teacher = self.parent_adapter.prediction(_call(self.teacher, inputs))
            task_loss = ctx.task.loss(output.native, target)   # logged as l2, as plain HKT logs it

        def distill() -> torch.Tensor:
            return ctx.task.distill_loss(output.native, teacher, target, temperature=ctx.train.kd_temperature,
                                         weight=ctx.train.kd_weight)

        parts = self.family.loss_parts(output, target, native=distill)   # L2 is the distillation term
        logs = {"l1": float(parts.l1.detach()), "l2": float(task_loss), "l3": float(parts.l3.detach()),
                "distill": float(parts.l2.detach())}
        return StepOutput(parts.total, logs)


#: FitNet's hint weight by default. The hint is a relative squared error (each sample's parent value's
#: mean square divides it), so it starts near 1 whatever the values' scale; with a raw mean squared error
#: (RepDistiller's ``-b 100``, mdistiller's ``FEAT_WEIGHT: 100``) the parent ResNet-56's 1-D maps
#: made every weight of 10 or more diverge at the card's learning rate
FITNET_HINT_WEIGHT = 1.0


class _HintedChild(nn.Module):
    """What FitNet trains: the child and one learned transfer per hint point. Its forward runs the
    child once and returns the child's output and the named values at the hint points."""

    def __init__(self, child: nn.Module, transfers: nn.ModuleList, child_features: nn.Module) -> None:
        super().__init__()
        self.child = child
        self.transfers = transfers
        # The feature graph shares the child's modules and parameters; it stays outside the module
        # tree so the state dict holds the child and the transfers once.
        object.__setattr__(self, "_features", child_features)

    def forward(self, *inputs: torch.Tensor) -> dict[str, Any]:
        return self._features(*inputs)


class FitNetMethod(Method):
    """FitNet hints (Romero et al., 2015) at the points the alignment chose, in one stage: at every
    mixing pair but the predictions, the child's value is mapped onto the parent's by a learned
    transfer (:func:`hkt_core.etm.transfer_between`, the Family's rule, so any two kinds that can
    mix can be hinted: tokens onto maps, maps onto vectors, ...) and the mean squared error to the
    frozen parent's value, relative to that value's mean square, is added to the task loss::

        loss = task(child, y) + hint_weight * mean_k mean_b |tau_k(child_kb) - parent_kb|^2 / |parent_kb|^2

    (per sample ``b``: the denominator is a constant of the frozen parent, so the hint is scale-free
    and one weight serves maps, tokens and vectors of any magnitude; it is a mean over samples, so
    distributed ranks average to the one-process loss; Romero et al.'s plain L2 hint weighs each
    sample by the parent value's norm instead).

    Options: ``hint_weight`` (default :data:`FITNET_HINT_WEIGHT`), ``alignment``
    (:data:`ALIGNMENT_CHOICES`). The transfers are saved beside the child for resuming and are not
    part of what is exported: the child alone.
    """

    needs_parent = True
    default_options = {"hint_weight": FITNET_HINT_WEIGHT, "alignment": "auto"}

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        from ..errors import ConfigError
        from ..etm import transfer_between
        from ..lockstep.features import OUTPUT, features
        from ..lockstep.layout import to_channels_first

        weight = ctx.options.get("hint_weight", FITNET_HINT_WEIGHT)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0:
            raise ConfigError(f"method option hint_weight = {weight!r} is invalid: a number >= 0")
        self.hint_weight = float(weight)
        if ctx.alignment is None:
            ctx.alignment = method_alignment(ctx, ctx.options.get("alignment", "auto"))
        points = list(ctx.alignment.mixing_pairs)
        if not points:
            raise ConfigError("fitnet needs at least one aligned point before the predictions (stages >= 2)")
        self._output = OUTPUT
        self._to_cf = to_channels_first
        self.parent_names = tuple(dict.fromkeys(p.parent for p in points))
        self.child_names = tuple(dict.fromkeys(p.child for p in points))
        self.points = [(p.parent, p.child) for p in points]
        example = ctx.example_inputs
        self.parent_features = features(ctx.parent, self.parent_names, example, adapter=self.parent_adapter,
                                        output=True)
        child_features = features(ctx.child, self.child_names, example, adapter=self.child_adapter, output=True)
        self.kinds = self._kinds(points, example, child_features)
        transfers = []
        for k, (pname, cname) in enumerate(self.points):
            try:
                transfers.append(transfer_between(self.kinds["child"][cname], self.kinds["parent"][pname],
                                                  manager=ctx.manager))
            except ValueError as exc:
                raise ConfigError(f"fitnet hint point {k + 1} (parent {pname!r} <- child {cname!r}): {exc}") from None
        reference = next(iter(ctx.child.parameters()), None)
        module = nn.ModuleList(transfers)
        if reference is not None:
            module.to(device=reference.device, dtype=reference.dtype)
        self.hinted = _HintedChild(ctx.child, module, child_features)

    def _kinds(self, points, example, child_features) -> dict[str, dict[str, Any]]:
        """The kind of every hinted value: read from the graphs as the alignment read them (class
        tokens and token grids included), with the shapes of one probe run on the example inputs."""
        from ..trace.kinds import ValueKind, traced_kinds
        from ..trace.graph import trace

        traced = getattr(self.ctx.alignment, "traced", None) or (None, None)
        layouts = {**getattr(self.ctx.alignment, "layouts", {}), **dict(getattr(self.ctx.card, "layouts", None) or {})}
        out: dict[str, dict[str, Any]] = {}
        for side, model, adapter, names, feats, recorded in (
                ("parent", self.ctx.parent, self.parent_adapter, self.parent_names, self.parent_features,
                 {p.parent: p.parent_kind for p in points}),
                ("child", self.ctx.child, self.child_adapter, self.child_names, child_features,
                 {p.child: p.child_kind for p in points})):
            t = traced[0 if side == "parent" else 1]
            if t is None or t.model is not model:
                t = trace(model, example, adapter)
            read = traced_kinds(t, layouts, side)
            modes = [(m, m.training) for m in model.modules()]
            model.eval()
            try:
                with torch.no_grad():
                    values = feats(*example)
            finally:
                for m, mode in modes:
                    m.training = mode
            out[side] = {}
            for name in names:
                value = values[name]
                kind = read.get(t.canonical(name)) if name in t.nodes or name in t.aliases else None
                if kind is None or kind.kind != recorded[name]:
                    kind = ValueKind(recorded[name], tuple(value.shape))
                out[side][name] = kind.with_shape(tuple(value.shape))
        return out

    def trainable_module(self) -> nn.Module:
        return self.hinted

    def extra_state_module(self) -> nn.Module:
        return self.hinted

    def _hint(self, child_values: dict[str, Any], parent_values: dict[str, Any]) -> torch.Tensor:
        losses = []
        for transfer, (pname, cname) in zip(self.hinted.transfers, self.points):
            source = self._to_cf(child_values[cname], self.kinds["child"][cname].kind)
            target = self._to_cf(parent_values[pname], self.kinds["parent"][pname].kind)
            target = target.to(source.dtype)
            error = (transfer(source) - target).pow(2).flatten(1).mean(1)
            losses.append((error / target.pow(2).flatten(1).mean(1).clamp_min(1e-12)).mean())
        return torch.stack(losses).mean()

    def _parent_values(self, inputs) -> dict[str, Any]:
        with torch.no_grad():
            return self.parent_features(*inputs)

    def training_step(self, inputs, target):
        values = self.model(*inputs)
        prediction = self.child_adapter.prediction(values[self._output])
        task = self.ctx.task.loss(prediction, target)
        hint = self._hint(values, self._parent_values(inputs))
        return StepOutput(task + self.hint_weight * hint, {"task": float(task.detach()), "hint": float(hint.detach())})

    def train(self, mode: bool = True) -> None:
        self.hinted.train(mode)
        self.ctx.parent.eval()


class FitNetKDMethod(FitNetMethod):
    """FitNet hints plus the distillation term: the task loss becomes the task's distillation loss
    against the parent's predictions (``train.kd_temperature``, ``train.kd_weight``), as in ``kd``;
    the parent's predictions come from the same run that gives its hinted values."""

    def training_step(self, inputs, target):
        ctx = self.ctx
        values = self.model(*inputs)
        prediction = self.child_adapter.prediction(values[self._output])
        parent_values = self._parent_values(inputs)
        teacher = self.parent_adapter.prediction(parent_values[self._output])
        distill = ctx.task.distill_loss(prediction, teacher, target, temperature=ctx.train.kd_temperature,
                                        weight=ctx.train.kd_weight)
        hint = self._hint(values, parent_values)
        return StepOutput(distill + self.hint_weight * hint,
                          {"distill": float(distill.detach()), "hint": float(hint.detach())})


#: The methods the core registers.
BUILTIN_METHODS: dict[str, type[Method]] = {
    "parent": ParentMethod,
    "baseline": BaselineMethod,
    "kd": KDMethod,
    "hkt": HKTMethod,
    "hkt-kd": HKTKDMethod,
    "fitnet": FitNetMethod,
    "fitnet-kd": FitNetKDMethod,
}
