"""Small models for the InherNet tests (importable as ``inhernet_models:small_cnn``); the digits
benchmark in ``benchmarks/`` trains the same CNN."""

from __future__ import annotations

import torch
from torch import nn


class SmallCNN(nn.Module):
    """conv -> bn -> conv(stride 2) -> conv(dilation 2) -> pooled -> linear -> classifier."""

    def __init__(self, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.conv3 = nn.Conv2d(2 * width, 2 * width, 3, padding=2, dilation=2)
        self.fc1 = nn.Linear(2 * width, 4 * width)
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.conv2(x))
        x = torch.relu(self.conv3(x))
        x = torch.relu(self.fc1(x.mean(dim=(2, 3))))
        return self.fc(x)


def small_cnn(num_classes: int = 10, width: int = 16) -> SmallCNN:
    torch.manual_seed(0)
    return SmallCNN(num_classes=num_classes, width=width)


def tiny_cnn(num_classes: int = 10) -> SmallCNN:
    """A child-sized version of :func:`small_cnn` (the budget of the ``inherit`` method)."""
    torch.manual_seed(1)
    return SmallCNN(num_classes=num_classes, width=8)


def noisy_templates(n_train: int = 160, n_test: int = 60, num_classes: int = 4):
    """Generated 3x8x8 images: one random template per class plus noise (nothing downloaded)."""
    from torch.utils.data import TensorDataset

    from hkt_core.data import DatasetBundle

    gen = torch.Generator().manual_seed(7)
    templates = torch.randn(num_classes, 3, 8, 8, generator=gen)

    def draw(n):
        y = torch.arange(n) % num_classes
        return TensorDataset(templates[y] + 0.8 * torch.randn(n, 3, 8, 8, generator=gen), y)

    return DatasetBundle(draw(n_train), draw(n_test), ((3, 8, 8),), {"num_classes": num_classes})
