"""Aligned features: the parent's and the child's values at an alignment's points, for methods.

:class:`AlignedFeatures` is the one building block of methods that compare the two networks at
aligned points (``fitnet``, ``attention-transfer``; a plugin's too). For an alignment it gives

- the **values** at the aligned points: the child's with autograd, the frozen parent's without,
  from :func:`hkt_core.features` (the model's own eval or train graph, whichever mode the model is
  in: dropout, batch-norm statistics and anything else that reads ``self.training`` behave as in the
  model itself), with each model's output in the same run;
- their **kinds** (:class:`hkt_core.trace.kinds.ValueKind`: map, tokens or vector, class tokens and
  token grids), read as the :class:`hkt_core.Family` reads them: from the eval graph the alignment
  traced, with the shapes of one probe run and the card's stated layouts;
- the **learned transfer** from the child's value onto the parent's at every point
  (:func:`hkt_core.etm.transfer_between`, the rule every mixing point of a Family is built by), when
  asked for.

It is itself the module a method trains (:meth:`Method.trainable_module`): the child and the
transfers; its state dict holds each once (``child.*``, ``transfers.*``), the parent is outside it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import torch
from torch import nn

from ...errors import AlignmentError, ConfigError

#: the ``alignment`` option of the methods that align (``hkt``, ``hkt-kd``, ``fitnet``, ``fitnet-kd``,
#: ``attention-transfer``)
ALIGNMENT_CHOICES = "'auto' (the card's alignment: its [alignment] pairs or the automatic one), 'random' " \
                    "(a random valid alignment drawn with the run's seed) or 'random:N' (drawn with seed N)"


def alignment_choice_ok(choice: Any) -> bool:
    """Whether ``choice`` is one of :data:`ALIGNMENT_CHOICES`."""
    return isinstance(choice, str) and (choice in ("auto", "random") or
                                        (choice.startswith("random:") and choice[7:].isdigit()))


def method_alignment(ctx: Any, choice: Any, stages: int | None = None) -> Any:
    """The alignment a run mixes (or compares) at: ``choice`` is the method's ``alignment`` option
    (:data:`ALIGNMENT_CHOICES`); the card gives ``stages``, its fixed pairs and its layouts.
    ``stages`` other than the card's aligns automatically at that count (the card's fixed pairs are
    for its own count, as with ``--stages``)."""
    from ...align import align

    card = ctx.card
    card_stages = card.stages if card is not None else 2
    fixed = card.alignment if card is not None else None
    if stages is not None and stages != card_stages:
        card_stages, fixed = stages, None
    layouts = dict(getattr(card, "layouts", None) or {})
    if not alignment_choice_ok(choice):
        raise ConfigError(f"method option alignment = {choice!r} is invalid: {ALIGNMENT_CHOICES}")
    if choice == "auto":
        return align(ctx.parent, ctx.child, ctx.example_inputs, stages=card_stages, pairs=fixed,
                     manager=ctx.manager, layouts=layouts)
    seed = int(ctx.train.seed) if choice == "random" else int(choice[7:])
    return align(ctx.parent, ctx.child, ctx.example_inputs, stages=card_stages, method="random", seed=seed,
                 manager=ctx.manager, layouts=layouts)


@attrs.frozen
class AlignedPoint:
    """One aligned point: the parent's and the child's value names and kinds (shapes of the probe)."""

    parent: str
    child: str
    parent_kind: Any   # hkt_core.trace.kinds.ValueKind
    child_kind: Any

    def describe(self) -> str:
        return f"parent {self.parent!r} ({self.parent_kind.describe()}) <- child {self.child!r} " \
               f"({self.child_kind.describe()})"


@attrs.frozen
class PointValues:
    """The two values at one point, channel-first (tokens ``(B, D, N)``: ``to_channels_first``), with
    the child's mapped onto the parent's kind by the point's transfer (None without transfers)."""

    point: AlignedPoint
    child: torch.Tensor
    parent: torch.Tensor
    mapped: torch.Tensor | None = None


def on_positions(value: torch.Tensor, kind: Any) -> torch.Tensor:
    """``value`` (as the model holds it, of ``kind``) as ``(B, C, *positions)``: a map as it is, tokens
    channel-first without their class token and on their grid when they have one (``(B, D, h, w)``),
    else ``(B, D, N)``; a vector ``(B, C)`` has no positions and is refused (``ValueError``)."""
    if kind.kind == "vector":
        raise ValueError(f"a vector {tuple(value.shape)} has no positions")
    if kind.kind == "map":
        return value
    tokens = value.movedim(-1, 1)
    if kind.class_token:
        tokens = tokens[:, :, 1:]
    return tokens.reshape(*tokens.shape[:2], *kind.grid) if kind.grid else tokens


class _Outside:
    """Holds modules that share the child's or the parent's parameters out of the module tree (so
    the state dict holds each tensor once and the parent's never)."""

    def __init__(self, **modules: nn.Module) -> None:
        self.__dict__.update(modules)


class AlignedFeatures(nn.Module):
    """For an alignment, the parent's and the child's values at its points (module docstring).

    ``alignment`` is an :class:`hkt_core.Alignment` or a list of ``(parent, child)`` name pairs whose
    last pair is the predictions, as a Family takes it; every other pair is a point, one value per
    side. ``example_inputs`` are traced and probed once. ``layouts`` (a card's ``[alignment]``
    layouts) state kinds the graph reading gets wrong, over the alignment's own. ``transfers=True``
    builds one learned transfer per point, from the child's value onto the parent's (a point no
    transfer connects is one :class:`~hkt_core.errors.ConfigError` line naming it).

    ``forward(*inputs)`` runs the child once: ``{child name: value, "output": the child's output}``
    with autograd. :meth:`parent_values` runs the frozen parent without autograd (same keys, the
    parent's names). :meth:`values` pairs both runs up by point (:class:`PointValues`).
    """

    def __init__(self, parent: nn.Module, child: nn.Module, alignment: Any, example_inputs: Any, *,
                 transfers: bool = False, layouts: Mapping[str, str] | None = None, manager: Any = None,
                 adapters: tuple[Any, Any] | None = None) -> None:
        super().__init__()
        from ...adapters import adapter_for
        from ...align.resolve import name_pairs
        from ...lockstep.features import features
        from ...plugins.host import resolve_manager

        manager = resolve_manager(manager)
        pairs = name_pairs(alignment)[:-1]
        several = [i for i, (p, c) in enumerate(pairs) if len(p) != 1 or len(c) != 1]
        if several:
            raise AlignmentError(f"AlignedFeatures compares one value per side; point {several[0] + 1} names "
                                 f"{list(pairs[several[0]][0])} <- {list(pairs[several[0]][1])}")
        names = [(p[0], c[0]) for p, c in pairs]
        inputs = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
        parent_adapter, child_adapter = adapters or (adapter_for(parent, manager), adapter_for(child, manager))
        self.child = child
        stated = {**dict(getattr(alignment, "layouts", None) or {}), **dict(layouts or {})}
        traced = getattr(alignment, "traced", None) or (None, None)
        kinds = {side: _kinds(model, adapter, side, [n[i] for n in names], inputs, stated, traced[i])
                 for i, (side, model, adapter) in enumerate((("parent", parent, parent_adapter),
                                                             ("child", child, child_adapter)))}
        #: the points, in the alignment's order
        self.points = tuple(AlignedPoint(p, c, kinds["parent"][p], kinds["child"][c]) for p, c in names)
        self._graphs = _Outside(
            parent=features(parent, tuple(dict.fromkeys(p for p, _ in names)), inputs, adapter=parent_adapter,
                            output=True),
            child=features(child, tuple(dict.fromkeys(c for _, c in names)), inputs, adapter=child_adapter,
                           output=True),
            parent_model=parent)
        self.transfers = _transfers(self.points, manager, child) if transfers else None

    def forward(self, *inputs: torch.Tensor) -> dict[str, Any]:
        return self._graphs.child(*inputs)

    def parent_values(self, *inputs: torch.Tensor) -> dict[str, Any]:
        """The frozen parent's values at the points and its output (key ``"output"``), without autograd."""
        with torch.no_grad():
            return self._graphs.parent(*inputs)

    def values(self, child_values: Mapping[str, Any], parent_values: Mapping[str, Any]) -> list[PointValues]:
        """Per point, both values channel-first and, with transfers, the child's mapped onto the
        parent's (the parent's in the child's dtype)."""
        from ...lockstep.layout import to_channels_first

        out = []
        for k, point in enumerate(self.points):
            child = to_channels_first(child_values[point.child], point.child_kind.kind)
            parent = to_channels_first(parent_values[point.parent], point.parent_kind.kind).to(child.dtype)
            mapped = self.transfers[k](child) if self.transfers is not None else None
            out.append(PointValues(point, child, parent, mapped))
        return out

    def train(self, mode: bool = True) -> AlignedFeatures:
        """The child (and the transfers) in ``mode``; the parent stays in eval mode."""
        super().train(mode)
        self._graphs.parent_model.eval()
        return self

    def extra_repr(self) -> str:
        return "points=[" + "; ".join(p.describe() for p in self.points) + "]"


def _kinds(model: nn.Module, adapter: Any, side: str, names: Sequence[str], inputs: tuple[torch.Tensor, ...],
           layouts: Mapping[str, str], traced: Any) -> dict[str, Any]:
    """The kind of every named value of ``model``, as the Family reads it: the eval graph (the one
    the alignment traced when it is this model's), one no-grad probe for the shapes, the stated
    layouts over the graph's evidence (:func:`hkt_core.trace.kinds.infer_kinds`)."""
    from ...lockstep import LockstepGraph, follow
    from ...trace.graph import trace
    from ...trace.kinds import infer_kinds, stated_nodes

    reference = next(iter(model.parameters()), None)
    inputs = tuple(inputs if reference is None else (follow(t, reference) for t in inputs))
    usable = (traced is not None and traced.model is model and traced.backend in ("fx", "export")
              and type(getattr(traced, "adapter", None)) is type(adapter))
    graph = LockstepGraph(model, adapter, side, traced.gm if usable else trace(model, inputs, adapter).gm)
    probed = graph.probe_all(model, inputs)

    def resolve(name: str) -> Any:
        try:
            return graph.node(name)
        except AlignmentError:
            return None

    def shape_of(node: Any) -> tuple[int, ...] | None:
        value = probed.get(node)
        return tuple(value.shape) if isinstance(value, torch.Tensor) else None

    try:
        kinds = infer_kinds(graph.gm, shape_of, stated_nodes(layouts, resolve, side))
    except AlignmentError as exc:
        raise ConfigError(f"AlignedFeatures: {exc}") from None
    out = {}
    for name in names:
        node = graph.node(name)
        value = probed.get(node)
        if not isinstance(value, torch.Tensor) or value.dim() < 2 or node not in kinds:
            raise AlignmentError(f"{side} value {name!r} must be a batched tensor (B, C, ...), got "
                                 f"{type(value).__name__}{tuple(value.shape) if isinstance(value, torch.Tensor) else ''}")
        out[name] = kinds[node]
    return out


def _transfers(points: Sequence[AlignedPoint], manager: Any, child: nn.Module) -> nn.ModuleList:
    """One transfer per point, from the child's value onto the parent's, on the child's device and dtype."""
    from ...etm import transfer_between

    built = []
    for k, point in enumerate(points):
        try:
            built.append(transfer_between(point.child_kind, point.parent_kind, manager=manager))
        except ValueError as exc:
            raise ConfigError(f"aligned point {k + 1} ({point.describe()}): {exc}") from None
    module = nn.ModuleList(built)
    reference = next(iter(child.parameters()), None)
    if reference is not None and reference.is_floating_point():
        module.to(device=reference.device, dtype=reference.dtype)
    return module


__all__ = ["ALIGNMENT_CHOICES", "AlignedFeatures", "AlignedPoint", "PointValues", "alignment_choice_ok",
           "method_alignment", "on_positions"]
