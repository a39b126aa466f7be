"""Building blocks shared by the plugin's networks, shaped so each functional block is one graph node.

The engine names graph values by the module that produced them (``hkt_core.trace.tracer``). A
network built from these blocks exposes its functional blocks as attributes (``stem``, ``layer1``
..., ``pool``, ``fc``); the plugin's adapters declare :class:`ConvBNAct`, :class:`Stage`,
:class:`GlobalPool` and :class:`DenseBlock` as leaf modules, so each block is a single node whose
name is the attribute's path, and the pooled feature vector is a value of its own: the natural
mixing point of the paper's 2HKT classification setup.
"""

from __future__ import annotations

from torch import nn
import torch


def conv_cls(dim: int) -> type[nn.Module]:
    return {1: nn.Conv1d, 2: nn.Conv2d}[_check_dim(dim)]


def norm_cls(dim: int) -> type[nn.Module]:
    return {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}[_check_dim(dim)]


def max_pool_cls(dim: int) -> type[nn.Module]:
    return {1: nn.MaxPool1d, 2: nn.MaxPool2d}[_check_dim(dim)]


def _check_dim(dim: int) -> int:
    if dim not in (1, 2):
        raise ValueError(f"dim = {dim!r} is invalid: 1 (sequences) or 2 (images)")
    return dim


class ConvBNAct(nn.Module):
    """Convolution, batch normalisation, ReLU: the stem of every convolutional network here."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 dim: int = 2) -> None:
        super().__init__()
        self.conv = conv_cls(dim)(in_channels, out_channels, kernel_size, stride=stride,
                                  padding=kernel_size // 2, bias=False)
        self.bn = norm_cls(dim)(out_channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Stage(nn.Sequential):
    """A run of blocks at one resolution; a distinct class so adapters can keep it opaque."""


class GlobalPool(nn.Module):
    """Global average pooling to a ``(B, C)`` vector, or flattening when ``mode="flatten"``.

    One module, so the pooled feature vector is one named graph value (``"pool"``).
    """

    def __init__(self, mode: str = "avg") -> None:
        super().__init__()
        if mode not in ("avg", "flatten"):
            raise ValueError(f"GlobalPool mode = {mode!r} is invalid: 'avg' or 'flatten'")
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "avg":
            return x.flatten(2).mean(dim=2)
        return x.flatten(1)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"


class DenseBlock(nn.Module):
    """Linear layer and ReLU: one hidden layer of a multi-layer perceptron."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.linear(x))


def scaled(channels: int, width_mult: float) -> int:
    """``channels * width_mult`` rounded, at least 1."""
    if not isinstance(width_mult, (int, float)) or isinstance(width_mult, bool) or width_mult <= 0:
        raise ValueError(f"width_mult = {width_mult!r} is invalid: a number > 0")
    return max(1, int(round(channels * width_mult)))


def kaiming_init(model: nn.Module) -> None:
    """He initialisation for convolutions, unit/zero batch-norm (He et al. 2016); linear layers
    keep PyTorch's default, which suits a classifier head better than a ReLU gain."""
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
