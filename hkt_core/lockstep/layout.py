"""Layout inference: where the channels of a value are, and moving them to axis 1 and back.

Operators work channel-first ``(B, C, ...)``. Maps and vectors already are; a rank-3 value is a
token sequence ``(B, T, D)`` (channels last) when the nearest informative producer works on the
last axis (Linear, LayerNorm, attention) or the value was transposed out of a convolution.
"""

from __future__ import annotations

import torch
from torch import fx, nn

LAYOUTS = ("channels_first", "channels_last")

_CHANNELS_LAST_MODULES = tuple(getattr(nn, name) for name in (
    "Linear", "LayerNorm", "RMSNorm", "MultiheadAttention", "Embedding", "TransformerEncoderLayer",
    "TransformerDecoderLayer", "TransformerEncoder", "TransformerDecoder") if hasattr(nn, name))
_CHANNELS_FIRST_MODULES = (nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm, nn.GroupNorm,
                           nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
                           nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd,
                           nn.modules.instancenorm._InstanceNorm, nn.Upsample)
_MOVES = ("transpose", "permute", "movedim")


def module_layout(module: nn.Module) -> str | None:
    """The layout the innermost informative sub-module of ``module`` produces (None: no clue)."""
    for m in reversed(list(module.modules())):
        if isinstance(m, _CHANNELS_LAST_MODULES):
            return "channels_last"
        if isinstance(m, _CHANNELS_FIRST_MODULES):
            return "channels_first"
    return None


def _moves_axes(n: fx.Node) -> bool:
    return (n.op == "call_method" and str(n.target) in _MOVES) or (
        n.op == "call_function" and n.target in (torch.transpose, torch.permute, torch.movedim))


def infer_layout(gm: fx.GraphModule, node: fx.Node, rank: int) -> str:
    """The layout of ``node``'s value (of rank ``rank``) in ``gm``, searched breadth-first upstream."""
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
                found = module_layout(gm.get_submodule(str(n.target)))
                if found:
                    return found
            if _moves_axes(n):
                return "channels_last"
            nxt.extend(n.all_input_nodes)
        frontier = nxt
    return "channels_first"


def to_channels_first(x: torch.Tensor, layout: str) -> torch.Tensor:
    return x.movedim(-1, 1) if layout == "channels_last" else x


def from_channels_first(x: torch.Tensor, layout: str) -> torch.Tensor:
    return x.movedim(1, -1) if layout == "channels_last" else x


__all__ = ["LAYOUTS", "from_channels_first", "infer_layout", "module_layout", "to_channels_first"]
