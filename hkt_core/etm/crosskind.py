"""Transfers between kinds of values: tokens <-> maps, maps / tokens -> vectors, vectors -> both.

Like every transfer, each is built from two channel-first shapes without the batch (a map
``(C, *S)``, tokens ``(D, N)``, a vector ``(C,)``) and called on a batch. Each also takes the two
values' :class:`~hkt_core.trace.kinds.ValueKind` (``source=``, ``target=``), which tell it about class
tokens and token grids; without them, a rank-2 shape is read as tokens on the tokens side.
The Family picks one by the two kinds (:func:`cross_kind_transfer`); they are registered as ETM
operators (``tokens_to_map``, ``map_to_tokens``, ``to_vector``, ``from_vector``).

- ``tokens_to_map``: drop the class token, lay the tokens on their grid (a 1-D map when the target
  is 1-D), then resize and project channels with a 1x1 convolution;
- ``map_to_tokens``: flatten the map's positions (resized to the token grid first when the target
  has one of the map's rank), average-pool or interpolate them to the token count, project features
  linearly; a class token, when the target has one, is the mean of the projected tokens;
- ``to_vector``: the class token when the source has one, else the mean over positions, then a
  linear map;
- ``from_vector``: a linear map, broadcast over the target's positions, plus a learned position
  table (without it every position would carry the same donor, and spatial Genetic Attention of a
  constant source is identically zero).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..trace.kinds import ValueKind
from .transfers import Conv1x1Transfer, Transfer, _ChannelLinear, _resize

#: (source kind, target kind) -> registered transfer name
CROSS_KIND = {
    ("tokens", "map"): "tokens_to_map",
    ("map", "tokens"): "map_to_tokens",
    ("map", "vector"): "to_vector",
    ("tokens", "vector"): "to_vector",
    ("vector", "map"): "from_vector",
    ("vector", "tokens"): "from_vector",
}


def cross_kind_transfer(source: ValueKind, target: ValueKind) -> str | None:
    """The registered transfer that maps ``source``'s kind onto ``target``'s, or None for one kind."""
    if source.kind == target.kind:
        return None
    return CROSS_KIND[(source.kind, target.kind)]


def _token_facts(kind: ValueKind | None, shape: tuple[int, ...]) -> tuple[bool, tuple[int, ...] | None]:
    if kind is None or kind.kind != "tokens":
        return False, None
    if kind.channel_first_shape[1] != shape[1]:
        raise ValueError(f"tokens {kind.describe()} do not have the token count of shape {shape}")
    return kind.class_token, kind.grid


class TokensToMap(Transfer):
    """Tokens ``(D, N)`` -> a map ``(C, *S)``: on their grid, resized, 1x1-projected."""

    def __init__(self, source_shape: Sequence[int], target_shape: Sequence[int], *,
                 source: ValueKind | None = None, target: ValueKind | None = None) -> None:
        super().__init__(source_shape, target_shape)
        src, dst = self.source_shape, self.target_shape
        if len(src) != 2 or len(dst) < 2:
            raise ValueError(f"transfer 'tokens_to_map' maps tokens (D, N) to a map (C, *S), got {src} -> {dst}")
        self.class_token, grid = _token_facts(source, src)
        count = src[1] - int(self.class_token)
        spatial = len(dst) - 1
        if spatial == 1:
            grid = (count,)
        elif grid is None:
            side = math.isqrt(count)
            if spatial != 2 or side * side != count:
                raise ValueError(f"transfer 'tokens_to_map': {count} tokens have no {spatial}-D grid; state one "
                                 f"(layouts = {{\"name\" = \"tokens HxW\"}})")
            grid = (side, side)
        if len(grid) != spatial or math.prod(grid) != count:
            raise ValueError(f"transfer 'tokens_to_map': a grid {grid} of {count} tokens cannot become a "
                             f"{spatial}-D map {dst}")
        self.grid = tuple(grid)
        self.inner = Conv1x1Transfer((src[0], *self.grid), dst)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.class_token:
            x = x[:, :, 1:]
        return self.inner(x.reshape(x.shape[0], x.shape[1], *self.grid))


class MapToTokens(Transfer):
    """A map ``(C, *S)`` -> tokens ``(D, N)``: positions flattened, pooled or interpolated, projected."""

    def __init__(self, source_shape: Sequence[int], target_shape: Sequence[int], *,
                 source: ValueKind | None = None, target: ValueKind | None = None) -> None:
        super().__init__(source_shape, target_shape)
        src, dst = self.source_shape, self.target_shape
        if len(src) < 2 or len(dst) != 2:
            raise ValueError(f"transfer 'map_to_tokens' maps a map (C, *S) to tokens (D, N), got {src} -> {dst}")
        self.class_token, grid = _token_facts(target, dst)
        self.count = dst[1] - int(self.class_token)
        self.grid = tuple(grid) if grid and len(grid) == len(src) - 1 else None
        self.proj = _ChannelLinear(src[0], dst[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.grid is not None:
            x = _resize(x, self.grid)
        flat = x.flatten(2)
        if flat.shape[2] > self.count:
            flat = F.adaptive_avg_pool1d(flat, self.count)
        elif flat.shape[2] < self.count:
            flat = F.interpolate(flat, size=self.count, mode="linear", align_corners=False)
        tokens = self.proj(flat)
        if self.class_token:
            tokens = torch.cat([tokens.mean(2, keepdim=True), tokens], dim=2)
        return tokens


class ToVector(Transfer):
    """A map or tokens -> a vector ``(C,)``: the class token, or the mean over positions, projected."""

    def __init__(self, source_shape: Sequence[int], target_shape: Sequence[int], *,
                 source: ValueKind | None = None, target: ValueKind | None = None) -> None:
        super().__init__(source_shape, target_shape)
        src, dst = self.source_shape, self.target_shape
        if len(src) < 2 or len(dst) != 1:
            raise ValueError(f"transfer 'to_vector' maps a map or tokens to a vector (C,), got {src} -> {dst}")
        self.class_token, _ = _token_facts(source, src)
        self.proj = nn.Linear(src[0], dst[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x[:, :, 0] if self.class_token else x.flatten(2).mean(2)
        return self.proj(pooled)


class FromVector(Transfer):
    """A vector ``(C,)`` -> a map or tokens ``(D, *S)``: projected, broadcast, plus a position table."""

    def __init__(self, source_shape: Sequence[int], target_shape: Sequence[int], *,
                 source: ValueKind | None = None, target: ValueKind | None = None) -> None:
        super().__init__(source_shape, target_shape)
        src, dst = self.source_shape, self.target_shape
        if len(src) != 1 or len(dst) < 2:
            raise ValueError(f"transfer 'from_vector' maps a vector (C,) to a map or tokens, got {src} -> {dst}")
        self.proj = nn.Linear(src[0], dst[0])
        self.position = nn.Parameter(torch.randn(1, *dst) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value = self.proj(x).reshape(x.shape[0], self.target_shape[0], *([1] * (len(self.target_shape) - 1)))
        return value + self.position


CROSS_KIND_TRANSFERS = {"tokens_to_map": TokensToMap, "map_to_tokens": MapToTokens, "to_vector": ToVector,
                        "from_vector": FromVector}



def _as_kind(kind, shape, side: str):
    """A :class:`ValueKind` from a kind (or its name) and the value's shape as the model holds it."""
    from ..trace.kinds import KINDS

    if isinstance(kind, ValueKind):
        return kind if shape is None else kind.with_shape(shape)
    if kind not in KINDS:
        raise ValueError(f"transfer_between: {side} kind {kind!r} is not one of {', '.join(KINDS)}")
    if shape is None or len(tuple(shape)) < 2:
        raise ValueError(f"transfer_between: the {side} shape must be the value's batched shape, (B, C), "
                         f"(B, N, D) or (B, C, *spatial), got {shape!r}")
    return ValueKind(kind, tuple(shape))


def transfer_between(source_kind, target_kind, source_shape=None, target_shape=None, *,
                     transfer: str = "auto", manager=None) -> nn.Module:
    """The transfer that maps a value of ``source_kind`` onto one of ``target_kind``: the rule every
    mixing point of a :class:`hkt_core.Family` is built by.

    Kinds are :class:`~hkt_core.trace.kinds.ValueKind` (shapes then optional) or their names ``map``,
    ``tokens``, ``vector`` with the values' batched shapes as the models hold them (``(B, N, D)``
    for tokens). Between values of one kind it is the registered transfer ``transfer`` (``auto``:
    identity, 1x1 convolution or linear map, resizing positions); between kinds, the registered
    cross-kind transfer (:data:`CROSS_KIND`). The module works channel-first, like every ETM
    operator: it takes ``to_channels_first(value, source kind)`` and returns the target's
    channel-first value (:mod:`hkt_core.lockstep.layout`). A pair no transfer connects (a 1-D map
    and a 2-D map, tokens without a grid and a 2-D map) raises ``ValueError`` saying why.
    """
    from ..trace.kinds import transfer_problem

    source = _as_kind(source_kind, source_shape, "source")
    target = _as_kind(target_kind, target_shape, "target")
    problem = transfer_problem(source, target)
    if problem:
        raise ValueError(f"no transfer maps {source.describe()} onto {target.describe()}: {problem}")
    if manager is None:
        from ..plugins.host import resolve_manager

        manager = resolve_manager(None)
    name = cross_kind_transfer(source, target)
    if name is None:
        return manager.lookup("transfers", transfer)(source.channel_first_shape, target.channel_first_shape)
    return manager.lookup("transfers", name)(source.channel_first_shape, target.channel_first_shape,
                                             source=source, target=target)


__all__ = ["CROSS_KIND", "CROSS_KIND_TRANSFERS", "FromVector", "MapToTokens", "TokensToMap", "ToVector",
           "cross_kind_transfer", "transfer_between"]
