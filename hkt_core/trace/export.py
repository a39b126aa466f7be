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


def export_trace(model: nn.Module, inputs: tuple[torch.Tensor, ...],
                 kwargs: dict[str, Any] | None = None) -> fx.GraphModule:
    """An fx GraphModule of ``model`` specialised to the example shapes, marked backend "export"."""
    program = torch.export.export(model, inputs, kwargs=kwargs, strict=False)
    gm = program.module()
    gm.meta[BACKEND_KEY] = "export"
    gm.meta[NAMES_KEY] = NameTable(gm.graph)
    return gm
