"""Architecture adapters: what the engine needs to know about a family of models.

An adapter claims models (by class, or by registered model name), tells the tracer which
sub-modules to keep opaque (leaf modules) and which free functions to wrap, may declare the
model's functional blocks explicitly, builds example inputs, and says which output is the
prediction. :class:`GenericAdapter` serves any model no registered adapter claims.

Block names are qualified module paths (``"layer2"``, ``"encoder.stage1"``) or, for values that
are not a module's output, graph node names (``"flatten"``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn


class Adapter:
    """Base class; override what differs from the defaults. Instances are registered."""

    #: Model classes this adapter claims (isinstance check).
    model_classes: tuple[type, ...] = ()
    #: Registered model names this adapter claims (the model factory sets ``model.hkt_model_name``).
    model_names: tuple[str, ...] = ()
    #: Module classes the tracer keeps as single opaque calls.
    leaf_modules: tuple[type, ...] = ()
    #: Free functions the tracer records as calls instead of tracing into.
    autowrap_functions: tuple[Callable, ...] = ()

    def handles(self, model: nn.Module) -> bool:
        if self.model_classes and isinstance(model, self.model_classes):
            return True
        return getattr(model, "hkt_model_name", None) in self.model_names

    def declared_blocks(self, model: nn.Module) -> list[str] | None:
        """Ordered block boundary names, or None to let the engine discover them."""
        return None

    def concrete_args(self, model: nn.Module) -> dict[str, Any] | None:
        """Arguments fixed while tracing (e.g. ``{"iters": 4}``), passed to fx."""
        return None

    def example_inputs(self, model: nn.Module, shapes: Sequence[Sequence[int]]) -> tuple[torch.Tensor, ...]:
        gen = torch.Generator().manual_seed(0)
        return tuple(torch.randn(*shape, generator=gen) for shape in shapes)

    def prediction(self, output: Any) -> torch.Tensor:
        """The tensor that is the model's prediction among whatever ``forward`` returns."""
        if isinstance(output, torch.Tensor):
            return output
        if isinstance(output, (list, tuple)) and output:
            return self.prediction(output[-1])
        if isinstance(output, dict) and output:
            return self.prediction(next(reversed(output.values())))
        raise TypeError(f"{type(self).__name__}: cannot find a prediction tensor in output of type "
                        f"{type(output).__name__}; override Adapter.prediction")


class GenericAdapter(Adapter):
    """Serves any model no registered adapter claims: no leaves, discovered blocks."""

    def handles(self, model: nn.Module) -> bool:
        return True


def example_inputs_for(model: nn.Module, shapes: Sequence[Sequence[int]], dtypes: Sequence[str] = (),
                       manager: Any = None, *, adapter: Adapter | None = None) -> tuple[torch.Tensor, ...]:
    """The example inputs of ``model`` for ``shapes`` (batch first): its adapter's, in ``dtypes``
    where given (a card's ``input_dtypes``). The one place example inputs are made from shapes.

    An input the adapter made as floats that must be an integer (token ids, an attention mask)
    becomes ones of its shape: a valid id and an unmasked position, as random floats are no tokens;
    an input the adapter already made in another numeric dtype is cast."""
    adapter = adapter or adapter_for(model, manager)
    inputs = tuple(adapter.example_inputs(model, shapes))
    if not dtypes:
        return inputs
    out = []
    for value, name in zip(inputs, dtypes):
        dtype = getattr(torch, name)
        if value.dtype != dtype:
            integer = not dtype.is_floating_point and not dtype.is_complex
            value = (torch.ones(value.shape, dtype=dtype) if integer and value.is_floating_point()
                     else value.to(dtype))
        out.append(value)
    return (*out, *inputs[len(out):])


def adapter_for(model: nn.Module, manager) -> Adapter:
    """The first adapter registered in ``manager`` (by name order) that claims ``model``, else the
    generic one. Resolve it once per model and keep it: the lookup walks the registry."""
    if manager is None:
        raise TypeError("adapter_for(model, manager): pass the plugin manager the adapters are registered "
                        "in (hkt_core.default_manager() for the process-wide one)")
    generic = None
    for entry in manager.registry("adapters").entries():
        adapter = entry.obj
        if isinstance(adapter, GenericAdapter):
            generic = adapter
            continue
        if adapter.handles(model):
            return adapter
    return generic or GenericAdapter()
