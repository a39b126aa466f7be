"""The parent-child family: the HKT plan of Algorithm 1, its composite loss and export.

At mixing point ``i`` both pre-mix values exist; the Family computes, per direction,

    phi_p = z~_i + lam * GA(query=z~_i, source=tau_p(z_i))    child -> parent ("to_parent")
    phi_c = z_i  + lam * GA(query=z_i,  source=tau_c(z~_i))   parent -> child ("to_child")

and writes them into the streams in place of the nodes' values, so every downstream use of those
nodes (skip connections included) sees the mixed value. Three predictions come out: ``native``
(the child alone, what gets deployed), ``inherited`` (the child with parent->child mixing) and
``parent_head`` (the parent with child->parent mixing).

Running the two networks node by node, in lockstep, is :mod:`hkt_core.lockstep`'s job (tracing,
in-place rewriting, layout inference, the three streams' schedule); this module holds the plan:
where the mixing points are, their ETM operators, what they compute, and the loss.

The parent is frozen: ``requires_grad=False``, always in eval mode (``Family.train`` cannot flip
it), so its weights and buffers never change.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import fx, nn

from .adapters import adapter_for
from .align.resolve import name_pairs
from .config import HKTConfig
from .errors import AlignmentError, ConfigError
from .etm.crosskind import transfer_between
from .etm.mixtures import split_mix
from .trace.modes import mode_graphs
from .trace.kinds import ValueKind, donor_kind, infer_kinds, mixing_pair_problem, parse_stated, stated_nodes
from .lockstep import LockstepGraph, LockstepStreams, follow, from_channels_first, to_channels_first


#: the task a Family built without ``task=`` scores its streams with
DEFAULT_TASK = "classification"


class HKTOutput(NamedTuple):
    """What :meth:`Family.forward` returns (predictions as chosen by each model's adapter)."""

    native: torch.Tensor
    """The child alone, no mixing: what gets deployed (supervised by L2)."""
    inherited: torch.Tensor
    """The child stream with the parent's features mixed in (L1)."""
    parent_head: torch.Tensor
    """The parent stream with the child's features mixed in (L3)."""
    feature_loss: torch.Tensor | None = None
    """Mean of the feature losses the mixtures returned (the ``mse`` ablation's); None when none did."""


class HKTLoss(NamedTuple):
    """The composite loss ``a1*l1 + a2*l2 + a3*l3`` and its parts (for logging)."""

    total: torch.Tensor
    l1: torch.Tensor
    l2: torch.Tensor
    l3: torch.Tensor


# -- the plan -------------------------------------------------------------------------------------

class _Point(NamedTuple):
    index: int
    direction: str
    parent_nodes: tuple[fx.Node, ...]
    child_nodes: tuple[fx.Node, ...]
    parent_receiver: fx.Node
    child_receiver: fx.Node
    parent_kinds: tuple[ValueKind, ...] = ()
    child_kinds: tuple[ValueKind, ...] = ()

    @property
    def parent_receiver_kind(self) -> str:
        return self.parent_kinds[self.parent_nodes.index(self.parent_receiver)].kind

    @property
    def child_receiver_kind(self) -> str:
        return self.child_kinds[self.child_nodes.index(self.child_receiver)].kind


class _ModePlan(NamedTuple):
    """The child's graph in one mode, the plan's points on its nodes and the streams over it."""

    graph: LockstepGraph
    plan: list[_Point]
    streams: LockstepStreams


class MixingPoint(nn.Module):
    """The ETM operators of one mixing point: one transfer and one mixture per direction."""

    def __init__(self, to_child: tuple[nn.Module, nn.Module] | None,
                 to_parent: tuple[nn.Module, nn.Module] | None,
                 parent_extractor: nn.Module, child_extractor: nn.Module) -> None:
        super().__init__()
        self.to_child_transfer, self.to_child_mixture = to_child if to_child else (None, None)
        self.to_parent_transfer, self.to_parent_mixture = to_parent if to_parent else (None, None)
        self.parent_extractor = parent_extractor
        self.child_extractor = child_extractor


def _channels_first(values: Sequence[torch.Tensor], kinds: Sequence[ValueKind]) -> list[torch.Tensor]:
    return [to_channels_first(v, k.kind) for v, k in zip(values, kinds)]


def _one_way(transfer: nn.Module, extractor: nn.Module, mixture: nn.Module, donors: list[torch.Tensor],
             donor_kinds: Sequence[ValueKind], receiver: torch.Tensor, kind: str,
             feature_losses: list[torch.Tensor]) -> torch.Tensor:
    """The receiver mixed with the donors (in the receiver's layout); a feature loss is collected."""
    donor = transfer(extractor(*_channels_first(donors, donor_kinds)))
    value, loss = split_mix(mixture(to_channels_first(receiver, kind), donor))
    if loss is not None:
        feature_losses.append(loss)
    return from_channels_first(value, kind)


def _in_traced_dtypes(inputs: tuple[torch.Tensor, ...], graph: LockstepGraph) -> tuple[torch.Tensor, ...]:
    """Inputs made from shapes alone, in the dtypes the traced graph saw: an input the trace (fx or
    ``torch.export``) recorded as integer (token ids, attention masks) becomes ones of its shape (a
    valid id and an unmasked position), since random floats are no tokens."""
    out = []
    for value, holder in zip(inputs, graph.placeholders):
        seen = holder.meta.get("val")
        dtype = seen.dtype if isinstance(seen, torch.Tensor) else holder.meta.get("hkt", {}).get("dtype")
        if (isinstance(value, torch.Tensor) and isinstance(dtype, torch.dtype)
                and not dtype.is_floating_point and not dtype.is_complex and value.is_floating_point()):
            value = torch.ones(value.shape, dtype=dtype)
        out.append(value)
    return (*out, *inputs[len(out):])


class Family(nn.Module):
    """A frozen parent and a trainable child run in lockstep (Algorithm 1 of the paper).

    ``alignment`` is an :class:`hkt_core.align.Alignment` or a list of ``(parent_name, child_name)``
    pairs (names follow :mod:`hkt_core.trace.names`; a side may list several names,
    combined by ``config.extractor``); the last pair is the predictions and is not mixed. Example
    inputs (used once to learn the shapes at the mixing points) default to the alignment's
    ``input_shapes``. ``task`` is a task or the name of a registered one (default ``classification``);
    ``layouts`` maps node names (``"name"`` for both models, ``"parent:name"`` / ``"child:name"``
    for one) to the value's kind, ``map`` / ``tokens`` / ``vector`` (:mod:`hkt_core.trace.kinds`; the older
    ``channels_first`` / ``channels_last`` are read as map / tokens), where the automatic reading
    (rank-3 values produced by Linear/LayerNorm/attention are tokens ``(B, T, D)``) is wrong. ``manager`` is the
    plugin manager operators and tasks are looked up in (default: the process-wide one).
    ``fold_parent_bn`` folds the frozen parent's BatchNorms into its convolutions in the lockstep
    graph (:mod:`hkt_core.lockstep.fold`; the parent module is not changed), equal to float32 rounding.
    """

    def __init__(self, parent: nn.Module, child: nn.Module, alignment: Any, config: HKTConfig | None = None,
                 example_inputs: torch.Tensor | Sequence[torch.Tensor] | None = None, *,
                 task: Any = None, layouts: Mapping[str, str] | None = None, manager: Any = None,
                 fold_parent_bn: bool = True) -> None:
        super().__init__()
        config = self._checked_config(config, layouts)
        from .plugins.host import resolve_manager

        self._manager = resolve_manager(manager)
        self.config = config
        self._task = task
        self.parent = parent
        self.child = child
        parent.requires_grad_(False)
        parent.eval()

        pairs = name_pairs(alignment)
        directions = config.directions_for(len(pairs) - 1)
        operators = self._lookup_operators(config)
        given = self._given_inputs(example_inputs)
        self._trace(parent, child, alignment, given)
        points = self._locate_points(self._cg, pairs, directions)
        inputs = self._example_inputs(alignment, given, child)
        pvals, cvals = self._pg.probe_all(parent, inputs), self._cg.probe_all(child, inputs)
        stated = {**getattr(alignment, "layouts", {}), **(layouts or {})}   # the alignment's, then ours
        self._plan = self._with_layouts(points, inputs, pvals, cvals, stated)
        self.points = nn.ModuleList(self._build_operators(k, p, pvals, cvals, *operators)
                                    for k, p in enumerate(self._plan))
        reference = next(iter(child.parameters()), None)
        if reference is not None and reference.is_floating_point():
            self.points.to(device=reference.device, dtype=reference.dtype)
        # The frozen parent's BatchNorms folded into its convolutions, in the lockstep graph's own
        # module tree (hkt_core.lockstep.fold); the parent module and its state dict stay as they are.
        self.fold_parent_bn = bool(fold_parent_bn)
        self._folded: list[nn.Module] = []
        if self.fold_parent_bn:
            from .lockstep.fold import fold_lockstep_parent, keep_fresh

            keep = {n for p in self._plan for n in p.parent_nodes} | {self._pg.node(pairs[-1][0][-1])}
            self._folded = fold_lockstep_parent(self._pg, keep)
            keep_fresh(parent, self._folded)   # loading the parent's weights refolds
        # One schedule per mode of the child: its eval graph and its train graph (the same graph
        # when both modes trace to the same code; hkt_core.trace.modes).
        self._modes = self._mode_plans(child, pairs, directions, inputs)
        self._check_alphas(directions)
        # A check run of the mixing (catches token-layout errors such as 'spatial' on vectors now).
        self._check_mixing(pvals, cvals)

    # -- construction steps -----------------------------------------------------------------------
    @staticmethod
    def _checked_config(config: HKTConfig | None, layouts: Mapping[str, str] | None) -> HKTConfig:
        config = HKTConfig() if config is None else config
        if not isinstance(config, HKTConfig):
            raise ConfigError(f"Family: config must be an HKTConfig, got {type(config).__name__}")
        for name, layout in (layouts or {}).items():
            try:
                parse_stated(layout, f"Family: layouts[{name!r}]")
            except AlignmentError as exc:
                raise ConfigError(str(exc)) from None
        return config

    def _lookup_operators(self, config: HKTConfig) -> tuple[Callable[[], nn.Module], type, type]:
        """A maker of the configured mixture (with its options), the transfer and extractor classes."""
        manager = self._manager
        mixture_cls = manager.lookup("mixtures", config.mixture)
        transfer_cls = manager.lookup("transfers", config.transfer)
        extractor_cls = manager.lookup("extractors", config.extractor)

        def make_mixture() -> nn.Module:
            return mixture_cls(lam=config.lam, tokens=config.tokens, **config.mixture_options)

        try:
            self._probe_mixture = make_mixture()
        except TypeError as exc:
            raise ConfigError(f"HKTConfig.mixture_options = {config.mixture_options!r} do not fit mixture "
                              f"{config.mixture!r}: {exc}") from None
        self._mixes = bool(getattr(self._probe_mixture, "mixes", True))
        return make_mixture, transfer_cls, extractor_cls

    def _adds_loss(self, receiver: torch.Tensor) -> bool:
        """Whether the mixture returns a feature loss (tried once on ``receiver`` against itself)."""
        with torch.no_grad():
            return split_mix(self._probe_mixture(receiver, receiver))[1] is not None

    @staticmethod
    def _given_inputs(example_inputs: Any) -> tuple[torch.Tensor, ...] | None:
        if example_inputs is None:
            return None
        return (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)

    def _trace(self, parent: nn.Module, child: nn.Module, alignment: Any,
               inputs: tuple[torch.Tensor, ...] | None) -> None:
        """Both networks' eval graphs as lockstep graphs, from the traces the alignment was computed
        on when it has them (same model, fx or torch.export backend, same adapter class), traced
        now otherwise: by :func:`hkt_core.trace.trace` (fx, then the torch.export fallback) when
        example inputs are given, by torch.fx alone when not."""
        reused = getattr(alignment, "traced", None) or (None, None)
        for attr, model, label, traced in (("_pg", parent, "parent", reused[0]), ("_cg", child, "child", reused[1])):
            adapter = adapter_for(model, self._manager)
            usable = (traced is not None and traced.model is model and traced.backend in ("fx", "export")
                      and type(getattr(traced, "adapter", None)) is type(adapter))
            gm = traced.gm if usable else None
            if gm is None and inputs is not None:
                from .trace.graph import trace

                reference = next(iter(model.parameters()), None)
                gm = trace(model, tuple(inputs if reference is None else (follow(t, reference) for t in inputs)),
                           adapter).gm
            # The graphs live outside the module tree: they share the models' parameters.
            object.__setattr__(self, attr, LockstepGraph(model, adapter, label, gm))

    def _mode_plans(self, child: nn.Module, pairs: list[tuple[tuple[str, ...], tuple[str, ...]]],
                    directions: Sequence[str], inputs: tuple[torch.Tensor, ...]) -> dict[bool, _ModePlan]:
        """The child's graph, the plan on its nodes and the streams' schedule, per mode: the eval
        graph the plan was built on, and the child traced in training mode by the same backend
        (dropout active, batch norms on batch statistics, whatever else reads ``self.training``)."""
        cg = self._cg
        child_mixed = [self._mixes and m.to_child_transfer is not None for m in self.points]
        parent_mixed = [m.to_parent_transfer is not None for m in self.points]
        evaluation = _ModePlan(cg, self._plan, LockstepStreams(self._pg, cg, self._plan, child_mixed, parent_mixed))
        graphs = mode_graphs(child, cg.adapter, cg.source, inputs)
        if graphs[True] is cg.source:
            return {False: evaluation, True: evaluation}
        train = LockstepGraph(child, cg.adapter, "child", graphs[True])
        located = self._locate_points(train, pairs, directions, mode="train")
        plan = []
        for p, q in zip(self._plan, located):
            self._check_train_shapes(train, p, q)
            plan.append(q._replace(parent_kinds=p.parent_kinds, child_kinds=p.child_kinds))
        return {False: evaluation,
                True: _ModePlan(train, plan, LockstepStreams(self._pg, train, plan, child_mixed, parent_mixed))}

    def _check_train_shapes(self, train: LockstepGraph, eval_point: _Point, train_point: _Point) -> None:
        """The train graph's nodes of a point have the eval graph's shapes (beyond the batch) where
        the trace recorded them (``torch.export``'s fake values)."""
        for n, m in zip(eval_point.child_nodes, train_point.child_nodes):
            seen, kind = m.meta.get("val"), eval_point.child_kinds[eval_point.child_nodes.index(n)]
            if isinstance(seen, torch.Tensor) and kind.shape and seen.dim() == len(kind.shape):
                traced = tuple(seen.shape[1:])
                if all(isinstance(d, int) for d in traced) and traced != tuple(kind.shape[1:]):
                    raise AlignmentError(
                        f"child node {self._cg.names[n]!r} has shape {tuple(kind.shape[1:])} in eval mode but "
                        f"{traced} in training mode: the child computes another value there when training; "
                        f"align at a node both modes share")

    def _locate_points(self, cg: LockstepGraph, pairs: list[tuple[tuple[str, ...], tuple[str, ...]]],
                       directions: Sequence[str], mode: str = "eval") -> list[_Point]:
        """The graph nodes of every mixing point (layouts still unknown); the prediction names must exist."""
        pg = self._pg
        if mode != "eval":
            def node(name: str) -> fx.Node:
                try:
                    return cg.node(name)
                except AlignmentError as exc:
                    raise AlignmentError(f"the child traced in {mode} mode lacks a node its eval graph has: "
                                         f"{exc}") from None
        else:
            node = cg.node
        points = []
        for i, ((pnames, cnames), direction) in enumerate(zip(pairs[:-1], directions)):
            pnodes = tuple(pg.node(n) for n in pnames)
            cnodes = tuple(node(n) for n in cnames)
            points.append(_Point(i, direction, pnodes, cnodes, pg.last(pnodes), cg.last(cnodes)))
        pg.node(pairs[-1][0][-1]), node(pairs[-1][1][-1])
        return points

    def _example_inputs(self, alignment: Any, example_inputs: tuple[torch.Tensor, ...] | None,
                        child: nn.Module) -> tuple[torch.Tensor, ...]:
        """Inputs for the shape probe, on the child's device and in its dtype."""
        if example_inputs is not None:
            inputs = example_inputs
        else:
            shapes = getattr(alignment, "input_shapes", None)
            if not shapes:
                raise AlignmentError("Family needs example inputs: pass example_inputs=... or an Alignment "
                                     "with input_shapes")
            inputs = _in_traced_dtypes(tuple(self._cg.adapter.example_inputs(child, shapes)), self._cg)
        reference = next(iter(child.parameters()), None)
        if reference is not None:
            inputs = tuple(follow(t, reference) for t in inputs)
        return inputs

    def _with_layouts(self, points: list[_Point], inputs: tuple[torch.Tensor, ...], pvals: dict[fx.Node, Any],
                      cvals: dict[fx.Node, Any], layouts: dict[str, str]) -> list[_Point]:
        """Each point with the kind (and so the layout) of every value it reads: stated in ``layouts``
        or read from the graph (:mod:`hkt_core.trace.kinds`)."""
        kinds = {"parent": self._kinds(self._pg, pvals, inputs, layouts),
                 "child": self._kinds(self._cg, cvals, inputs, layouts)}

        def kind_of(graph: LockstepGraph, node: fx.Node, value: Any) -> ValueKind:
            if not isinstance(value, torch.Tensor) or value.dim() < 2 or node not in kinds[graph.label]:
                raise AlignmentError(f"{graph.label} node {graph.names[node]!r} must produce a tensor (B, C, ...), "
                                     f"got {type(value).__name__}"
                                     f"{'' if not isinstance(value, torch.Tensor) else tuple(value.shape)}")
            return kinds[graph.label][node]

        out = []
        for p in points:
            pk = tuple(kind_of(self._pg, n, pvals[n]) for n in p.parent_nodes)
            ck = tuple(kind_of(self._cg, n, cvals[n]) for n in p.child_nodes)
            out.append(p._replace(parent_kinds=pk, child_kinds=ck))
        return out

    @staticmethod
    def _kinds(graph: LockstepGraph, probed: dict[fx.Node, Any], inputs: tuple[torch.Tensor, ...],
               layouts: dict[str, str]) -> dict[fx.Node, ValueKind]:
        """The kind of every value of ``graph``, from the shapes of the probed values."""
        values = {n: v for n, v in probed.items() if n.op not in ("output", "placeholder")}
        for n in graph.placeholders:
            values[n] = inputs[graph.placeholders.index(n)] if graph.placeholders.index(n) < len(inputs) else None

        def resolve(name: str) -> fx.Node | None:
            try:
                return graph.node(name)
            except AlignmentError:
                return None

        def shape_of(n: fx.Node) -> tuple[int, ...] | None:
            v = values.get(n)
            return tuple(v.shape) if isinstance(v, torch.Tensor) else None

        try:
            return infer_kinds(graph.gm, shape_of, stated_nodes(layouts, resolve, graph.label))
        except AlignmentError as exc:
            raise ConfigError(f"Family: {exc}") from None

    def _build_operators(self, k: int, p: _Point, pvals: dict[fx.Node, Any], cvals: dict[fx.Node, Any],
                         make_mixture: Callable[[], nn.Module], transfer_cls: type,
                         extractor_cls: type) -> MixingPoint:
        """The ETM operators of point ``k``, sized from the probed values."""
        p_ex, c_ex = extractor_cls(), extractor_cls()
        with torch.no_grad():
            p_donor = p_ex(*_channels_first([pvals[n] for n in p.parent_nodes], p.parent_kinds))
            c_donor = c_ex(*_channels_first([cvals[n] for n in p.child_nodes], p.child_kinds))
        p_recv = p.parent_kinds[p.parent_nodes.index(p.parent_receiver)]
        c_recv = p.child_kinds[p.child_nodes.index(p.child_receiver)]
        p_kind, c_kind = donor_kind(p_donor, p.parent_kinds), donor_kind(c_donor, p.child_kinds)
        where = (f"mixing point {k} (parent {', '.join(self._pg.names[n] for n in p.parent_nodes)} "
                 f"<-> child {', '.join(self._cg.names[n] for n in p.child_nodes)})")
        to_child = to_parent = None
        # A mixture that neither mixes nor returns a loss (the 'none' control) needs no operators.
        c_receiver = to_channels_first(cvals[p.child_receiver], p.child_receiver_kind)
        mixes_to_child = p.direction in ("both", "to_child") and (self._mixes or self._adds_loss(c_receiver))
        mixes_to_parent = self._mixes and p.direction in ("both", "to_parent")
        direction = ("both" if mixes_to_child and mixes_to_parent else "to_child" if mixes_to_child
                     else "to_parent" if mixes_to_parent else None)
        if direction is not None:
            problem = mixing_pair_problem(p_kind if mixes_to_child else p_recv, c_kind if mixes_to_parent else c_recv,
                                          direction)
            if problem:
                raise AlignmentError(f"{where}: {problem}")
        try:
            if mixes_to_child:
                to_child = (self._transfer(transfer_cls, p_kind, c_recv), make_mixture())
            if mixes_to_parent:
                to_parent = (self._transfer(transfer_cls, c_kind, p_recv), make_mixture())
        except ValueError as exc:
            raise AlignmentError(f"{where}: {exc}") from exc
        return MixingPoint(to_child, to_parent, p_ex, c_ex)

    def _transfer(self, transfer_cls: type, source: ValueKind, target: ValueKind) -> nn.Module:
        """The transfer between the two values' kinds (:func:`hkt_core.etm.transfer_between`, the one
        rule): ``config.transfer`` within one kind, the registered cross-kind transfer otherwise."""
        return transfer_between(source, target, transfer=self.config.transfer, manager=self._manager)

    def _check_alphas(self, directions: Sequence[str]) -> None:
        config = self.config
        if config.alphas[0] > 0 and not any(m.to_child_transfer is not None for m in self.points):
            raise ConfigError(f"HKTConfig.alphas = {config.alphas} is invalid: a1 must be 0 when no point "
                              f"mixes parent->child (mixture {config.mixture!r}, directions {directions})")
        if config.alphas[2] > 0 and not any(m.to_parent_transfer is not None for m in self.points):
            raise ConfigError(f"HKTConfig.alphas = {config.alphas} is invalid: a3 must be 0 when no point "
                              f"mixes child->parent (mixture {config.mixture!r}, directions {directions}); "
                              f"L3 would be a constant")

    def _check_mixing(self, pvals: dict[fx.Node, Any], cvals: dict[fx.Node, Any]) -> None:
        with torch.no_grad():
            for p, ops in zip(self._plan, self.points):
                try:
                    self._mix(p, ops, lambda n: pvals[n], lambda n: cvals[n], [])
                except ValueError as exc:
                    raise ConfigError(f"mixing point {p.index} ({self._pg.names[p.parent_receiver]!r} <-> "
                                      f"{self._cg.names[p.child_receiver]!r}): {exc}") from exc

    # -- running ---------------------------------------------------------------------------------
    def _apply(self, fn, recurse: bool = True):
        """Device, dtype and memory-format moves reach the folded parent convolutions too (they live
        outside the module tree so that the state dict stays the parent's own)."""
        out = super()._apply(fn, recurse)
        for module in getattr(self, "_folded", ()):
            module._apply(fn, recurse)
        # An exported graph holds the models' tensors in a module tree of its own: a move that
        # replaces a tensor (buffers always are) is followed there too.
        graphs = [getattr(self, "_pg", None), *(m.graph for m in getattr(self, "_modes", {}).values())]
        for graph, model in zip(graphs, [self.parent, *([self.child] * (len(graphs) - 1))]):
            if graph is not None:
                graph.rebind(model)
        return out

    def train(self, mode: bool = True) -> Family:
        """Switch the child and the ETM operators; the parent stays in eval mode."""
        super().train(mode)
        self.parent.eval()
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The child's parameters and the ETM operators' (what an optimiser should see)."""
        return [p for p in self.parameters() if p.requires_grad]

    def _mix(self, p: _Point, ops: MixingPoint, read_p: Callable, read_c: Callable,
             feature_losses: list[torch.Tensor]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """phi_c and phi_p of one point from the pre-mix values (None where a direction is off)."""
        new_c = new_p = None
        if ops.to_child_transfer is not None:
            new_c = _one_way(ops.to_child_transfer, ops.parent_extractor, ops.to_child_mixture,
                             [read_p(n) for n in p.parent_nodes], p.parent_kinds,
                             read_c(p.child_receiver), p.child_receiver_kind, feature_losses)
            if not self._mixes:
                new_c = None
        if ops.to_parent_transfer is not None:
            new_p = _one_way(ops.to_parent_transfer, ops.child_extractor, ops.to_parent_mixture,
                             [read_c(n) for n in p.child_nodes], p.child_kinds,
                             read_p(p.parent_receiver), p.parent_receiver_kind, feature_losses)
        return new_c, new_p

    def forward(self, *inputs: torch.Tensor) -> HKTOutput:
        if self.parent.training:
            self.parent.eval()
        feature_losses: list[torch.Tensor] = []
        mode = self._modes[bool(self.child.training)]

        def mix(k: int, read_p: Callable, read_c: Callable) -> tuple[Any, Any]:
            return self._mix(mode.plan[k], self.points[k], read_p, read_c, feature_losses)

        native, inherited, parent_head = mode.streams.run(inputs, mix, self.child.training)
        feature_loss = torch.stack(feature_losses).mean() if feature_losses else None
        return self.output(native, inherited, parent_head, feature_loss)

    def output(self, native: Any, inherited: Any, parent_head: Any, feature_loss: torch.Tensor | None) -> HKTOutput:
        """The streams' raw outputs as an :class:`HKTOutput` (each model's adapter picks its prediction)."""
        return HKTOutput(self._cg.adapter.prediction(native), self._cg.adapter.prediction(inherited),
                         self._pg.adapter.prediction(parent_head), feature_loss)

    def record_step(self, *inputs: torch.Tensor) -> fx.GraphModule:
        """The training-mode forward on inputs like ``inputs`` as one ``torch.fx`` graph returning
        ``(native, inherited, parent_head, feature_loss)`` raw outputs (pass them to :meth:`output`);
        what ``--compile`` compiles (:mod:`hkt_core.lockstep.record`). ``inputs`` run once through
        the Family in eval mode without autograd (to see what the ETM operators return)."""
        from .lockstep.record import record_step

        mode = self._modes[True]
        return record_step(self, mode.streams, self.points, inputs,
                           lambda k, read_p, read_c, losses: self._mix(mode.plan[k], self.points[k], read_p,
                                                                       read_c, losses))

    # -- loss and export -------------------------------------------------------------------------
    @property
    def task(self) -> Any:
        """The task whose losses score the streams: ``task=`` (a task, or a name in the ``tasks``
        registry; ``classification`` when none was given)."""
        if self._task is None or isinstance(self._task, str):
            self._task = self._manager.lookup("tasks", self._task or DEFAULT_TASK)
        return self._task

    def loss_parts(self, output: HKTOutput, target: torch.Tensor,
                   native: Callable[[], torch.Tensor] | None = None) -> HKTLoss:
        """``a1*L1 + a2*L2 + a3*L3`` and its parts; a part whose weight is 0 is computed without
        autograd (for logging only). L1 scores the inherited stream plus the mixtures' feature loss;
        when the mixture does not mix (``mse``), L1 is the feature loss alone. ``native``: what L2
        is instead of the task loss of the native output (``hkt-kd``'s distillation term); the
        composite is summed here either way, in one place."""
        a1, a2, a3 = self.config.alphas
        task = self.task
        inherit = task.inherit_loss if self.config.inherit_loss == "mae" else task.loss

        def part(weight: float, fn: Callable[[], torch.Tensor]) -> torch.Tensor:
            if weight > 0:
                return fn()
            with torch.no_grad():
                return fn()

        l2 = part(a2, native if native is not None else (lambda: task.loss(output.native, target)))
        feature = output.feature_loss
        if feature is None:
            l1 = part(a1, lambda: inherit(output.inherited, target))
        elif not self._mixes:
            l1 = feature if a1 > 0 else feature.detach()
        else:
            l1 = part(a1, lambda: inherit(output.inherited, target) + feature)
        l3 = part(a3, lambda: inherit(output.parent_head, target))
        total = a2 * l2
        if a1 > 0:
            total = total + a1 * l1
        if a3 > 0:
            total = total + a3 * l3
        return HKTLoss(total, l1, l2, l3)

    def loss(self, output: HKTOutput, target: torch.Tensor) -> torch.Tensor:
        """The composite HKT loss (Eq. 9)."""
        return self.loss_parts(output, target).total

    def export_child(self) -> nn.Module:
        """The child as its own class with the trained weights: an independent copy, no parent,
        no ETM operators, nothing attached (the Family never installs hooks on it)."""
        return copy.deepcopy(self.child)


__all__ = ["Family", "HKTLoss", "HKTOutput", "MixingPoint"]
