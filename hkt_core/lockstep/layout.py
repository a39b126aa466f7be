"""Moving a value's channels to axis 1 and back.

Operators work channel-first ``(B, C, ...)``. Maps and vectors already are; tokens ``(B, N, D)``
keep their features last (``channels_last``) and are moved to ``(B, D, N)``. Which values are
tokens is read from the graph by :mod:`hkt_core.kinds` (one reading for alignment and Family).
"""

from __future__ import annotations

import torch

LAYOUTS = ("channels_first", "channels_last")


def to_channels_first(x: torch.Tensor, layout: str) -> torch.Tensor:
    return x.movedim(-1, 1) if layout == "channels_last" else x


def from_channels_first(x: torch.Tensor, layout: str) -> torch.Tensor:
    return x.movedim(1, -1) if layout == "channels_last" else x


__all__ = ["LAYOUTS", "from_channels_first", "to_channels_first"]
