"""Multi-layer perceptrons over flattened inputs: the weak children of the MNIST-1D pairs.

On MNIST-1D an MLP reaches ~68% where a CNN reaches ~94% (Greydanus 2020): the gap HKT can
try to close. Blocks: ``stem`` (flatten), ``layer1`` ... ``layerN`` (linear + ReLU), ``fc``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .blocks import DenseBlock


class MLP(nn.Module):
    """Flatten, ``len(hidden)`` dense blocks, a linear classifier."""

    def __init__(self, *, in_features: int, num_classes: int, hidden: Sequence[int]) -> None:
        super().__init__()
        if not hidden or any(not isinstance(h, int) or h < 1 for h in hidden):
            raise ValueError(f"hidden = {hidden!r} is invalid: one or more positive layer widths, e.g. (32, 32)")
        self.stem = nn.Flatten()
        width = in_features
        for i, h in enumerate(hidden, 1):
            setattr(self, f"layer{i}", DenseBlock(width, h))
            width = h
        self.num_layers = len(hidden)
        self.fc = nn.Linear(width, num_classes)
        self.hkt_blocks = ("stem", *(f"layer{i}" for i in range(1, self.num_layers + 1)), "fc")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for i in range(1, self.num_layers + 1):
            x = getattr(self, f"layer{i}")(x)
        return self.fc(x)


def mnist1d_mlp(num_classes: int = 10, in_features: int = 40, hidden: Sequence[int] = (32, 32)) -> MLP:
    """Small MNIST-1D MLP child: two hidden layers of 32 units (~2.7k parameters)."""
    return MLP(in_features=in_features, num_classes=num_classes, hidden=tuple(hidden))


def mnist1d_mlp_large(num_classes: int = 10, in_features: int = 40, hidden: Sequence[int] = (100, 100)) -> MLP:
    """The MLP of the MNIST-1D paper: two hidden layers of 100 units (~15k parameters)."""
    return MLP(in_features=in_features, num_classes=num_classes, hidden=tuple(hidden))


def tabular_mlp(num_classes: int = 4, in_features: int = 20, hidden: Sequence[int] = (16, 16)) -> MLP:
    """Tabular MLP child: two hidden layers of 16 units (~680 parameters)."""
    return MLP(in_features=in_features, num_classes=num_classes, hidden=tuple(hidden))
