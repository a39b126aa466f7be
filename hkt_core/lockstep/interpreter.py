"""The node-by-node interpreter: one traced network whose nodes can be run in any planned order.

Each network is traced once (:func:`hkt_core.trace.tracer.fx_trace`; the graph module shares the
model's parameters), its in-place operations are rewritten out of place
(:func:`hkt_core.lockstep.rewrite.functionalize`), and :meth:`LockstepGraph.run` executes a list
of its nodes into an environment, reading inputs through a caller-supplied function. That is what
lets two streams of one network share values, and two networks pause at aligned nodes.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import fx, nn
from torch.utils import _pytree as pytree

from ..adapters import Adapter
from ..errors import AlignmentError, TraceError
from ..trace.names import BACKEND_KEY, NAMES_KEY, NameTable, name_table
from ..trace.modes import in_mode
from ..trace.tracer import fx_trace
from .rewrite import functionalize


def _own_copy(gm: fx.GraphModule) -> fx.GraphModule:
    """A graph module sharing ``gm``'s parameters but with a graph of its own (to rewrite freely)."""
    with warnings.catch_warnings():
        # Copying an exported graph re-creates the LeafSpecs of its pytree specs, whose constructor
        # torch deprecates with a FutureWarning that every command would print: not the user's concern.
        warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                                category=FutureWarning)
        graph = copy.deepcopy(gm.graph)
    copied = fx.GraphModule(gm, graph, type(gm).__name__)
    copied.meta.update({k: v for k, v in gm.meta.items() if k != NAMES_KEY})
    return copied


class LockstepGraph:
    """One traced network with the lookups the interpreter needs.

    ``traced`` is a graph module already traced from ``model`` with ``adapter`` by the fx or the
    ``torch.export`` backend (what :func:`hkt_core.align` built; an exported graph is aten ops with
    its parameters as ``get_attr`` nodes, run node by node the same way); it is copied, not traced again.
    Without one, the model's eval graph is traced by torch.fx. A graph is the model in one mode
    (:mod:`hkt_core.trace.modes`); whoever runs the model in both keeps one LockstepGraph per mode.
    """

    def __init__(self, model: nn.Module, adapter: Adapter, label: str,
                 traced: fx.GraphModule | None = None) -> None:
        if traced is None or traced.meta.get(BACKEND_KEY) not in ("fx", "export"):
            try:
                with in_mode(model, False):   # the eval graph (hkt_core.trace.modes)
                    traced = fx_trace(model, adapter)
            except Exception as exc:  # any tracing failure gets the same advice
                raise TraceError(f"the {label} could not be traced with torch.fx ({type(exc).__name__}: {exc}); "
                                 f"declare the offending sub-module a leaf module in its adapter") from exc
        #: the trace as made (before the rewrite below): what another mode's trace is compared with
        self.source = traced
        self.gm = _own_copy(traced)
        self.label = label
        self.adapter = adapter
        self.table: NameTable = name_table(self.gm)
        self.names = self.table.names
        functionalize(self.gm, label)
        self.nodes = list(self.gm.graph.nodes)
        self.position = {n: i for i, n in enumerate(self.nodes)}
        self.placeholders = [n for n in self.nodes if n.op == "placeholder"]
        self.output = next(n for n in self.nodes if n.op == "output")
        # An export graph's output node holds the flat leaves; forward rebuilds what the model returns.
        info = getattr(self.gm.graph._codegen, "pytree_info", None)
        self.out_spec = getattr(info, "out_spec", None)
        self.modules = {n: self.gm.get_submodule(str(n.target)) for n in self.nodes if n.op == "call_module"}
        self.inplace_input = {n: n.args[0] for n, m in self.modules.items()
                              if getattr(m, "inplace", False) is True and n.args and isinstance(n.args[0], fx.Node)}

    # -- lookups ---------------------------------------------------------------------------------
    @property
    def by_name(self) -> NameTable:
        """Every name a node answers to (``name in graph.by_name``)."""
        return self.table

    def node(self, name: str) -> fx.Node:
        if name == "output":
            return self.output
        try:
            return self.table.node(name)
        except KeyError:
            raise AlignmentError(f"{self.label}: unknown node {name!r}; closest: {', '.join(self.table.suggest(name))} "
                                 f"(names follow hkt_core.trace.names)") from None

    def last(self, nodes: Iterable[fx.Node]) -> fx.Node:
        """The node of ``nodes`` that runs last."""
        return max(nodes, key=self.position.__getitem__)

    def ancestors(self, nodes: Iterable[fx.Node]) -> set[fx.Node]:
        """``nodes`` and everything they depend on."""
        return _closure(nodes, lambda n: n.all_input_nodes)

    def descendants(self, nodes: Iterable[fx.Node]) -> set[fx.Node]:
        """Everything that depends on ``nodes`` (strictly)."""
        return _closure([u for n in nodes for u in n.users], lambda n: n.users)

    def sorted(self, nodes: Iterable[fx.Node]) -> list[fx.Node]:
        return sorted((n for n in nodes if n.op != "placeholder"), key=self.position.__getitem__)

    def state_of(self, node: fx.Node) -> tuple[nn.Module, str] | None:
        """``(owner, name)`` of the buffer a ``get_attr`` node reads, None for anything else."""
        if node.op != "get_attr":
            return None
        prefix, _, name = str(node.target).rpartition(".")
        try:
            owner = self.gm.get_submodule(prefix) if prefix else self.gm
        except AttributeError:
            return None
        return (owner, name) if owner._buffers.get(name) is not None else None

    def rebind(self, model: nn.Module) -> None:
        """The graph's parameters and buffers pointed at ``model``'s own of the same name again
        (after a move that replaced them: ``model.to(device)`` makes new buffers). A graph that
        holds the model's own modules (fx) needs nothing; an exported graph's module tree of its
        own does."""
        for graph in {id(g): g for g in (self.gm, self.source)}.values():
            rebind(graph, model)

    def fetch_attr(self, target: str) -> Any:
        obj: Any = self.gm
        for part in target.split("."):
            obj = getattr(obj, part)
        return obj

    # -- running ---------------------------------------------------------------------------------
    def bind_inputs(self, env: dict[fx.Node, Any], inputs: Sequence[Any]) -> None:
        """Write ``inputs`` (and the defaults of inputs not given) into ``env``'s placeholders."""
        holders = self.placeholders
        if len(inputs) > len(holders):
            raise TypeError(f"the {self.label} takes {len(holders)} input(s), got {len(inputs)}")
        for i, node in enumerate(holders):
            if i < len(inputs):
                env[node] = inputs[i]
            elif node.args:
                env[node] = node.args[0]
            else:
                raise TypeError(f"the {self.label} needs input {node.target!r} (got {len(inputs)} input(s))")

    def probe(self, model: nn.Module, inputs: tuple[torch.Tensor, ...],
              wanted: list[fx.Node]) -> dict[fx.Node, Any]:
        """The values of ``wanted`` from one no-grad eval-mode run of ``model`` (modes restored after)."""
        modes = [(m, m.training) for m in model.modules()]
        model.eval()
        env: dict[fx.Node, Any] = {}
        try:
            self.bind_inputs(env, inputs)
            with torch.no_grad():
                self.run(self.sorted(self.ancestors(wanted)), env, env.__getitem__, set(wanted))
        finally:
            for m, mode in modes:
                m.training = mode
        return {n: env[n] for n in wanted}

    def probe_all(self, model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> dict[fx.Node, Any]:
        """Every value, the inputs included, from one no-grad eval-mode run of ``model``."""
        values = self.probe(model, inputs, [n for n in self.nodes if n.op != "placeholder"])
        self.bind_inputs(values, inputs)
        return values

    def run(self, nodes: Sequence[fx.Node], env: dict[fx.Node, Any], read: Callable[[fx.Node], Any],
            protected: set[fx.Node], free: Mapping[fx.Node, Sequence[fx.Node]] | None = None,
            grad: set[fx.Node] | None = None) -> None:
        """Execute ``nodes`` in order into ``env``; ``grad`` (if given) lists the nodes that need autograd.

        Consecutive nodes outside ``grad`` run in one ``torch.no_grad()`` region (entering one per
        node was half of the interpreter's per-node host time)."""
        if grad is None:
            self._run_span(nodes, env, read, protected, free)
            return
        start, count = 0, len(nodes)
        while start < count:
            off = nodes[start] not in grad
            end = start + 1
            while end < count and (nodes[end] not in grad) == off:
                end += 1
            if off:
                with torch.no_grad():
                    self._run_span(nodes[start:end], env, read, protected, free)
            else:
                self._run_span(nodes[start:end], env, read, protected, free)
            start = end

    def _run_span(self, nodes: Sequence[fx.Node], env: dict[fx.Node, Any], read: Callable[[fx.Node], Any],
                  protected: set[fx.Node], free: Mapping[fx.Node, Sequence[fx.Node]] | None) -> None:
        execute = self._execute
        for node in nodes:
            env[node] = execute(node, read, protected)
            if free is not None:
                for dead in free.get(node, ()):
                    env.pop(dead, None)

    def _execute(self, node: fx.Node, read: Callable[[fx.Node], Any], protected: set[fx.Node]) -> Any:
        args = fx.node.map_arg(node.args, read)
        kwargs = fx.node.map_arg(node.kwargs, read) if node.kwargs else {}
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
                return args[0] if self.out_spec is None else pytree.tree_unflatten(list(args[0]), self.out_spec)
        except Exception as exc:
            exc.add_note(f"while running {self.label} node {node.format_node()}")
            raise
        raise TraceError(f"{self.label}: unexpected node {node.format_node()}")


def rebind(gm: fx.GraphModule, model: nn.Module) -> None:
    """An exported graph's parameters and buffers pointed at ``model``'s own of the same name
    (see :meth:`LockstepGraph.rebind`); nothing for an fx graph, which holds the model's modules."""
    if gm.meta.get(BACKEND_KEY) != "export":
        return
    own = {**dict(model.named_parameters(remove_duplicate=False)), **dict(model.named_buffers(remove_duplicate=False))}
    for kind in ("_parameters", "_buffers"):
        for path, _ in list(getattr(gm, f"named{kind[:-1]}s")(remove_duplicate=False)):
            tensor = own.get(path)
            prefix, _, name = path.rpartition(".")
            owner = gm.get_submodule(prefix) if prefix else gm
            if tensor is not None and getattr(owner, kind).get(name) is not tensor:
                getattr(owner, kind)[name] = tensor


def _closure(start: Iterable[fx.Node], step: Callable[[fx.Node], Iterable[fx.Node]]) -> set[fx.Node]:
    """``start`` and every node reachable from it through ``step``."""
    out: set[fx.Node] = set()
    stack = list(start)
    while stack:
        n = stack.pop()
        if n not in out:
            out.add(n)
            stack.extend(step(n))
    return out


def release_plan(order: Sequence[fx.Node], keep: set[fx.Node]) -> dict[fx.Node, list[fx.Node]]:
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


def follow(value: Any, reference: torch.Tensor) -> Any:
    """``value`` on ``reference``'s device (and in its dtype when both are floating point)."""
    if not isinstance(value, torch.Tensor):
        return value
    if value.is_floating_point() and reference.is_floating_point():
        return value.to(device=reference.device, dtype=reference.dtype)
    return value.to(reference.device)


__all__ = ["LockstepGraph", "follow", "rebind", "release_plan"]
