"""The adapter that tells the engine how to trace RAFT and where its three blocks are.

The tracer keeps the encoders, the correlation, the update step and the upsampler opaque
(:data:`hkt_flow.network.LEAF_MODULES`), and the number of update iterations is fixed while
tracing (``concrete_args = {"iters": model.iters}``) so the recurrent loop unrolls. The paper's
blocks are then these graph values (the naming rule of :mod:`hkt_core.trace.tracer`):

==========================  ===================  ===================================
block                       graph value          shape
==========================  ===================  ===================================
feature extraction          ``fnet``             ``(2B, C_f, H/8, W/8)`` both frames
context extraction          ``cnet``             ``(B, hidden+context, H/8, W/8)``
flow prediction (output)    ``upsampler#N``      ``(B, 2, H, W)``, the final flow
==========================  ===================  ===================================

with ``N = iters`` (``upsampler`` when ``iters == 1``). Mixing happens at the first two; the
last is the model's prediction (L1 and L3 apply there).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from hkt_core import Adapter

from .models import MODELS
from .network import LEAF_MODULES, RAFT


def final_flow_name(iters: int) -> str:
    """The graph value of the last upsampled flow after ``iters`` update iterations."""
    return "upsampler" if iters == 1 else f"upsampler#{iters}"


class RAFTAdapter(Adapter):
    """Claims :class:`hkt_flow.network.RAFT` models (any size)."""

    model_classes = (RAFT,)
    model_names = tuple(MODELS)
    leaf_modules = LEAF_MODULES

    def declared_blocks(self, model: nn.Module) -> list[str]:
        return ["fnet", "cnet", final_flow_name(model.iters)]

    def concrete_args(self, model: nn.Module) -> dict[str, Any]:
        # None: the model uses its own ``iters`` attribute, so the traced graph is called exactly
        # like the model, ``graph_module(image1, image2)``.
        return {"iters": None}

    def example_inputs(self, model: nn.Module, shapes: Sequence[Sequence[int]]) -> tuple[torch.Tensor, ...]:
        """Two frames with pixel values in [0, 255]: the second is the first shifted by one pixel."""
        if len(shapes) == 1:
            shapes = [shapes[0], shapes[0]]
        gen = torch.Generator().manual_seed(0)
        first = torch.rand(*shapes[0], generator=gen) * 255
        second = torch.roll(first, shifts=1, dims=-1)
        return (first, second)

    def prediction(self, output: Any) -> torch.Tensor:
        """The final full-resolution flow (``output[-1]``), carrying the earlier iterates.

        The engine hands this tensor to the task's losses and metrics. So that the task loss can
        still be RAFT's sequence loss, the earlier iterates ride along as the attribute
        ``flow_iterates`` (a tuple; the final flow itself is not in it, which would make a
        reference cycle). See :func:`hkt_flow.target.iterates`.
        """
        if isinstance(output, torch.Tensor):
            return output
        if isinstance(output, (list, tuple)) and output and all(isinstance(o, torch.Tensor) for o in output):
            final = output[-1]
            final.flow_iterates = tuple(output[:-1])
            return final
        raise TypeError(f"RAFTAdapter: expected the list of flow iterates, got {type(output).__name__}")
