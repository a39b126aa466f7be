"""The ``torch.export`` fallback for models whose Python control flow defeats symbolic tracing.

``torch.export.export(..., strict=False)`` runs ``forward`` with fake tensors of the example shapes,
so shape-dependent branches and loops are resolved for those shapes. The unlifted module it
returns is a GraphModule whose parameters are the model's own; its nodes carry
``meta["nn_module_stack"]`` (module paths) and ``meta["val"]`` (fake tensors with shapes).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import fx, nn

from .names import BACKEND_KEY, NAMES_KEY, NameTable


def _dynamic(value: Any) -> Any:
    """``Dim.AUTO`` on a tensor's batch dimension and, for integer tensors (token ids, masks), on
    its sequence dimension: dynamic where the model allows it, specialised (never an error) where not."""
    if isinstance(value, torch.Tensor) and value.dim() >= 1:
        dims = (0, 1) if not value.is_floating_point() and value.dim() >= 2 else (0,)
        return {d: torch.export.Dim.AUTO for d in dims}
    return None


def _unspecialised(value: Any) -> Any:
    """``value`` with every dimension :func:`_dynamic` marks grown from 1 to 2 (by repeating it):
    torch.export specialises a dimension of size 1, so a batch-1 example would pin the batch size."""
    spec = _dynamic(value)
    if spec is None:
        return value
    for d in spec:
        if value.shape[d] == 1:
            value = torch.cat([value, value], dim=d)
    return value


def unspecialised_inputs(inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """The example inputs as :func:`export_trace` exports them (size-1 dynamic dimensions grown to 2)."""
    return tuple(_unspecialised(t) for t in inputs)


def export_trace(model: nn.Module, inputs: tuple[torch.Tensor, ...],
                 kwargs: dict[str, Any] | None = None) -> fx.GraphModule:
    """An fx GraphModule of ``model`` marked backend "export"; its batch size (and, for integer
    inputs, its sequence length) stay dynamic where the model allows, so the lockstep interpreter
    runs it on batches shaped unlike the example. Specialised to the example shapes when the
    dynamic export fails. A dimension of size 1 in the example is exported at size 2 (a size-1
    dimension would be specialised); the graph's values are the same for any size."""
    inputs = unspecialised_inputs(inputs)
    kwargs = {k: _unspecialised(v) for k, v in (kwargs or {}).items()}
    dynamic = (tuple(_dynamic(t) for t in inputs),
               {k: _dynamic(v) for k, v in kwargs.items()})
    try:
        program = torch.export.export(model, tuple(inputs), kwargs=kwargs, strict=False,
                                      dynamic_shapes={**dict(zip(_arg_names(model, len(inputs)), dynamic[0])),
                                                      **dynamic[1]})
    except Exception:  # shapes the model's code pins: the static graph (what align alone needs)
        program = torch.export.export(model, tuple(inputs), kwargs=kwargs, strict=False)
    gm = program.module()
    gm.meta[BACKEND_KEY] = "export"
    gm.meta[NAMES_KEY] = NameTable(gm.graph)
    return gm


def _arg_names(model: nn.Module, count: int) -> list[str]:
    """The names of ``forward``'s first ``count`` positional parameters (``dynamic_shapes`` keys)."""
    import inspect

    params = [p.name for p in inspect.signature(model.forward).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(params) < count:
        raise TypeError(f"{type(model).__name__}.forward takes {len(params)} positional inputs, got {count}")
    return params[:count]
