"""The project's torch.fx tracer and the naming rule shared by tracing, alignment and the Family.

Naming rule: a graph value produced by calling a module is named by the module's qualified path
(``"layer2"``, ``"layer2.0.conv1"``); if the same module is called more than once, later calls get
``"path#2"``, ``"path#3"``. Any other value (a function, a method, a placeholder) is named by its
fx node name (``"flatten"``, ``"add_3"``, ``"x"``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import fx, nn

from ..adapters import Adapter, GenericAdapter


class HKTTracer(fx.Tracer):
    """fx tracer whose leaf modules and wrapped functions come from an adapter."""

    def __init__(self, adapter: Adapter | None = None) -> None:
        self.adapter = adapter or GenericAdapter()
        super().__init__(autowrap_functions=tuple(self.adapter.autowrap_functions))

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if self.adapter.leaf_modules and isinstance(m, self.adapter.leaf_modules):
            return True
        return super().is_leaf_module(m, module_qualified_name)


def fx_trace(model: nn.Module, adapter: Adapter | None = None,
             concrete_args: dict[str, Any] | None = None) -> fx.GraphModule:
    """Symbolically trace ``model``; the GraphModule shares parameters and buffers with it."""
    tracer = HKTTracer(adapter)
    if concrete_args is None and adapter is not None:
        concrete_args = adapter.concrete_args(model)
    graph = tracer.trace(model, concrete_args=concrete_args)
    name = type(model).__name__
    return fx.GraphModule(tracer.root, graph, name)


def node_names(graph: fx.Graph) -> dict[fx.Node, str]:
    """The public name of every node, following the module's naming rule."""
    names: dict[fx.Node, str] = {}
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            target = str(node.target)
            calls[target] = calls.get(target, 0) + 1
            names[node] = target if calls[target] == 1 else f"{target}#{calls[target]}"
        else:
            names[node] = node.name
    return names


def is_tensor_value(node: fx.Node) -> bool:
    meta = node.meta.get("tensor_meta")
    return meta is not None and hasattr(meta, "shape")


def example_tensor_tuple(inputs: Any) -> tuple[torch.Tensor, ...]:
    if isinstance(inputs, torch.Tensor):
        return (inputs,)
    return tuple(inputs)
