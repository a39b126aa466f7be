"""Extractors E: turn one or more donor graph values into the one tensor that is transferred.

An extractor is built without arguments and called on channel-first tensors ``(B, C, *S)`` or
``(B, C)``. ``identity`` takes exactly one value (a block output); ``concat`` resizes every map
to the first one's spatial size and stacks channels; ``pool`` averages every value over its
spatial dimensions and concatenates the resulting vectors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_RESIZE_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}


class IdentityExtractor(nn.Module):
    """A single block output, unchanged."""

    def forward(self, *values: torch.Tensor) -> torch.Tensor:
        if len(values) != 1:
            raise ValueError(f"extractor 'identity' takes exactly one value, got {len(values)}; "
                             f"use 'concat' or 'pool' to combine several nodes")
        return values[0]


class ConcatExtractor(nn.Module):
    """Channel-wise concatenation, spatial sizes resized (linearly) to the first value's."""

    def forward(self, *values: torch.Tensor) -> torch.Tensor:
        if not values:
            raise ValueError("extractor 'concat' needs at least one value")
        first = values[0]
        ranks = {v.dim() for v in values}
        if len(ranks) != 1:
            raise ValueError(f"extractor 'concat' needs values of one rank, got shapes "
                             f"{[tuple(v.shape) for v in values]}; use 'pool' to mix maps and vectors")
        size = tuple(first.shape[2:])
        parts = [v if tuple(v.shape[2:]) == size else
                 F.interpolate(v, size=size, mode=_RESIZE_MODES[len(size)], align_corners=False)
                 for v in values]
        return torch.cat(parts, dim=1)


class PoolExtractor(nn.Module):
    """Global average over spatial dimensions of every value, concatenated into one vector."""

    def forward(self, *values: torch.Tensor) -> torch.Tensor:
        if not values:
            raise ValueError("extractor 'pool' needs at least one value")
        return torch.cat([v.flatten(2).mean(2) if v.dim() > 2 else v for v in values], dim=1)
