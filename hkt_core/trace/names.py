"""The naming service: every name a value of a traced graph answers to, built once per trace.

Naming rule: a graph value produced by calling a module is named by the module's qualified path
(``"layer2"``, ``"layer2.0.conv1"``); if the same module is called more than once, later calls get
``"path#2"``, ``"path#3"``. When one value is the output of several nested modules (``layer2`` returns
what ``layer2.3`` returns, which returns what ``layer2.3.relu`` returns) the outermost module names it.
Any other value (a function, a method, a placeholder) is named by its fx node name (``"flatten"``,
``"add_3"``, ``"x"``). Public names are unique: a value whose name is already taken (a function node
named like a module path) is named ``"name@fx_name"``.

Besides its public name a value answers to (in this order of precedence):

- module-output aliases: every module path whose call returned it (``"layer2.3"``, ``"layer2.3.relu"``);
- scoped names: a function or method node inside a module's forward is ``"<module path>.<op>"``,
  counted per module (``"layer1.0.add"``, then ``"layer1.0.add_1"``), as torchvision's
  feature_extraction names them;
- its fx node name.

:class:`NameTable` holds all of it; :func:`name_table` returns the table the tracer built for a
graph module (``hkt_core.trace.tracer.fx_trace`` and ``export_trace`` build it), and everything that
resolves names (alignment, the trace graph, the lockstep interpreter) asks it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from torch import fx

from ..errors import AlignmentError, closest

#: ``GraphModule.meta`` key saying which backend produced a graph ("fx" or "export").
BACKEND_KEY = "hkt_backend"
#: ``GraphModule.meta`` key of the graph's :class:`NameTable`.
NAMES_KEY = "hkt_names"
#: Nodes that are plumbing rather than values: never resolved by name.
_PLUMBING = ("output", "get_attr")
_COUNTER = re.compile(r"_\d+$")


def _is_export(graph: fx.Graph) -> bool:
    owner = graph.owning_module
    return owner is not None and getattr(owner, "meta", {}).get(BACKEND_KEY) == "export"


def _leaf_call_name(node: fx.Node, calls: dict[str, int]) -> str:
    target = str(node.target)
    calls[target] = calls.get(target, 0) + 1
    return target if calls[target] == 1 else f"{target}#{calls[target]}"


def module_output_aliases(graph: fx.Graph) -> dict[fx.Node, list[str]]:
    """Every module path (innermost first) whose call returned each node; the last is its name."""
    if _is_export(graph):
        return _export_scope_outputs(graph)
    out: dict[fx.Node, list[str]] = {}
    calls: dict[str, int] = {}
    for node in graph.nodes:
        paths = list(node.meta.get("hkt", {}).get("module_outputs", ()))
        if node.op == "call_module":
            leaf = _leaf_call_name(node, calls)
            if leaf not in paths:
                paths.insert(0, leaf)
        if paths:
            out[node] = paths
    return out


def node_names(graph: fx.Graph) -> dict[fx.Node, str]:
    """The public name of every node, following the naming rule (unique within the graph)."""
    aliases = module_output_aliases(graph)
    names: dict[fx.Node, str] = {}
    taken: set[str] = set()
    for node in graph.nodes:
        name = aliases[node][-1] if node in aliases else node.name
        if name in taken:
            name = f"{name}@{node.name}"
        taken.add(name)
        names[node] = name
    return names


def _scope_of(node: fx.Node) -> str:
    scope = node.meta.get("hkt", {}).get("scope")
    if scope is None:   # torch.export: the innermost entry of the module stack
        stack = node.meta.get("nn_module_stack") or {}
        if stack:
            value = list(stack.values())[-1]
            scope = value[0] if isinstance(value, tuple) else str(value)
    return scope or ""


def scoped_names(graph: fx.Graph) -> dict[fx.Node, str]:
    """``"<module path>.<op>"`` for function and method nodes inside a module, counted per module."""
    out: dict[fx.Node, str] = {}
    counts: dict[tuple[str, str], int] = {}
    for node in graph.nodes:
        if node.op not in ("call_function", "call_method"):
            continue
        scope = _scope_of(node)
        if not scope:
            continue
        base = _COUNTER.sub("", node.name)
        k = counts.get((scope, base), 0)
        counts[(scope, base)] = k + 1
        out[node] = f"{scope}.{base}" if k == 0 else f"{scope}.{base}_{k}"
    return out


class NameTable:
    """Every name each value of one graph answers to (see the module docstring)."""

    def __init__(self, graph: fx.Graph) -> None:
        self.graph = graph
        self.backend = "export" if _is_export(graph) else "fx"
        #: fx node -> public name
        self.names = node_names(graph)
        #: fx node -> module paths whose call returned it (innermost first)
        self.module_outputs = module_output_aliases(graph)
        #: fx node -> scoped name (function and method nodes inside a module)
        self.scoped = scoped_names(graph)
        lookup: dict[str, fx.Node] = {}
        values = [n for n in graph.nodes if n.op not in _PLUMBING]
        for node in values:
            lookup.setdefault(self.names[node], node)
        for node in values:
            for alias in self.module_outputs.get(node, ()):
                lookup.setdefault(alias, node)
        for node in values:
            if node in self.scoped:
                lookup.setdefault(self.scoped[node], node)
        for node in values:
            lookup.setdefault(node.name, node)
        self._lookup = lookup

    def __contains__(self, name: object) -> bool:
        return name in self._lookup

    def node(self, name: str) -> fx.Node:
        """The node ``name`` (or one of its aliases) denotes; KeyError when unknown."""
        return self._lookup[name]

    def name(self, node: fx.Node) -> str:
        return self.names[node]

    def aliases(self, node: fx.Node) -> list[str]:
        """The other names ``node`` answers to, in order of precedence."""
        own = self.names[node]
        out = [a for a in self.module_outputs.get(node, ()) if a != own]
        if node in self.scoped:
            out.append(self.scoped[node])
        out.append(node.name)
        return [a for a in dict.fromkeys(out) if a != own and self._lookup.get(a) is node]

    def values(self) -> list[str]:
        """Public names of the values a model computes (no inputs, no plumbing), in graph order."""
        return [self.names[n] for n in self.graph.nodes if n.op not in (*_PLUMBING, "placeholder")]

    def suggest(self, name: str, choices: Iterable[str] | None = None) -> list[str]:
        """Valid names near ``name`` (from ``choices``, default: public and scoped names of the values)."""
        if choices is None:
            choices = [*self.values(), *(s for n, s in self.scoped.items() if self._lookup.get(s) is n)]
        return closest(name, choices)

    def resolve(self, names: Sequence[str], where: str) -> list[fx.Node]:
        """The nodes ``names`` denote; one AlignmentError naming every unknown one and names near it."""
        unknown = [name for name in names if name not in self._lookup]
        if unknown:
            parts = [f"{name!r} (nearby valid names: {', '.join(self.suggest(name))})" for name in unknown]
            raise AlignmentError(f"unknown node name(s) in {where}: " + "; ".join(parts))
        return [self._lookup[name] for name in names]


def name_table(gm: fx.GraphModule) -> NameTable:
    """The name table of ``gm``'s graph: the one its tracer built, or built now."""
    table = gm.meta.get(NAMES_KEY)
    if not isinstance(table, NameTable) or table.graph is not gm.graph:
        table = NameTable(gm.graph)
        gm.meta[NAMES_KEY] = table
    return table


def _call_name(key: str, path: str) -> str:
    """``nn_module_stack`` keys carry ``@k`` for the (k+1)-th call of a module."""
    _, at, count = key.rpartition("@")
    if at and count.isdigit():
        return f"{path}#{int(count) + 1}"
    return path


def _export_scope_outputs(graph: fx.Graph) -> dict[fx.Node, list[str]]:
    """For a torch.export graph: module calls whose single escaping value is a node.

    A node is a module call's output when it lies inside the call's scope and is the only node of
    that scope used outside it (or returned by the graph).
    """
    escaping: dict[str, list[fx.Node]] = {}
    paths: dict[str, str] = {}
    for node in graph.nodes:
        stack = node.meta.get("nn_module_stack")
        if not stack or node.op not in ("call_function", "call_method"):
            continue
        for key, value in stack.items():
            path = value[0] if isinstance(value, tuple) else str(value)
            if not path:
                continue
            paths[key] = path
            for user in node.users:
                if user.op == "call_module":  # export's runtime guard function
                    continue
                ustack = user.meta.get("nn_module_stack") or {}
                if user.op == "output" or key not in ustack:
                    escaping.setdefault(key, []).append(node)
                    break
    out: dict[fx.Node, list[tuple[str, str]]] = {}
    for key, nodes in escaping.items():
        if len(set(nodes)) == 1:
            out.setdefault(nodes[0], []).append((key, _call_name(key, paths[key])))
    result: dict[fx.Node, list[str]] = {}
    for node, entries in out.items():
        order = list((node.meta.get("nn_module_stack") or {}).keys())
        entries.sort(key=lambda kv: -order.index(kv[0]))  # innermost first
        result[node] = [name for _, name in entries]
    return result


__all__ = ["BACKEND_KEY", "NAMES_KEY", "NameTable", "module_output_aliases", "name_table", "node_names",
           "scoped_names"]
