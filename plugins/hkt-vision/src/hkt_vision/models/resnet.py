"""CIFAR ResNets of He et al. (2016), section 4.2: depth 6n+2, three stages of 16/32/64 channels.

Option-A shortcuts (identity; on a change of shape, stride-2 subsampling and zero channel padding),
so the shortcuts add no parameters: ResNet-20/32/44/56/110 have 0.27M/0.46M/0.66M/0.85M/1.7M
parameters. ``width_mult`` scales every channel count (a ResNet-20 with ``width_mult=0.5`` is a
narrower child); ``in_channels`` and ``num_classes`` adapt the stem and the classifier; ``dim=1``
builds the same network from 1-D convolutions (kernel 3, for signals such as MNIST-1D's), about a
third of the 2-D network's parameters.

Blocks: ``stem`` (3x3 conv, BN, ReLU), ``layer1``, ``layer2``, ``layer3`` (the stages), ``pool``
(the pooled feature vector, shape (B, 64 * width_mult)), ``fc`` (the logits).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import ConvBNAct, GlobalPool, Stage, conv_cls, kaiming_init, norm_cls, scaled


class PadShortcut(nn.Module):
    """Option-A shortcut: subsample by ``stride`` and zero-pad the channels, no parameters."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        extra = out_channels - in_channels
        self.pad_before = extra // 2
        self.pad_after = extra - extra // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:  # (B, C, L) signals
            return F.pad(x[:, :, ::self.stride], (0, 0, self.pad_before, self.pad_after))
        x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad_before, self.pad_after))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch normalisation and an identity (option-A) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, dim: int = 2) -> None:
        super().__init__()
        conv, norm = conv_cls(dim), norm_cls(dim)
        self.conv1 = conv(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = norm(out_channels)
        self.conv2 = conv(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = norm(out_channels)
        self.shortcut = (PadShortcut(in_channels, out_channels, stride)
                         if stride != 1 or in_channels != out_channels else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 images (``dim=1``: for signals); ``blocks_per_stage`` is n."""

    #: functional blocks in forward order (declared to the engine by the adapter)
    hkt_blocks = ("stem", "layer1", "layer2", "layer3", "pool", "fc")

    def __init__(self, blocks_per_stage: int, num_classes: int = 10, in_channels: int = 3,
                 width_mult: float = 1.0, dim: int = 2) -> None:
        super().__init__()
        if not isinstance(blocks_per_stage, int) or blocks_per_stage < 1:
            raise ValueError(f"blocks_per_stage = {blocks_per_stage!r} is invalid: an integer >= 1")
        _check_positive("num_classes", num_classes)
        _check_positive("in_channels", in_channels)
        widths = [scaled(c, width_mult) for c in (16, 32, 64)]
        self.depth = 6 * blocks_per_stage + 2
        self.stem = ConvBNAct(in_channels, widths[0], 3, dim=dim)
        self.layer1 = _stage(widths[0], widths[0], blocks_per_stage, stride=1, dim=dim)
        self.layer2 = _stage(widths[0], widths[1], blocks_per_stage, stride=2, dim=dim)
        self.layer3 = _stage(widths[1], widths[2], blocks_per_stage, stride=2, dim=dim)
        self.pool = GlobalPool("avg")
        self.fc = nn.Linear(widths[2], num_classes)
        kaiming_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.pool(x))


def _stage(in_channels: int, out_channels: int, blocks: int, stride: int, dim: int = 2) -> Stage:
    layers = [BasicBlock(in_channels, out_channels, stride, dim)]
    layers += [BasicBlock(out_channels, out_channels, 1, dim) for _ in range(blocks - 1)]
    return Stage(*layers)


def _check_positive(name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} = {value!r} is invalid: an integer >= 1")


def resnet20(num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0) -> CifarResNet:
    """CIFAR ResNet-20 (0.27M parameters)."""
    return CifarResNet(3, num_classes, in_channels, width_mult)


def resnet32(num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0) -> CifarResNet:
    """CIFAR ResNet-32 (0.46M parameters)."""
    return CifarResNet(5, num_classes, in_channels, width_mult)


def resnet44(num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0) -> CifarResNet:
    """CIFAR ResNet-44 (0.66M parameters)."""
    return CifarResNet(7, num_classes, in_channels, width_mult)


def resnet56(num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0) -> CifarResNet:
    """CIFAR ResNet-56 (0.85M parameters)."""
    return CifarResNet(9, num_classes, in_channels, width_mult)


def resnet110(num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0) -> CifarResNet:
    """CIFAR ResNet-110 (1.7M parameters)."""
    return CifarResNet(18, num_classes, in_channels, width_mult)


# -- 1-D forms for MNIST-1D signals (input (B, 1, 40)) --------------------------------------------

def mnist1d_resnet56(num_classes: int = 10, in_channels: int = 1, width_mult: float = 1.0) -> CifarResNet:
    """ResNet-56 of 1-D convolutions for MNIST-1D (16/32/64 channels, 0.29M parameters)."""
    return CifarResNet(9, num_classes, in_channels, width_mult, dim=1)


def mnist1d_resnet20(num_classes: int = 10, in_channels: int = 1, width_mult: float = 0.5) -> CifarResNet:
    """ResNet-20 of 1-D convolutions for MNIST-1D, half width by default (8/16/32 channels, 24k parameters)."""
    return CifarResNet(3, num_classes, in_channels, width_mult, dim=1)
