"""The parent-child family: the lockstep HKT forward (Algorithm 1), its composite loss and export.

Both networks are traced once (:func:`hkt_core.trace.tracer.fx_trace`; the graph modules share
the models' parameters) and run node by node by a small interpreter that pauses at the aligned
nodes. At mixing point ``i`` both pre-mix values exist; the Family computes, per direction,

    phi_p = z~_i + lam * GA(query=z~_i, source=tau_p(z_i))    child -> parent ("head")
    phi_c = z_i  + lam * GA(query=z_i,  source=tau_c(z~_i))   parent -> child ("backbone")

and writes them into the environments in place of the nodes' values, so every downstream use of
those nodes (skip connections included) sees the mixed value. Three streams come out:

- ``native``: the child alone, no mixing (the deployed network). Runs first, in full.
- ``inherited``: the child with parent->child mixing. Only the nodes downstream of a mixed child
  node are recomputed; everything else is the native stream's value, shared.
- ``parent_head``: the parent with child->parent mixing. Nodes no child signal reaches run under
  ``torch.no_grad``; downstream of a mixed parent node gradients flow through the frozen parent
  into the child.

The parent is frozen: ``requires_grad=False``, always in eval mode (``Family.train`` cannot flip
it), so its weights and buffers never change. The child's normalisation buffers are updated by the
native stream only: the inherited stream runs its modules on scratch copies of their buffers.

In-place operations are made safe by construction: in-place functions and tensor methods are
rewritten to their out-of-place forms (later readers are rebound to the result, which is what
they saw in eager mode), and a module called in place (``nn.ReLU(inplace=True)``) gets a copy of
its input whenever that input is a value another stream or a mixing point still needs.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import fx, nn

from .adapters import Adapter, adapter_for
from .config import HKTConfig
from .errors import AlignmentError, ConfigError, TraceError, closest
from .trace import tracer as _tracer
from .trace.tracer import fx_trace, node_names


def _aliases(graph: fx.Graph) -> dict[fx.Node, list[str]]:
    """Every module path whose call returned each node (when the tracer records them)."""
    aliases = getattr(_tracer, "module_output_aliases", None)
    return aliases(graph) if aliases is not None else {}

LAYOUTS = ("channels_first", "channels_last")


class HKTOutput(NamedTuple):
    """What :meth:`Family.forward` returns (predictions as chosen by each model's adapter)."""

    native: torch.Tensor
    """The child alone, no mixing: what gets deployed (supervised by L2)."""
    inherited: torch.Tensor
    """The child stream with the parent's features mixed in (L1)."""
    parent_head: torch.Tensor
    """The parent stream with the child's features mixed in (L3)."""
    feature_loss: torch.Tensor | None = None
    """Mean feature-alignment loss of aligning mixtures (``mse``); None otherwise."""


class HKTLoss(NamedTuple):
    """The composite loss ``a1*l1 + a2*l2 + a3*l3`` and its parts (for logging)."""

    total: torch.Tensor
    l1: torch.Tensor
    l2: torch.Tensor
    l3: torch.Tensor


# -- graph preparation ---------------------------------------------------------------------------

_INPLACE_OPERATORS = {
    operator.iadd: operator.add, operator.isub: operator.sub, operator.imul: operator.mul,
    operator.itruediv: operator.truediv, operator.ifloordiv: operator.floordiv, operator.imod: operator.mod,
    operator.ipow: operator.pow, operator.iand: operator.and_, operator.ior: operator.or_,
    operator.ixor: operator.xor, operator.ilshift: operator.lshift, operator.irshift: operator.rshift,
    operator.imatmul: operator.matmul,
}
_VIEW_METHODS = {"view", "reshape", "flatten", "squeeze", "unsqueeze", "transpose", "permute", "expand",
                 "narrow", "select", "t", "unflatten", "view_as", "expand_as", "chunk", "split", "unbind",
                 "movedim", "contiguous", "__getitem__"}
_VIEW_FUNCTIONS = {torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze, torch.transpose,
                   torch.permute, torch.narrow, torch.select, torch.chunk, torch.split, torch.unbind,
                   torch.movedim, operator.getitem}


def _is_inplace_name(name: str) -> bool:
    return name.endswith("_") and not name.startswith("_")


def _functionalize(gm: fx.GraphModule, label: str) -> None:
    """Rewrite in-place functions and methods out of place and rebind their later readers.

    ``y.relu_()`` becomes ``relu = y.relu()`` and every node after it that read ``y`` reads
    ``relu`` instead: the same values eager mode computes, without mutating a tensor that another
    stream shares. A module that works in place (``nn.ReLU(inplace=True)``) keeps its call (the
    interpreter hands it a copy when its input must survive) and its later readers are rebound the
    same way. In-place updates of a view of another value cannot be expressed like this and are
    refused.
    """
    graph = gm.graph
    nodes = list(graph.nodes)
    position = {n: i for i, n in enumerate(nodes)}
    for node in nodes:
        mutated = None
        if node.op == "call_function":
            if node.kwargs.get("inplace") is True:
                node.kwargs = {**node.kwargs, "inplace": False}
                mutated = node.args[0] if node.args else None
            elif node.target in _INPLACE_OPERATORS:
                node.target = _INPLACE_OPERATORS[node.target]
                mutated = node.args[0]
            elif _is_inplace_name(getattr(node.target, "__name__", "")):
                pure = getattr(torch, node.target.__name__[:-1], None)
                if pure is None:
                    raise TraceError(f"{label}: cannot run the in-place call {node.format_node()} "
                                     f"out of place; make it a module or use the out-of-place function")
                node.target = pure
                mutated = node.args[0]
        elif node.op == "call_method" and _is_inplace_name(str(node.target)):
            node.target = str(node.target)[:-1]
            mutated = node.args[0]
        elif node.op == "call_module" and getattr(gm.get_submodule(str(node.target)), "inplace", False) is True:
            mutated = node.args[0] if node.args else None
        if not isinstance(mutated, fx.Node):
            continue
        if _is_view(mutated):
            raise TraceError(f"{label}: {node.format_node()} updates a view of another value in place, "
                             f"which the Family cannot share between streams; write it out of place")
        for user in list(mutated.users):
            if user is not node and position[user] > position[node]:
                user.replace_input_with(mutated, node)
    graph.lint()


def _is_view(node: fx.Node) -> bool:
    if node.op == "call_method":
        return str(node.target) in _VIEW_METHODS
    if node.op == "call_function":
        return node.target in _VIEW_FUNCTIONS
    return False


_CHANNELS_LAST_MODULES = tuple(getattr(nn, name) for name in (
    "Linear", "LayerNorm", "RMSNorm", "MultiheadAttention", "Embedding", "TransformerEncoderLayer",
    "TransformerDecoderLayer", "TransformerEncoder", "TransformerDecoder") if hasattr(nn, name))
_CHANNELS_FIRST_MODULES = (nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm, nn.GroupNorm,
                           nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
                           nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd,
                           nn.modules.instancenorm._InstanceNorm, nn.Upsample)


def _module_layout(module: nn.Module) -> str | None:
    for m in reversed(list(module.modules())):
        if isinstance(m, _CHANNELS_LAST_MODULES):
            return "channels_last"
        if isinstance(m, _CHANNELS_FIRST_MODULES):
            return "channels_first"
    return None


def _infer_layout(gm: fx.GraphModule, node: fx.Node, rank: int) -> str:
    """Where the channels of a value are: maps and vectors are channel-first; a rank-3 value is
    a token sequence ``(B, T, D)`` when the nearest informative producer works on the last axis
    (Linear, LayerNorm, attention) or the value was transposed out of a convolution."""
    if rank != 3:
        return "channels_first"
    frontier, seen = [node], set()
    while frontier:
        nxt = []
        for n in frontier:
            if n in seen:
                continue
            seen.add(n)
            if n.op == "call_module":
                found = _module_layout(gm.get_submodule(str(n.target)))
                if found:
                    return found
            if (n.op == "call_method" and str(n.target) in ("transpose", "permute", "movedim")) or (
                    n.op == "call_function" and n.target in (torch.transpose, torch.permute, torch.movedim)):
                return "channels_last"
            nxt.extend(n.all_input_nodes)
        frontier = nxt
    return "channels_first"


class _Graph:
    """One traced network with the lookups the interpreter needs."""

    def __init__(self, model: nn.Module, adapter: Adapter, label: str) -> None:
        try:
            self.gm = fx_trace(model, adapter)
        except Exception as exc:  # any tracing failure gets the same advice
            raise TraceError(f"the {label} could not be traced with torch.fx ({type(exc).__name__}: {exc}); "
                             f"declare the offending sub-module a leaf module in its adapter") from exc
        self.label = label
        self.adapter = adapter
        self.names = node_names(self.gm.graph)
        _functionalize(self.gm, label)
        self.nodes = list(self.gm.graph.nodes)
        self.position = {n: i for i, n in enumerate(self.nodes)}
        self.by_name = {name: n for n, name in self.names.items() if n in self.position}
        for n, paths in _aliases(self.gm.graph).items():   # "enc1.2" also names what "enc1" returns
            for path in paths:
                self.by_name.setdefault(path, n)
        self.placeholders = [n for n in self.nodes if n.op == "placeholder"]
        self.output = next(n for n in self.nodes if n.op == "output")
        self.modules = {n: self.gm.get_submodule(str(n.target)) for n in self.nodes if n.op == "call_module"}
        self.inplace_input = {n: n.args[0] for n, m in self.modules.items()
                              if getattr(m, "inplace", False) is True and n.args and isinstance(n.args[0], fx.Node)}

    def node(self, name: str) -> fx.Node:
        if name == "output":
            return self.output
        try:
            return self.by_name[name]
        except KeyError:
            near = closest(name, self.by_name)
            raise AlignmentError(f"{self.label}: unknown node {name!r}; closest: {', '.join(near)} "
                                 f"(names follow hkt_core.trace.tracer.node_names)") from None

    def ancestors(self, nodes: Iterable[fx.Node]) -> set[fx.Node]:
        """``nodes`` and everything they depend on."""
        out: set[fx.Node] = set()
        stack = list(nodes)
        while stack:
            n = stack.pop()
            if n not in out:
                out.add(n)
                stack.extend(n.all_input_nodes)
        return out

    def descendants(self, nodes: Iterable[fx.Node]) -> set[fx.Node]:
        """Everything that depends on ``nodes`` (strictly)."""
        out: set[fx.Node] = set()
        stack = [u for n in nodes for u in n.users]
        while stack:
            n = stack.pop()
            if n not in out:
                out.add(n)
                stack.extend(n.users)
        return out

    def sorted(self, nodes: Iterable[fx.Node]) -> list[fx.Node]:
        return sorted((n for n in nodes if n.op != "placeholder"), key=self.position.__getitem__)

    def fetch_attr(self, target: str) -> Any:
        obj: Any = self.gm
        for part in target.split("."):
            obj = getattr(obj, part)
        return obj

    def run(self, nodes: Sequence[fx.Node], env: dict[fx.Node, Any], read: Callable[[fx.Node], Any],
            protected: set[fx.Node], free: Mapping[fx.Node, Sequence[fx.Node]] | None = None,
            grad: set[fx.Node] | None = None) -> None:
        """Execute ``nodes`` in order into ``env``; ``grad`` (if given) lists the nodes that need autograd."""
        for node in nodes:
            if grad is not None and node not in grad:
                with torch.no_grad():
                    env[node] = self._execute(node, read, protected)
            else:
                env[node] = self._execute(node, read, protected)
            if free is not None:
                for dead in free.get(node, ()):
                    env.pop(dead, None)

    def _execute(self, node: fx.Node, read: Callable[[fx.Node], Any], protected: set[fx.Node]) -> Any:
        args = fx.node.map_arg(node.args, read)
        kwargs = fx.node.map_arg(node.kwargs, read)
        op = node.op
        try:
            if op == "call_module":
                if node in self.inplace_input and self.inplace_input[node] in protected:
                    args = (args[0].clone(), *args[1:])
                return self.modules[node](*args, **kwargs)
            if op == "call_function":
                return node.target(*args, **kwargs)
            if op == "call_method":
                self_obj, *rest = args
                return getattr(self_obj, node.target)(*rest, **kwargs)
            if op == "get_attr":
                return self.fetch_attr(str(node.target))
            if op == "output":
                return args[0]
        except Exception as exc:
            exc.add_note(f"while running {self.label} node {node.format_node()}")
            raise
        raise TraceError(f"{self.label}: unexpected node {node.format_node()}")


# -- the family -----------------------------------------------------------------------------------

def _names(value: Any, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise AlignmentError(f"{what} must be a node name or a list of node names, got {value!r}")


def _alignment_pairs(alignment: Any) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    raw = getattr(alignment, "pairs", alignment)
    try:
        items = list(raw)
    except TypeError:
        raise AlignmentError(f"an alignment is an Alignment record or a list of (parent, child) name pairs, "
                             f"got {type(alignment).__name__}") from None
    pairs = []
    for i, item in enumerate(items):
        if hasattr(item, "parent") and hasattr(item, "child"):
            parent, child = item.parent, item.child
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            parent, child = item
        else:
            raise AlignmentError(f"alignment pair {i} must be (parent_name, child_name), got {item!r}")
        pairs.append((_names(parent, f"alignment pair {i} parent"), _names(child, f"alignment pair {i} child")))
    if len(pairs) < 2:
        raise AlignmentError(f"HKT needs at least two aligned pairs (one mixing point plus the predictions), "
                             f"got {len(pairs)}")
    return pairs


class _Point(NamedTuple):
    index: int
    direction: str
    parent_nodes: tuple[fx.Node, ...]
    child_nodes: tuple[fx.Node, ...]
    parent_receiver: fx.Node
    child_receiver: fx.Node
    parent_layouts: tuple[str, ...]
    child_layouts: tuple[str, ...]


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


def _release_plan(order: Sequence[fx.Node], keep: set[fx.Node]) -> dict[fx.Node, list[fx.Node]]:
    """For each node of ``order``, the values that can be dropped once it has run (their last
    reader in ``order``); values in ``keep`` and the inputs stay."""
    last_use: dict[fx.Node, fx.Node] = {}
    for node in order:
        for value in node.all_input_nodes:
            last_use[value] = node
    plan: dict[fx.Node, list[fx.Node]] = {}
    for value, user in last_use.items():
        if value not in keep and value.op != "placeholder":
            plan.setdefault(user, []).append(value)
    return plan


def _follow(value: Any, reference: torch.Tensor) -> Any:
    """``value`` on ``reference``'s device (and in its dtype when both are floating point)."""
    if not isinstance(value, torch.Tensor):
        return value
    if value.is_floating_point() and reference.is_floating_point():
        return value.to(device=reference.device, dtype=reference.dtype)
    return value.to(reference.device)


def _to_cf(x: torch.Tensor, layout: str) -> torch.Tensor:
    return x.movedim(-1, 1) if layout == "channels_last" else x


def _from_cf(x: torch.Tensor, layout: str) -> torch.Tensor:
    return x.movedim(1, -1) if layout == "channels_last" else x


class Family(nn.Module):
    """A frozen parent and a trainable child run in lockstep (Algorithm 1 of the paper).

    ``alignment`` is an :class:`hkt_core.align.Alignment` or a list of ``(parent_name, child_name)``
    pairs (names follow :func:`hkt_core.trace.tracer.node_names`; a side may list several names,
    combined by ``config.extractor``); the last pair is the predictions and is not mixed. Example
    inputs (used once to learn the shapes at the mixing points) default to the alignment's
    ``input_shapes``. ``task`` overrides the registered task named by ``config.task``;
    ``layouts`` maps node names (``"name"`` for both models, ``"parent:name"`` / ``"child:name"``
    for one) to ``channels_first`` / ``channels_last`` where the automatic guess (rank-3 values
    produced by Linear/LayerNorm/attention are tokens ``(B, T, D)``) is wrong. ``manager`` is the
    plugin manager operators and tasks are looked up in (default: the process-wide one).
    """

    def __init__(self, parent: nn.Module, child: nn.Module, alignment: Any, config: HKTConfig | None = None,
                 example_inputs: torch.Tensor | Sequence[torch.Tensor] | None = None, *,
                 task: Any = None, layouts: Mapping[str, str] | None = None, manager: Any = None) -> None:
        super().__init__()
        config = HKTConfig() if config is None else config
        if not isinstance(config, HKTConfig):
            raise ConfigError(f"Family: config must be an HKTConfig, got {type(config).__name__}")
        for name, layout in (layouts or {}).items():
            if layout not in LAYOUTS:
                raise ConfigError(f"Family: layouts[{name!r}] = {layout!r} must be one of {', '.join(LAYOUTS)}")
        from .plugins import default_manager

        self._manager = manager or default_manager()
        self.config = config
        self._task = task
        self.parent = parent
        self.child = child
        parent.requires_grad_(False)
        parent.eval()

        pairs = _alignment_pairs(alignment)
        directions = config.directions_for(len(pairs) - 1)
        mixture_cls = self._manager.lookup("mixtures", config.mixture)
        transfer_cls = self._manager.lookup("transfers", config.transfer)
        extractor_cls = self._manager.lookup("extractors", config.extractor)
        probe = mixture_cls(lam=config.lam, tokens=config.tokens)
        self._mixes = bool(getattr(probe, "mixes", True))
        self._aligns = bool(getattr(probe, "aligns", False))

        # The graphs live outside the module tree: they share the models' parameters.
        object.__setattr__(self, "_pg", _Graph(parent, adapter_for(parent, self._manager), "parent"))
        object.__setattr__(self, "_cg", _Graph(child, adapter_for(child, self._manager), "child"))
        pg, cg = self._pg, self._cg
        layouts = dict(layouts or {})

        points: list[_Point] = []
        for i, ((pnames, cnames), direction) in enumerate(zip(pairs[:-1], directions)):
            pnodes = tuple(pg.node(n) for n in pnames)
            cnodes = tuple(cg.node(n) for n in cnames)
            points.append(_Point(i, direction, pnodes, cnodes,
                                 max(pnodes, key=pg.position.__getitem__), max(cnodes, key=cg.position.__getitem__),
                                 (), ()))
        pg.node(pairs[-1][0][-1]), cg.node(pairs[-1][1][-1])  # the prediction names must exist

        # Shapes at the mixing points, from one no-grad eval run of each network alone.
        inputs = self._example_inputs(alignment, example_inputs, cg, child)
        reference = next(iter(child.parameters()), None)
        if reference is not None:   # example inputs and operators follow the child's device and dtype
            inputs = tuple(_follow(t, reference) for t in inputs)
        pvals = self._probe(pg, parent, inputs, [n for p in points for n in p.parent_nodes])
        cvals = self._probe(cg, child, inputs, [n for p in points for n in p.child_nodes])

        def layout_of(graph: _Graph, node: fx.Node, value: Any) -> str:
            if not isinstance(value, torch.Tensor) or value.dim() < 2:
                raise AlignmentError(f"{graph.label} node {graph.names[node]!r} must produce a tensor (B, C, ...), "
                                     f"got {type(value).__name__}"
                                     f"{'' if not isinstance(value, torch.Tensor) else tuple(value.shape)}")
            name = graph.names[node]
            return (layouts.get(f"{graph.label}:{name}") or layouts.get(name)
                    or _infer_layout(graph.gm, node, value.dim()))

        def cf_shape(value: torch.Tensor, layout: str) -> tuple[int, ...]:
            return tuple(_to_cf(value, layout).shape[1:])

        self.points = nn.ModuleList()
        for k, p in enumerate(points):
            pl = tuple(layout_of(pg, n, pvals[n]) for n in p.parent_nodes)
            cl = tuple(layout_of(cg, n, cvals[n]) for n in p.child_nodes)
            points[k] = p = p._replace(parent_layouts=pl, child_layouts=cl)
            p_ex, c_ex = extractor_cls(), extractor_cls()
            with torch.no_grad():
                p_donor = p_ex(*[_to_cf(pvals[n], lay) for n, lay in zip(p.parent_nodes, pl)])
                c_donor = c_ex(*[_to_cf(cvals[n], lay) for n, lay in zip(p.child_nodes, cl)])
            p_recv = cf_shape(pvals[p.parent_receiver], pl[p.parent_nodes.index(p.parent_receiver)])
            c_recv = cf_shape(cvals[p.child_receiver], cl[p.child_nodes.index(p.child_receiver)])
            to_child = to_parent = None
            active = self._mixes or self._aligns
            try:
                if active and p.direction in ("both", "backbone"):
                    to_child = (transfer_cls(tuple(p_donor.shape[1:]), c_recv),
                                mixture_cls(lam=config.lam, tokens=config.tokens))
                if active and self._mixes and p.direction in ("both", "head"):
                    to_parent = (transfer_cls(tuple(c_donor.shape[1:]), p_recv),
                                 mixture_cls(lam=config.lam, tokens=config.tokens))
            except ValueError as exc:
                raise AlignmentError(f"mixing point {k} (parent {', '.join(pg.names[n] for n in p.parent_nodes)} "
                                     f"<-> child {', '.join(cg.names[n] for n in p.child_nodes)}): {exc}") from exc
            self.points.append(MixingPoint(to_child, to_parent, p_ex, c_ex))
        if reference is not None and reference.is_floating_point():
            self.points.to(device=reference.device, dtype=reference.dtype)
        self._plan = points
        self._build_schedule()
        if config.alphas[0] > 0 and not any(m.to_child_transfer is not None for m in self.points):
            raise ConfigError(f"HKTConfig.alphas = {config.alphas} is invalid: a1 must be 0 when no point "
                              f"mixes parent->child (mixture {config.mixture!r}, directions {directions})")
        if config.alphas[2] > 0 and not any(m.to_parent_transfer is not None for m in self.points):
            raise ConfigError(f"HKTConfig.alphas = {config.alphas} is invalid: a3 must be 0 when no point "
                              f"mixes child->parent (mixture {config.mixture!r}, directions {directions}); "
                              f"L3 would be a constant")
        # A check run of the mixing (catches token-layout errors such as 'spatial' on vectors now).
        self._check_mixing(pvals, cvals)

    # -- construction helpers ---------------------------------------------------------------------
    @staticmethod
    def _example_inputs(alignment: Any, example_inputs: Any, cg: _Graph,
                        child: nn.Module) -> tuple[torch.Tensor, ...]:
        if example_inputs is not None:
            return (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
        shapes = getattr(alignment, "input_shapes", None)
        if not shapes:
            raise AlignmentError("Family needs example inputs: pass example_inputs=... or an Alignment "
                                 "with input_shapes")
        return tuple(cg.adapter.example_inputs(child, shapes))

    @staticmethod
    def _probe(graph: _Graph, model: nn.Module, inputs: tuple[torch.Tensor, ...],
               wanted: list[fx.Node]) -> dict[fx.Node, Any]:
        modes = [(m, m.training) for m in model.modules()]
        model.eval()
        env: dict[fx.Node, Any] = {}
        try:
            Family._bind_inputs(graph, env, inputs)
            with torch.no_grad():
                graph.run(graph.sorted(graph.ancestors(wanted)), env, env.__getitem__, set(wanted))
        finally:
            for m, mode in modes:
                m.training = mode
        return {n: env[n] for n in wanted}

    @staticmethod
    def _bind_inputs(graph: _Graph, env: dict[fx.Node, Any], inputs: Sequence[Any]) -> None:
        holders = graph.placeholders
        if len(inputs) > len(holders):
            raise TypeError(f"the {graph.label} takes {len(holders)} input(s), got {len(inputs)}")
        for i, node in enumerate(holders):
            if i < len(inputs):
                env[node] = inputs[i]
            elif node.args:
                env[node] = node.args[0]
            else:
                raise TypeError(f"the {graph.label} needs input {node.target!r} (got {len(inputs)} input(s))")

    def _build_schedule(self) -> None:
        """Which nodes each stream computes before each mixing point, and what must stay untouched."""
        pg, cg, points = self._pg, self._cg, self._plan
        mixing = self._mixes
        child_receivers = {p.child_receiver for p, m in zip(points, self.points)
                           if mixing and m.to_child_transfer is not None}
        parent_receivers = {p.parent_receiver for p, m in zip(points, self.points)
                            if m.to_parent_transfer is not None}
        self._child_downstream = cg.descendants(child_receivers)
        self._parent_downstream = pg.descendants(parent_receivers)
        child_point_nodes = {n for p in points for n in p.child_nodes}
        parent_point_nodes = {n for p in points for n in p.parent_nodes}

        # Native: every node, in program order; values the inherited stream reads are kept.
        self._native_nodes = cg.sorted(cg.nodes)
        keep = {n for n in cg.nodes if n not in self._child_downstream
                and any(u in self._child_downstream for u in n.users)} | child_point_nodes
        self._native_protected = keep
        self._native_free = _release_plan(self._native_nodes, keep)
        self._inherited_protected = {n for n in cg.nodes if n not in self._child_downstream} | child_point_nodes
        self._parent_protected = parent_point_nodes

        def steps(graph: _Graph, subset: set[fx.Node] | None, point_nodes: Callable[[_Point], tuple],
                  receivers: set[fx.Node], receiver_of: Callable[[_Point], fx.Node]):
            done: set[fx.Node] = set()
            plan = []
            for p in points:
                need = graph.ancestors(point_nodes(p))
                if subset is not None:
                    need &= subset
                batch = graph.sorted(need - done)
                done |= set(batch)
                plan.append(batch)
                r = receiver_of(p)
                if r in receivers:
                    early = [u for u in r.users if u in done]
                    if early:
                        raise AlignmentError(
                            f"the alignment is not order-preserving in the {graph.label}: mixing point {p.index} "
                            f"replaces {graph.names[r]!r}, but {graph.names[early[0]]!r}, which reads it, is needed "
                            f"by an earlier mixing point")
            rest = set(graph.nodes) if subset is None else set(subset)
            tail = graph.sorted(rest - done)
            return plan, tail

        self._inherited_steps, self._inherited_tail = steps(
            cg, self._child_downstream, lambda p: p.child_nodes, child_receivers, lambda p: p.child_receiver)
        self._parent_steps, self._parent_tail = steps(
            pg, None, lambda p: p.parent_nodes, parent_receivers, lambda p: p.parent_receiver)
        # Release each stream's values after their last use (holding a whole frozen parent's
        # activations would cost memory and fresh allocations on every step).
        self._inherited_free = _release_plan([n for batch in self._inherited_steps for n in batch]
                                             + self._inherited_tail, child_point_nodes)
        self._parent_free = _release_plan([n for batch in self._parent_steps for n in batch] + self._parent_tail,
                                          parent_point_nodes)
        # Child buffers the inherited stream may update (BatchNorm running stats): (owner, name).
        touched = [cg.modules[n] for n in self._child_downstream if n in cg.modules]
        seen: set[tuple[int, str]] = set()
        self._inherited_buffers: list[tuple[nn.Module, str]] = []
        for module in touched:
            for owner in module.modules():
                for name, buf in owner._buffers.items():
                    if buf is not None and (id(owner), name) not in seen:
                        seen.add((id(owner), name))
                        self._inherited_buffers.append((owner, name))

    def _check_mixing(self, pvals: dict[fx.Node, Any], cvals: dict[fx.Node, Any]) -> None:
        with torch.no_grad():
            for p, ops in zip(self._plan, self.points):
                try:
                    self._mix(p, ops, lambda n: pvals[n], lambda n: cvals[n], [])
                except ValueError as exc:
                    raise ConfigError(f"mixing point {p.index} ({self._pg.names[p.parent_receiver]!r} <-> "
                                      f"{self._cg.names[p.child_receiver]!r}): {exc}") from exc

    # -- running ---------------------------------------------------------------------------------
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
            donor = ops.to_child_transfer(ops.parent_extractor(
                *[_to_cf(read_p(n), lay) for n, lay in zip(p.parent_nodes, p.parent_layouts)]))
            layout = p.child_layouts[p.child_nodes.index(p.child_receiver)]
            receiver = _to_cf(read_c(p.child_receiver), layout)
            if self._aligns:
                feature_losses.append(ops.to_child_mixture.feature_loss(receiver, donor))
            if self._mixes:
                new_c = _from_cf(ops.to_child_mixture(receiver, donor), layout)
        if ops.to_parent_transfer is not None:
            donor = ops.to_parent_transfer(ops.child_extractor(
                *[_to_cf(read_c(n), lay) for n, lay in zip(p.child_nodes, p.child_layouts)]))
            layout = p.parent_layouts[p.parent_nodes.index(p.parent_receiver)]
            receiver = _to_cf(read_p(p.parent_receiver), layout)
            new_p = _from_cf(ops.to_parent_mixture(receiver, donor), layout)
        return new_c, new_p

    def forward(self, *inputs: torch.Tensor) -> HKTOutput:
        pg, cg = self._pg, self._cg
        if self.parent.training:
            self.parent.eval()
        # 1. The parent up to the first mixing point: no child signal reaches it, so it runs
        #    without autograd, and first, while no child activations are held.
        parent: dict[fx.Node, Any] = {}
        self._bind_inputs(pg, parent, inputs)
        pg.run(self._parent_steps[0], parent, parent.__getitem__, self._parent_protected, free=self._parent_free,
               grad=self._parent_downstream)

        # 2. Native child stream: the child alone.
        native: dict[fx.Node, Any] = {}
        self._bind_inputs(cg, native, inputs)
        cg.run(self._native_nodes, native, native.__getitem__, self._native_protected, free=self._native_free)

        # 3. Lockstep: inherited child stream and parent stream, mixing at each point.
        inherited: dict[fx.Node, Any] = {}

        def read_c(node: fx.Node) -> Any:
            value = inherited.get(node, _MISSING)
            return native[node] if value is _MISSING else value

        # The inherited stream updates scratch copies of the child's buffers, swapped in for its run
        # and dropped after (restoring in place would invalidate tensors autograd saved).
        saved = None
        if self.child.training and self._inherited_buffers:
            saved = [owner._buffers[name] for owner, name in self._inherited_buffers]
            for (owner, name), buf in zip(self._inherited_buffers, saved):
                owner._buffers[name] = buf.clone()
        feature_losses: list[torch.Tensor] = []
        try:
            for k, (p, ops, c_steps, p_steps) in enumerate(
                    zip(self._plan, self.points, self._inherited_steps, self._parent_steps)):
                if k > 0:
                    pg.run(p_steps, parent, parent.__getitem__, self._parent_protected, free=self._parent_free,
                           grad=self._parent_downstream)
                cg.run(c_steps, inherited, read_c, self._inherited_protected, free=self._inherited_free)
                new_c, new_p = self._mix(p, ops, parent.__getitem__, read_c, feature_losses)
                if new_c is not None:
                    inherited[p.child_receiver] = new_c
                if new_p is not None:
                    parent[p.parent_receiver] = new_p
            cg.run(self._inherited_tail, inherited, read_c, self._inherited_protected, free=self._inherited_free)
            pg.run(self._parent_tail, parent, parent.__getitem__, self._parent_protected, free=self._parent_free,
                   grad=self._parent_downstream)
        finally:
            if saved is not None:
                for (owner, name), buf in zip(self._inherited_buffers, saved):
                    owner._buffers[name] = buf

        feature_loss = torch.stack(feature_losses).mean() if feature_losses else None
        return HKTOutput(cg.adapter.prediction(native[cg.output]),
                         cg.adapter.prediction(read_c(cg.output)),
                         pg.adapter.prediction(parent[pg.output]),
                         feature_loss)

    # -- loss and export -------------------------------------------------------------------------
    @property
    def task(self) -> Any:
        """The task whose losses score the streams (``config.task`` from the ``losses`` registry)."""
        if self._task is None:
            self._task = self._manager.lookup("losses", self.config.task)
        return self._task

    def loss_parts(self, output: HKTOutput, target: torch.Tensor) -> HKTLoss:
        """``a1*L1 + a2*L2 + a3*L3`` and its parts; a part whose weight is 0 is computed without
        autograd (for logging only)."""
        a1, a2, a3 = self.config.alphas
        task = self.task
        inherit = task.inherit_loss if self.config.inherit_loss == "mae" else task.loss

        def part(weight: float, fn: Callable[[], torch.Tensor]) -> torch.Tensor:
            if weight > 0:
                return fn()
            with torch.no_grad():
                return fn()

        l2 = part(a2, lambda: task.loss(output.native, target))
        if output.feature_loss is not None:
            l1 = output.feature_loss if a1 > 0 else output.feature_loss.detach()
        else:
            l1 = part(a1, lambda: inherit(output.inherited, target))
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


_MISSING = object()

__all__ = ["Family", "HKTLoss", "HKTOutput", "MixingPoint"]
