"""Plain convolutional networks for small inputs: 8x8 digits (2-D) and MNIST-1D signals (1-D).

``stem`` (conv, BN, ReLU), then one :class:`Stage` per entry of ``stage_channels`` (convolutions
followed by 2x max-pooling), then ``pool`` (global average, or flattening when position matters),
then ``fc``. The registered sizes below are the parents and capacity-limited children of the
plugin's pair cards.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .blocks import ConvBNAct, GlobalPool, Stage, kaiming_init, max_pool_cls, scaled


class ConvNet(nn.Module):
    """A stem, ``len(stage_channels)`` pooled stages, a pooled feature vector and a classifier."""

    def __init__(self, *, dim: int, in_channels: int, num_classes: int, stem_channels: int,
                 stage_channels: Sequence[int], convs_per_stage: int = 1, kernel_size: int = 3,
                 pool: str = "avg", input_size: int | None = None, width_mult: float = 1.0) -> None:
        super().__init__()
        stage_channels = [scaled(c, width_mult) for c in stage_channels]
        stem_channels = scaled(stem_channels, width_mult)
        if not stage_channels:
            raise ValueError("stage_channels is empty: give at least one stage, e.g. (16, 32)")
        if convs_per_stage < 1:
            raise ValueError(f"convs_per_stage = {convs_per_stage!r} is invalid: an integer >= 1")
        self.dim = dim
        self.stem = ConvBNAct(in_channels, stem_channels, kernel_size, dim=dim)
        width = stem_channels
        for i, channels in enumerate(stage_channels, 1):
            convs = [ConvBNAct(width if j == 0 else channels, channels, kernel_size, dim=dim)
                     for j in range(convs_per_stage)]
            setattr(self, f"layer{i}", Stage(*convs, max_pool_cls(dim)(2)))
            width = channels
        self.num_stages = len(stage_channels)
        self.pool = GlobalPool(pool)
        if pool == "flatten":
            if not input_size:
                raise ValueError("pool='flatten' needs input_size (the input's side or length)")
            reduced = input_size // (2 ** self.num_stages)
            if reduced < 1:
                raise ValueError(f"input_size = {input_size} is too small for {self.num_stages} pooled stages")
            features = width * reduced ** dim
        else:
            features = width
        self.fc = nn.Linear(features, num_classes)
        self.hkt_blocks = ("stem", *(f"layer{i}" for i in range(1, self.num_stages + 1)), "pool", "fc")
        kaiming_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{i}")(x)
        return self.fc(self.pool(x))


# -- 8x8 digits (input (B, 1, 8, 8)) -------------------------------------------------------------

def digits_cnn_large(num_classes: int = 10, in_channels: int = 1, width_mult: float = 1.0) -> ConvNet:
    """Digits parent: 16-channel stem, stages of 32 and 64 channels (two convs each), 70k parameters."""
    return ConvNet(dim=2, in_channels=in_channels, num_classes=num_classes, stem_channels=16,
                   stage_channels=(32, 64), convs_per_stage=2, width_mult=width_mult)


def digits_cnn_small(num_classes: int = 10, in_channels: int = 1, width_mult: float = 1.0) -> ConvNet:
    """Small digits child: 4-channel stem, two stages of 8 channels (1,030 parameters)."""
    return ConvNet(dim=2, in_channels=in_channels, num_classes=num_classes, stem_channels=4,
                   stage_channels=(8, 8), width_mult=width_mult)


def digits_cnn_tiny(num_classes: int = 10, in_channels: int = 1, width_mult: float = 1.0) -> ConvNet:
    """Capacity-limited digits child (the demo's): 4-channel stem, one stage of 8 channels (438 parameters)."""
    return ConvNet(dim=2, in_channels=in_channels, num_classes=num_classes, stem_channels=4,
                   stage_channels=(8,), width_mult=width_mult)


# -- MNIST-1D (input (B, 1, 40)) -----------------------------------------------------------------

def mnist1d_cnn_large(num_classes: int = 10, in_channels: int = 1, width_mult: float = 1.0,
                      input_size: int = 40) -> ConvNet:
    """MNIST-1D parent: 1-D CNN, 32-channel stem, stages of 64/128/128 channels, flattened features (0.14M)."""
    return ConvNet(dim=1, in_channels=in_channels, num_classes=num_classes, stem_channels=32,
                   stage_channels=(64, 128, 128), kernel_size=5, pool="flatten", input_size=input_size,
                   width_mult=width_mult)


def mnist1d_cnn_gap(num_classes: int = 10, in_channels: int = 1, width_mult: float = 1.0) -> ConvNet:
    """MNIST-1D parent with average-pooled features: as ``mnist1d_cnn_large`` but a 128-d ``pool``.

    Genetic Attention on a vector runs over its channels (C x C per sample), so mixing at 128
    features costs ~40x less than at the 640 flattened features of ``mnist1d_cnn_large``.
    """
    return ConvNet(dim=1, in_channels=in_channels, num_classes=num_classes, stem_channels=32,
                   stage_channels=(64, 128, 128), kernel_size=5, pool="avg", width_mult=width_mult)


def mnist1d_cnn_tiny(num_classes: int = 10, in_channels: int = 1, width_mult: float = 1.0,
                     input_size: int = 40) -> ConvNet:
    """MNIST-1D child: 1-D CNN with 2/4/4/4 channels and flattened features (448 parameters)."""
    return ConvNet(dim=1, in_channels=in_channels, num_classes=num_classes, stem_channels=2,
                   stage_channels=(4, 4, 4), kernel_size=5, pool="flatten", input_size=input_size,
                   width_mult=width_mult)
