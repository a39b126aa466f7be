"""Moving a value's channels to axis 1 and back.

Operators work channel-first ``(B, C, ...)``. A value is a ``map`` (B, C, *spatial), ``tokens``
(B, N, D) or a ``vector`` (B, C) (DESIGN section 5); maps and vectors already are channel-first,
tokens are moved to ``(B, D, N)``. Which kind a value is is read from the graph by
:mod:`hkt_core.trace.kinds` (one reading for alignment and Family).
"""

from __future__ import annotations

import torch


def to_channels_first(x: torch.Tensor, kind: str) -> torch.Tensor:
    """``x`` with its channels on axis 1 (``kind``: map, tokens or vector)."""
    return x.movedim(-1, 1) if kind == "tokens" else x


def from_channels_first(x: torch.Tensor, kind: str) -> torch.Tensor:
    """A channel-first value back in the layout of its ``kind``."""
    return x.movedim(1, -1) if kind == "tokens" else x


__all__ = ["from_channels_first", "to_channels_first"]
