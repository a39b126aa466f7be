"""The project's torch.fx tracer and the naming rule shared by tracing, alignment and the Family.

Naming rule: a graph value produced by calling a module is named by the module's qualified path
(``"layer2"``, ``"layer2.0.conv1"``); if the same module is called more than once, later calls get
``"path#2"``, ``"path#3"``. When one value is the output of several nested modules (``layer2`` returns
what ``layer2.3`` returns, which returns what ``layer2.3.relu`` returns) the outermost module names it.
Any other value (a function, a method, a placeholder) is named by its fx node name (``"flatten"``,
``"add_3"``, ``"x"``).

:class:`HKTTracer` records, on each value a module call returns, the module paths it is the output
of (``node.meta["hkt"]["module_outputs"]``), so non-leaf modules such as ``layer2`` get names even
though fx traces through them. Graphs from ``torch.export`` carry no such record; their names come
from ``node.meta["nn_module_stack"]`` by the same rule (see :func:`node_names`). A graph traced by
plain ``torch.fx`` falls back to naming leaf-module calls only.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import fx, nn

from ..adapters import Adapter, GenericAdapter

#: ``GraphModule.meta`` key saying which backend produced a graph ("fx" or "export").
BACKEND_KEY = "hkt_backend"


class HKTTracer(fx.Tracer):
    """fx tracer whose leaf modules and wrapped functions come from an adapter.

    Besides tracing, it notes which module calls return which graph values (the naming rule).
    """

    def __init__(self, adapter: Adapter | None = None) -> None:
        self.adapter = adapter or GenericAdapter()
        super().__init__(autowrap_functions=tuple(self.adapter.autowrap_functions))
        self._module_calls: dict[str, int] = {}
        self._created = 0

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if self.adapter.leaf_modules and isinstance(m, self.adapter.leaf_modules):
            return True
        return super().is_leaf_module(m, module_qualified_name)

    def create_node(self, *args: Any, **kwargs: Any) -> fx.Node:
        node = super().create_node(*args, **kwargs)
        self._created += 1
        node.meta.setdefault("hkt", {})["created"] = self._created
        return node

    def call_module(self, m: nn.Module, forward, args, kwargs):
        path = self.path_of_module(m)
        self._module_calls[path] = self._module_calls.get(path, 0) + 1
        call = self._module_calls[path]
        start = self._created
        out = super().call_module(m, forward, args, kwargs)
        # Only a value created during this call is this module's output (a module that returns its
        # input unchanged does not rename the input).
        if path and isinstance(out, fx.Proxy) and out.node.meta.get("hkt", {}).get("created", 0) > start:
            name = path if call == 1 else f"{path}#{call}"
            out.node.meta["hkt"].setdefault("module_outputs", []).append(name)
        return out


def fx_trace(model: nn.Module, adapter: Adapter | None = None,
             concrete_args: dict[str, Any] | None = None) -> fx.GraphModule:
    """Symbolically trace ``model``; the GraphModule shares parameters and buffers with it."""
    tracer = HKTTracer(adapter)
    if concrete_args is None and adapter is not None:
        concrete_args = adapter.concrete_args(model)
    graph = tracer.trace(model, concrete_args=concrete_args)
    name = type(model).__name__
    gm = fx.GraphModule(tracer.root, graph, name)
    gm.meta[BACKEND_KEY] = "fx"
    return gm


def node_names(graph: fx.Graph) -> dict[fx.Node, str]:
    """The public name of every node, following the module's naming rule."""
    owner = graph.owning_module
    if owner is not None and getattr(owner, "meta", {}).get(BACKEND_KEY) == "export":
        return _export_names(graph)
    names: dict[fx.Node, str] = {}
    calls: dict[str, int] = {}
    for node in graph.nodes:
        outputs = node.meta.get("hkt", {}).get("module_outputs")
        if outputs:
            names[node] = outputs[-1]  # inner calls are recorded first: the last is outermost
        elif node.op == "call_module":
            target = str(node.target)
            calls[target] = calls.get(target, 0) + 1
            names[node] = target if calls[target] == 1 else f"{target}#{calls[target]}"
        else:
            names[node] = node.name
    return names


def module_output_aliases(graph: fx.Graph) -> dict[fx.Node, list[str]]:
    """Every module path (innermost first) whose call returned each node; the last is its name."""
    owner = graph.owning_module
    if owner is not None and getattr(owner, "meta", {}).get(BACKEND_KEY) == "export":
        return _export_scope_outputs(graph)
    out: dict[fx.Node, list[str]] = {}
    calls: dict[str, int] = {}
    for node in graph.nodes:
        paths = list(node.meta.get("hkt", {}).get("module_outputs", ()))
        if node.op == "call_module":
            target = str(node.target)
            calls[target] = calls.get(target, 0) + 1
            leaf = target if calls[target] == 1 else f"{target}#{calls[target]}"
            if leaf not in paths:
                paths.insert(0, leaf)
        if paths:
            out[node] = paths
    return out


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
    out: dict[fx.Node, list[str]] = {}
    # outermost-first order of the stack means inner scopes must be inserted before outer ones
    for key, nodes in escaping.items():
        if len(set(nodes)) == 1:
            out.setdefault(nodes[0], []).append((key, _call_name(key, paths[key])))
    result: dict[fx.Node, list[str]] = {}
    for node, entries in out.items():
        order = list((node.meta.get("nn_module_stack") or {}).keys())
        entries.sort(key=lambda kv: -order.index(kv[0]))  # innermost first
        result[node] = [name for _, name in entries]
    return result


def _export_names(graph: fx.Graph) -> dict[fx.Node, str]:
    scoped = _export_scope_outputs(graph)
    return {node: (scoped[node][-1] if node in scoped else node.name) for node in graph.nodes}


def is_tensor_value(node: fx.Node) -> bool:
    meta = node.meta.get("tensor_meta")
    return meta is not None and hasattr(meta, "shape")


def example_tensor_tuple(inputs: Any) -> tuple[torch.Tensor, ...]:
    if isinstance(inputs, torch.Tensor):
        return (inputs,)
    return tuple(inputs)
