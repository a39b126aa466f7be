"""The project's torch.fx tracer; it builds the graph's name table (:mod:`hkt_core.trace.names`).

:class:`HKTTracer` records, on each value a module call returns, the module paths it is the output
of (``node.meta["hkt"]["module_outputs"]``), so non-leaf modules such as ``layer2`` get names even
though fx traces through them, and on every node the module whose forward created it
(``node.meta["hkt"]["scope"]``, for scoped names such as ``layer1.0.add_1``). Graphs from
``torch.export`` carry no such record; their names come from ``node.meta["nn_module_stack"]`` by the
same rule. A graph traced by plain ``torch.fx`` falls back to naming leaf-module calls only.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import fx, nn

from ..adapters import Adapter, GenericAdapter
from .names import BACKEND_KEY, NAMES_KEY, NameTable, module_output_aliases, node_names


#: torch's functions that draw random numbers: recorded in a traced graph, never drawn while tracing
RANDOM_FUNCTIONS = ("rand", "randn", "randint", "rand_like", "randn_like", "randint_like", "randperm", "bernoulli",
                    "normal", "multinomial", "poisson")


class HKTTracer(fx.Tracer):
    """fx tracer whose leaf modules and wrapped functions come from an adapter.

    Besides tracing, it notes which module calls return which graph values (the naming rule).
    """

    #: A buffer read in ``forward`` is a graph value (``get_attr``), never a tensor the trace touches:
    #: ``self.num_batches_tracked.add_(1)`` in a module fx traces through is recorded as the update
    #: it is, instead of running once at trace time and never again.
    proxy_buffer_attributes = True

    def __init__(self, adapter: Adapter | None = None) -> None:
        self.adapter = adapter or GenericAdapter()
        super().__init__(autowrap_functions=tuple(self.adapter.autowrap_functions))
        self._module_calls: dict[str, int] = {}
        self._created = 0

    def trace(self, root: Any, concrete_args: dict[str, Any] | None = None) -> fx.Graph:
        """As ``fx.Tracer.trace``, with torch's random functions recorded as graph values
        (:data:`RANDOM_FUNCTIONS`): a forward that draws ``torch.rand([])`` from no input of its own
        would otherwise draw once, at trace time, and bake that draw into the graph (a layer
        skipped, or kept, for good)."""
        originals = {name: getattr(torch, name) for name in RANDOM_FUNCTIONS if hasattr(torch, name)}

        def recorded(fn):
            def call(*args: Any, **kwargs: Any) -> Any:
                return self.create_proxy("call_function", fn, args, kwargs)
            return call

        try:
            for name, fn in originals.items():
                setattr(torch, name, recorded(fn))
            return super().trace(root, concrete_args)
        finally:
            for name, fn in originals.items():
                setattr(torch, name, fn)

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if self.adapter.leaf_modules and isinstance(m, self.adapter.leaf_modules):
            return True
        return super().is_leaf_module(m, module_qualified_name)

    def create_node(self, *args: Any, **kwargs: Any) -> fx.Node:
        node = super().create_node(*args, **kwargs)
        self._created += 1
        record = node.meta.setdefault("hkt", {})
        record["created"] = self._created
        record["scope"] = self.scope.module_path
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
    gm.meta[NAMES_KEY] = NameTable(gm.graph)
    return gm


def is_tensor_value(node: fx.Node) -> bool:
    meta = node.meta.get("tensor_meta")
    return meta is not None and hasattr(meta, "shape")


def example_tensor_tuple(inputs: Any) -> tuple[torch.Tensor, ...]:
    if isinstance(inputs, torch.Tensor):
        return (inputs,)
    return tuple(inputs)


__all__ = ["BACKEND_KEY", "HKTTracer", "example_tensor_tuple", "fx_trace", "is_tensor_value",
           "module_output_aliases", "node_names"]
