"""Transfer operators tau: map a donor activation to the receiver's shape.

A transfer is built from two shapes without the batch dimension, channel-first
(``(C,)`` vectors, ``(C, *S)`` maps and tokens moved to ``(D, T)``), and called on a batch.
Every transfer subclasses :class:`Transfer`, which checks and keeps the two shapes.
``identity`` when shapes match; ``conv1x1`` and ``linear`` project the channels (a 1x1
convolution is a linear map over channels applied at every position) and resize the spatial
dimensions (bilinear for 2-D maps, linear / trilinear for 1-D / 3-D); ``auto`` picks one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

_RESIZE_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}


def _shape(value: Sequence[int], what: str) -> tuple[int, ...]:
    shape = tuple(int(d) for d in value)
    if not shape or any(d < 1 for d in shape):
        raise ValueError(f"{what} shape {tuple(value)!r} is invalid: expected (C,) or (C, *S) with positive sizes "
                         f"(no batch dimension)")
    return shape


def _resize(x: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    if tuple(x.shape[2:]) == size:
        return x
    return F.interpolate(x, size=size, mode=_RESIZE_MODES[len(size)], align_corners=False)


class Transfer(nn.Module):
    """Base class of transfer operators tau: ``cls(source_shape, target_shape)``, called on a batch.

    Shapes exclude the batch dimension and are channel-first: ``(C,)`` for a vector, ``(C, *S)``
    for a map, ``(D, T)`` for tokens. The constructor checks them and keeps them as
    ``source_shape`` and ``target_shape``; a subclass raises ``ValueError`` (naming what it
    supports) for shapes it cannot map, and its ``forward(donor)`` returns a tensor of
    ``(batch, *target_shape)``.
    """

    def __init__(self, source_shape: Sequence[int], target_shape: Sequence[int]) -> None:
        super().__init__()
        self.source_shape = _shape(source_shape, "source")
        self.target_shape = _shape(target_shape, "target")

    def extra_repr(self) -> str:
        return f"{self.source_shape} -> {self.target_shape}"

    def forward(self, donor: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class IdentityTransfer(Transfer):
    """Pass the donor unchanged; the two shapes must already match."""

    def __init__(self, source_shape: Sequence[int], target_shape: Sequence[int]) -> None:
        super().__init__(source_shape, target_shape)
        source, target = self.source_shape, self.target_shape
        if source != target:
            raise ValueError(f"transfer 'identity' needs equal shapes, got {source} -> {target}; "
                             f"use 'auto', 'conv1x1' (maps) or 'linear' (vectors, tokens)")
        self.shape = source

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class _ChannelProjection(Transfer):
    """Project channels ``Cs -> Ct`` and resize ``Ss -> St``.

    Projection and linear resizing commute (interpolation weights sum to one, so even the bias
    commutes); the projection runs at whichever resolution is smaller. Equal positions at build
    time are kept as they come: a token sequence of another length than the example's (both models
    read the same inputs) passes through at its own length.
    """

    name = "projection"

    def __init__(self, source_shape: Sequence[int], target_shape: Sequence[int]) -> None:
        super().__init__(source_shape, target_shape)
        source, target = self.source_shape, self.target_shape
        if len(source) != len(target):
            raise ValueError(f"transfer {self.name!r} cannot map {source} to {target}: the ranks differ; "
                             f"pool the larger one first (extractor 'pool') or align other nodes")
        if len(source) - 1 > 3:
            raise ValueError(f"transfer {self.name!r} supports up to 3 spatial dimensions, got {source}")
        self.resize_first = math.prod(source[1:]) > math.prod(target[1:])
        self.keeps_size = source[1:] == target[1:]
        self.proj = self._projection(source[0], target[0], len(source) - 1)

    def _projection(self, cin: int, cout: int, spatial_dims: int) -> nn.Module:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = self.target_shape[1:]
        if self.keeps_size:
            return self.proj(x)
        if self.resize_first:
            return self.proj(_resize(x, size))
        x = self.proj(x)
        return _resize(x, size) if size else x


class Conv1x1Transfer(_ChannelProjection):
    """A 1x1 convolution over channels plus (bi)linear resizing of the spatial dimensions (maps)."""

    name = "conv1x1"

    def _projection(self, cin: int, cout: int, spatial_dims: int) -> nn.Module:
        if spatial_dims == 0:
            raise ValueError("transfer 'conv1x1' needs maps (C, *S); for vectors (C,) use 'linear' or 'auto'")
        conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[spatial_dims]
        return conv(cin, cout, kernel_size=1)


class _ChannelLinear(nn.Module):
    """``nn.Linear`` over dimension 1 of a channel-first tensor."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.linear = nn.Linear(cin, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            return self.linear(x)
        return self.linear(x.movedim(1, -1)).movedim(-1, 1)


class LinearTransfer(_ChannelProjection):
    """A linear map over features for vectors ``(C,)`` and tokens ``(D, T)`` (T resized linearly)."""

    name = "linear"

    def _projection(self, cin: int, cout: int, spatial_dims: int) -> nn.Module:
        if spatial_dims > 1:
            raise ValueError("transfer 'linear' is for vectors (C,) and tokens (D, T); for maps use 'conv1x1'")
        return _ChannelLinear(cin, cout)


def auto_transfer(source_shape: Sequence[int], target_shape: Sequence[int]) -> Transfer:
    """Identity when the shapes match, ``linear`` for vectors and tokens, else ``conv1x1``."""
    source, target = _shape(source_shape, "source"), _shape(target_shape, "target")
    if source == target:
        return IdentityTransfer(source, target)
    if len(source) <= 2 and len(target) <= 2:
        return LinearTransfer(source, target)
    return Conv1x1Transfer(source, target)
