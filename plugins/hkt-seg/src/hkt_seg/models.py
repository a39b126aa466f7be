"""U-Nets for 2-D segmentation: a PocketNet-style child and a densely connected parent.

Both share one layout so that their functional blocks line up for 3HKT::

    encoder.0 .. encoder.{depth-1}   (each output is kept as a skip, then max-pooled)
    bottleneck                        (the deepest features)
    decoder.0 .. decoder.{depth-1}   (upsample to the skip's size, concatenate, convolve)
    head                              (1x1 convolution to class logits)

Every block is a module called exactly once, so the tracer names its output by the module path
(``"encoder.2"``, ``"bottleneck"``, ``"decoder.0"``, ``"head"``). Upsampling interpolates to the
skip's spatial size, so any input size works (sizes divisible by ``2**depth`` avoid rounding).

*PocketNet* (Celaya et al. 2022) keeps the same number of feature maps at every level instead of
doubling them, which cuts parameters by an order of magnitude at little cost in accuracy.
*DenseUNet* follows the 2-D half of H-DenseUNet (Li et al. 2018): each encoder block is a dense
block (every layer sees the concatenation of all earlier layers) followed by a 1x1 transition,
and widths double with depth as in a classical U-Net. It is sized here to train on a CPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hkt_core import ConfigError


def _check_positive(model: str, **values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{model}: {name} = {value!r} is invalid: must be an integer >= 1")


class ConvBlock(nn.Sequential):
    """Two 3x3 convolutions, each followed by batch norm and ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class DenseLayer(nn.Module):
    """BN-ReLU-conv3x3 producing ``growth`` new maps from everything before it."""

    def __init__(self, in_channels: int, growth: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(in_channels)
        self.conv = nn.Conv2d(in_channels, growth, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.relu(self.norm(x)))


class DenseBlock(nn.Module):
    """``layers`` dense layers whose outputs are concatenated, then a 1x1 transition to ``out_channels``."""

    def __init__(self, in_channels: int, out_channels: int, growth: int, layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DenseLayer(in_channels + i * growth, growth) for i in range(layers))
        total = in_channels + layers * growth
        self.transition = nn.Sequential(
            nn.BatchNorm2d(total), nn.ReLU(inplace=True),
            nn.Conv2d(total, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = x
        for layer in self.layers:
            features = torch.cat([features, layer(features)], dim=1)
        return self.transition(features)


class DecoderBlock(nn.Module):
    """Upsample to the skip's size, concatenate the skip, then a :class:`ConvBlock`."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = ConvBlock(in_channels + skip_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat([x, skip], dim=1))


class UNet(nn.Module):
    """The shared U-Net skeleton; subclasses choose the encoder blocks and the widths per level."""

    def __init__(self, encoder: list[nn.Module], bottleneck: nn.Module, widths: list[int],
                 bottleneck_width: int, num_classes: int) -> None:
        super().__init__()
        self.depth = len(encoder)
        self.num_classes = num_classes
        self.encoder = nn.ModuleList(encoder)
        self.bottleneck = bottleneck
        decoder = []
        below = bottleneck_width
        for width in reversed(widths):
            decoder.append(DecoderBlock(below, width, width))
            below = width
        self.decoder = nn.ModuleList(decoder)
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottleneck(x)
        for block, skip in zip(self.decoder, reversed(skips)):
            x = block(x, skip)
        return self.head(x)

    def block_names(self) -> list[str]:
        """Ordered functional blocks: encoder levels, bottleneck, decoder levels, head."""
        return ([f"encoder.{i}" for i in range(self.depth)] + ["bottleneck"]
                + [f"decoder.{i}" for i in range(self.depth)] + ["head"])


class PocketNet(UNet):
    """A U-Net with the same ``width`` at every level (PocketNet, Celaya et al. 2022)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 2, depth: int = 4, width: int = 32) -> None:
        _check_positive("PocketNet", in_channels=in_channels, num_classes=num_classes, depth=depth, width=width)
        encoder = [ConvBlock(in_channels if i == 0 else width, width) for i in range(depth)]
        super().__init__(encoder, ConvBlock(width, width), [width] * depth, width, num_classes)


class DenseUNet(UNet):
    """A U-Net whose encoder levels are dense blocks, widths ``width * 2**level`` (after H-DenseUNet)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 2, depth: int = 4, width: int = 32,
                 growth: int = 16, layers: int = 4) -> None:
        _check_positive("DenseUNet", in_channels=in_channels, num_classes=num_classes, depth=depth,
                        width=width, growth=growth, layers=layers)
        widths = [width * 2 ** i for i in range(depth)]
        encoder = []
        previous = in_channels
        for w in widths:
            encoder.append(DenseBlock(previous, w, growth, layers))
            previous = w
        bottleneck_width = width * 2 ** depth
        bottleneck = DenseBlock(previous, bottleneck_width, growth, layers)
        super().__init__(encoder, bottleneck, widths, bottleneck_width, num_classes)


def pocketnet(in_channels: int = 1, num_classes: int = 2, depth: int = 4, width: int = 32) -> PocketNet:
    """PocketNet child: constant width at every level (~0.2M parameters at the defaults)."""
    return PocketNet(in_channels, num_classes, depth, width)


def dense_unet(in_channels: int = 1, num_classes: int = 2, depth: int = 4, width: int = 32,
               growth: int = 16, layers: int = 4) -> DenseUNet:
    """Dense-encoder U-Net parent (~4M parameters at the defaults)."""
    return DenseUNet(in_channels, num_classes, depth, width, growth, layers)


def pocketnet_demo(in_channels: int = 1, num_classes: int = 3, depth: int = 3, width: int = 8) -> PocketNet:
    """PocketNet sized for the synthetic demo on a CPU (width 8, depth 3)."""
    return PocketNet(in_channels, num_classes, depth, width)


def dense_unet_demo(in_channels: int = 1, num_classes: int = 3, depth: int = 3, width: int = 16,
                    growth: int = 8, layers: int = 3) -> DenseUNet:
    """Dense-encoder U-Net parent sized for the synthetic demo on a CPU."""
    return DenseUNet(in_channels, num_classes, depth, width, growth, layers)


#: Registered name -> factory, in the order `hkt list models` shows them.
MODELS = {
    "pocketnet": pocketnet,
    "pocketnet_demo": pocketnet_demo,
    "dense_unet": dense_unet,
    "dense_unet_demo": dense_unet_demo,
}
