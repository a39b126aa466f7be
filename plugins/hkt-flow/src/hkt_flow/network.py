"""RAFT (Teed & Deng 2020) written for this project, in the two sizes the paper pairs.

The network has the paper's three functional blocks, each a sub-module the tracer keeps opaque:

- ``fnet``: the feature encoder. Both frames go through it as one batch (``cat`` on the batch
  axis, as RAFT does), so its output is ONE graph value ``(2B, C, H/8, W/8)``: the frame-1 maps
  are the first B rows, the frame-2 maps the last B.
- ``cnet``: the context encoder on frame 1; its output is split into the GRU's initial hidden
  state (tanh) and the context features (relu).
- ``upsampler``: turns the 1/8-resolution flow of each iteration into full-resolution flow
  (convex combination with a learned mask for the large model, bilinear for the small one). It is
  called once per iteration, so the final upsampled flow is the graph value ``upsampler#N``.

Between them: an all-pairs correlation volume (``corr_pyramid``, 4 levels by average pooling)
looked up in a radius around the current estimate (``corr_lookup``) and a recurrent update
block (ConvGRU; separable 1x5 + 5x1 for the large model).

``forward(image1, image2, iters=None)`` takes frames as float tensors ``(B, 3, H, W)`` with
values in [0, 255] (RAFT's convention; H and W multiples of 8) and returns the list of the
``iters`` full-resolution flow estimates ``(B, 2, H, W)``, last one final. Every iterate is
returned because RAFT's sequence loss supervises all of them; the final flow is ``out[-1]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hkt_core import ConfigError

# --------------------------------------------------------------------------------------------
# encoders


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "group":
        return nn.GroupNorm(max(1, channels // 8), channels)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm {kind!r} is not one of group, batch, instance, none")


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (the large encoder's unit)."""

    def __init__(self, in_planes: int, planes: int, norm: str, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, padding=1, stride=stride)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.norm1 = _norm(norm, planes)
        self.norm2 = _norm(norm, planes)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride), _norm(norm, planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.norm1(self.conv1(x)))
        y = self.relu(self.norm2(self.conv2(y)))
        if self.downsample is not None:
            x = self.downsample(x)
        return self.relu(x + y)


class BottleneckBlock(nn.Module):
    """1x1 - 3x3 - 1x1 bottleneck with a residual connection (the small encoder's unit)."""

    def __init__(self, in_planes: int, planes: int, norm: str, stride: int = 1) -> None:
        super().__init__()
        mid = max(1, planes // 4)
        self.conv1 = nn.Conv2d(in_planes, mid, 1)
        self.conv2 = nn.Conv2d(mid, mid, 3, padding=1, stride=stride)
        self.conv3 = nn.Conv2d(mid, planes, 1)
        self.relu = nn.ReLU(inplace=True)
        self.norm1 = _norm(norm, mid)
        self.norm2 = _norm(norm, mid)
        self.norm3 = _norm(norm, planes)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride), _norm(norm, planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.norm1(self.conv1(x)))
        y = self.relu(self.norm2(self.conv2(y)))
        y = self.relu(self.norm3(self.conv3(y)))
        if self.downsample is not None:
            x = self.downsample(x)
        return self.relu(x + y)


class Encoder(nn.Module):
    """A 7x7 stride-2 stem and three stages (strides 1, 2, 2): 1/8 resolution, ``output_dim`` maps.

    ``block="residual"`` with widths (64, 64, 96, 128) is RAFT's BasicEncoder; ``"bottleneck"``
    with widths (32, 32, 64, 96) its SmallEncoder.
    """

    def __init__(self, output_dim: int, norm: str, block: str, widths: tuple[int, int, int, int]) -> None:
        super().__init__()
        unit = {"residual": ResidualBlock, "bottleneck": BottleneckBlock}[block]
        stem, w1, w2, w3 = widths
        self.conv1 = nn.Conv2d(3, stem, 7, stride=2, padding=3)
        self.norm1 = _norm(norm, stem)
        self.relu1 = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(unit(stem, w1, norm, 1), unit(w1, w1, norm, 1))
        self.layer2 = nn.Sequential(unit(w1, w2, norm, 2), unit(w2, w2, norm, 1))
        self.layer3 = nn.Sequential(unit(w2, w3, norm, 2), unit(w3, w3, norm, 1))
        self.conv2 = nn.Conv2d(w3, output_dim, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.norm1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.conv2(x)


# --------------------------------------------------------------------------------------------
# correlation


class CorrPyramid(nn.Module):
    """All-pairs correlation of frame-1 and frame-2 maps, average-pooled into ``levels`` levels.

    Input: the feature encoder's output ``(2B, C, h, w)`` (frame 1 then frame 2 on the batch
    axis). Output: a tuple of ``levels`` tensors ``(B*h*w, 1, h/2^l, w/2^l)``; entry ``[b*h*w +
    i*w + j, 0, y, x]`` of level 0 is ``<f1[b, :, i, j], f2[b, :, y, x]> / sqrt(C)``.
    """

    def __init__(self, levels: int) -> None:
        super().__init__()
        self.levels = levels

    def forward(self, fmaps: torch.Tensor) -> tuple[torch.Tensor, ...]:
        fmap1, fmap2 = fmaps.chunk(2, dim=0)
        b, c, h, w = fmap1.shape
        if min(h, w) < 2 ** (self.levels - 1):
            raise ValueError(f"a {self.levels}-level correlation pyramid needs feature maps of at least "
                             f"{2 ** (self.levels - 1)}x{2 ** (self.levels - 1)} (images of at least "
                             f"{8 * 2 ** (self.levels - 1)} pixels a side); got {h}x{w} maps")
        corr = torch.einsum("bci,bcj->bij", fmap1.flatten(2), fmap2.flatten(2)) / math.sqrt(c)
        corr = corr.reshape(b * h * w, 1, h, w)
        pyramid = [corr]
        for _ in range(self.levels - 1):
            corr = F.avg_pool2d(corr, 2, stride=2)
            pyramid.append(corr)
        return tuple(pyramid)


class CorrLookup(nn.Module):
    """Bilinear look-up of each pyramid level in a (2r+1)^2 window around the current estimate.

    ``coords`` ``(B, 2, h, w)`` holds (x, y) positions in frame 2 at 1/8 resolution. The output
    ``(B, levels*(2r+1)^2, h, w)`` lists, level by level, the window row by row (dy outer, dx
    inner); positions outside the map read 0.
    """

    def __init__(self, levels: int, radius: int) -> None:
        super().__init__()
        self.levels = levels
        self.radius = radius

    def forward(self, pyramid: tuple[torch.Tensor, ...], coords: torch.Tensor) -> torch.Tensor:
        b, _, h, w = coords.shape
        r = self.radius
        offsets = torch.arange(-r, r + 1, dtype=coords.dtype, device=coords.device)
        dy, dx = torch.meshgrid(offsets, offsets, indexing="ij")
        delta = torch.stack([dx, dy], dim=-1).view(1, 2 * r + 1, 2 * r + 1, 2)
        centre = coords.permute(0, 2, 3, 1).reshape(b * h * w, 1, 1, 2)
        out = []
        for level in range(self.levels):
            corr = pyramid[level]
            points = centre / 2 ** level + delta
            hl, wl = corr.shape[-2:]
            grid = torch.stack([2 * points[..., 0] / max(wl - 1, 1) - 1,
                                2 * points[..., 1] / max(hl - 1, 1) - 1], dim=-1)
            sampled = F.grid_sample(corr, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
            out.append(sampled.view(b, h, w, -1))
        return torch.cat(out, dim=-1).permute(0, 3, 1, 2).contiguous()


class CoordinateGrid(nn.Module):
    """Pixel coordinates (x, y) of the 1/``stride`` grid of an image ``(N, C, H, W)``: ``(N, 2, H/s, W/s)``.

    Computed from the input image so that the coordinates depend on no block's output.
    """

    def __init__(self, stride: int = 8) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        n = image.shape[0]
        h, w = image.shape[-2] // self.stride, image.shape[-1] // self.stride
        ys = torch.arange(h, dtype=image.dtype, device=image.device)
        xs = torch.arange(w, dtype=image.dtype, device=image.device)
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        return torch.stack([gx, gy], dim=0).unsqueeze(0).expand(n, 2, h, w)


# --------------------------------------------------------------------------------------------
# update block


class ConvGRU(nn.Module):
    """Convolutional GRU with 3x3 gates (the small model's)."""

    def __init__(self, hidden_dim: int, input_dim: int) -> None:
        super().__init__()
        self.convz = nn.Conv2d(hidden_dim + input_dim, hidden_dim, 3, padding=1)
        self.convr = nn.Conv2d(hidden_dim + input_dim, hidden_dim, 3, padding=1)
        self.convq = nn.Conv2d(hidden_dim + input_dim, hidden_dim, 3, padding=1)

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        hx = torch.cat([h, x], dim=1)
        z = torch.sigmoid(self.convz(hx))
        r = torch.sigmoid(self.convr(hx))
        q = torch.tanh(self.convq(torch.cat([r * h, x], dim=1)))
        return (1 - z) * h + z * q


class SepConvGRU(nn.Module):
    """Separable ConvGRU: a 1x5 pass then a 5x1 pass (the large model's)."""

    def __init__(self, hidden_dim: int, input_dim: int) -> None:
        super().__init__()
        c = hidden_dim + input_dim
        self.convz1 = nn.Conv2d(c, hidden_dim, (1, 5), padding=(0, 2))
        self.convr1 = nn.Conv2d(c, hidden_dim, (1, 5), padding=(0, 2))
        self.convq1 = nn.Conv2d(c, hidden_dim, (1, 5), padding=(0, 2))
        self.convz2 = nn.Conv2d(c, hidden_dim, (5, 1), padding=(2, 0))
        self.convr2 = nn.Conv2d(c, hidden_dim, (5, 1), padding=(2, 0))
        self.convq2 = nn.Conv2d(c, hidden_dim, (5, 1), padding=(2, 0))

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        for convz, convr, convq in ((self.convz1, self.convr1, self.convq1),
                                    (self.convz2, self.convr2, self.convq2)):
            hx = torch.cat([h, x], dim=1)
            z = torch.sigmoid(convz(hx))
            r = torch.sigmoid(convr(hx))
            q = torch.tanh(convq(torch.cat([r * h, x], dim=1)))
            h = (1 - z) * h + z * q
        return h


class MotionEncoder(nn.Module):
    """Encodes the looked-up correlation and the current flow; appends the flow (2 channels).

    ``corr_widths`` has one entry (small model: a 1x1 conv) or two (large: 1x1 then 3x3).
    """

    def __init__(self, corr_planes: int, corr_widths: tuple[int, ...], flow_widths: tuple[int, int],
                 out_dim: int) -> None:
        super().__init__()
        convs, c = [], corr_planes
        for i, width in enumerate(corr_widths):
            convs += [nn.Conv2d(c, width, 1 if i == 0 else 3, padding=0 if i == 0 else 1), nn.ReLU(inplace=True)]
            c = width
        self.corr = nn.Sequential(*convs)
        f1, f2 = flow_widths
        self.flow = nn.Sequential(nn.Conv2d(2, f1, 7, padding=3), nn.ReLU(inplace=True),
                                  nn.Conv2d(f1, f2, 3, padding=1), nn.ReLU(inplace=True))
        self.conv = nn.Conv2d(c + f2, out_dim - 2, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, flow: torch.Tensor, corr: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.conv(torch.cat([self.corr(corr), self.flow(flow)], dim=1)))
        return torch.cat([out, flow], dim=1)


class FlowHead(nn.Module):
    def __init__(self, input_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(input_dim, hidden_dim, 3, padding=1)
        self.conv2 = nn.Conv2d(hidden_dim, 2, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.relu(self.conv1(x)))


class UpdateBlock(nn.Module):
    """One refinement step: motion features + context into the GRU, a flow increment out.

    Returns ``(hidden, delta_flow)``.
    """

    def __init__(self, motion: MotionEncoder, motion_dim: int, context_dim: int, hidden_dim: int,
                 head_dim: int, separable: bool) -> None:
        super().__init__()
        self.encoder = motion
        gru = SepConvGRU if separable else ConvGRU
        self.gru = gru(hidden_dim, motion_dim + context_dim)
        self.flow_head = FlowHead(hidden_dim, head_dim)

    def forward(self, net: torch.Tensor, inp: torch.Tensor, corr: torch.Tensor,
                flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        motion = self.encoder(flow, corr)
        net = self.gru(net, torch.cat([inp, motion], dim=1))
        return net, self.flow_head(net)


# --------------------------------------------------------------------------------------------
# upsampling


class ConvexUpsampler(nn.Module):
    """x8 upsampling as a convex combination of the 3x3 coarse neighbours (RAFT's large model).

    The weights come from the GRU hidden state (RAFT computes this mask in its update block; it
    lives here so the upsampler's output is the flow-prediction block's output).
    """

    def __init__(self, hidden_dim: int, mask_dim: int) -> None:
        super().__init__()
        self.mask = nn.Sequential(nn.Conv2d(hidden_dim, mask_dim, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(mask_dim, 64 * 9, 1))

    def forward(self, flow: torch.Tensor, net: torch.Tensor) -> torch.Tensor:
        n, _, h, w = flow.shape
        mask = (0.25 * self.mask(net)).view(n, 1, 9, 8, 8, h, w).softmax(dim=2)
        up = F.unfold(8 * flow, [3, 3], padding=1).view(n, 2, 9, 1, 1, h, w)
        up = (mask * up).sum(dim=2).permute(0, 1, 4, 2, 5, 3)
        return up.reshape(n, 2, 8 * h, 8 * w)


class BilinearUpsampler(nn.Module):
    """x8 bilinear upsampling of the flow, values scaled by 8 (RAFT's small model)."""

    def forward(self, flow: torch.Tensor, net: torch.Tensor) -> torch.Tensor:
        h, w = flow.shape[-2:]
        return 8 * F.interpolate(flow, size=(8 * h, 8 * w), mode="bilinear", align_corners=True)


# --------------------------------------------------------------------------------------------
# the network


def check_frames(image1: torch.Tensor, image2: torch.Tensor) -> None:
    """Refuse frames RAFT cannot take, saying what is expected."""
    if not isinstance(image2, torch.Tensor) or image1.shape != image2.shape or image1.dim() != 4 \
            or image1.shape[1] != 3:
        raise ValueError(f"RAFT expects two frames of the same shape (B, 3, H, W); got "
                         f"{tuple(image1.shape)} and {tuple(getattr(image2, 'shape', ()))}")
    if image1.shape[-2] % 8 or image1.shape[-1] % 8:
        raise ValueError(f"RAFT needs H and W divisible by 8; got {tuple(image1.shape[-2:])} "
                         f"(crop or pad the frames)")


def _scaled(width: int, scale: float) -> int:
    return max(8, int(round(width * scale / 8)) * 8)


class RAFT(nn.Module):
    """RAFT in its large (``variant="large"``) or small (``"small"``) form.

    ``scale`` multiplies every internal width (rounded to a multiple of 8, at least 8); 1.0 is
    the paper's network. ``iters`` is the default number of update iterations; ``forward``
    accepts another. ``corr_levels``/``corr_radius`` default to RAFT's (4 levels; radius 4 for
    the large model, 3 for the small one).
    """

    VARIANTS = ("large", "small")

    def __init__(self, variant: str = "large", *, scale: float = 1.0, iters: int = 12,
                 corr_levels: int = 4, corr_radius: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        if variant not in self.VARIANTS:
            raise ConfigError(f"RAFT variant {variant!r} is not one of {', '.join(self.VARIANTS)}")
        if not (isinstance(iters, int) and iters >= 1):
            raise ConfigError(f"iters = {iters!r}: give an integer >= 1")
        if not (0 < scale <= 4):
            raise ConfigError(f"scale = {scale!r}: give a width multiplier in (0, 4]")
        if not (isinstance(corr_levels, int) and corr_levels >= 1):
            raise ConfigError(f"corr_levels = {corr_levels!r}: give an integer >= 1")
        s = lambda c: _scaled(c, scale)  # noqa: E731
        large = variant == "large"
        radius = corr_radius if corr_radius is not None else (4 if large else 3)
        self.variant, self.scale, self.iters = variant, scale, iters
        self.corr_levels, self.corr_radius = corr_levels, radius
        corr_planes = corr_levels * (2 * radius + 1) ** 2
        if large:
            self.hidden_dim, self.context_dim = s(128), s(128)
            widths = (s(64), s(64), s(96), s(128))
            self.fnet = Encoder(s(256), "instance", "residual", widths)
            self.cnet = Encoder(self.hidden_dim + self.context_dim, "batch", "residual", widths)
            motion_dim = s(128)
            motion = MotionEncoder(corr_planes, (s(256), s(192)), (s(128), s(64)), motion_dim)
            self.update_block = UpdateBlock(motion, motion_dim, self.context_dim, self.hidden_dim,
                                            s(256), separable=True)
            self.upsampler = ConvexUpsampler(self.hidden_dim, s(256))
        else:
            self.hidden_dim, self.context_dim = s(96), s(64)
            widths = (s(32), s(32), s(64), s(96))
            self.fnet = Encoder(s(128), "instance", "bottleneck", widths)
            self.cnet = Encoder(self.hidden_dim + self.context_dim, "none", "bottleneck", widths)
            motion_dim = s(80) + 2
            motion = MotionEncoder(corr_planes, (s(96),), (s(64), s(32)), motion_dim)
            self.update_block = UpdateBlock(motion, motion_dim, self.context_dim, self.hidden_dim,
                                            s(128), separable=False)
            self.upsampler = BilinearUpsampler()
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.corr_pyramid = CorrPyramid(corr_levels)
        self.corr_lookup = CorrLookup(corr_levels, radius)
        self.coords = CoordinateGrid()

    def forward(self, image1: torch.Tensor, image2: torch.Tensor, iters: int | None = None) -> list[torch.Tensor]:
        iters = self.iters if iters is None else iters
        if isinstance(image1, torch.Tensor):  # real tensors, not fx proxies while tracing
            check_frames(image1, image2)
        image1 = 2 * (image1 / 255.0) - 1.0
        image2 = 2 * (image2 / 255.0) - 1.0
        fmaps = self.fnet(torch.cat([image1, image2], dim=0))
        pyramid = self.corr_pyramid(self.dropout(fmaps))
        context = self.cnet(image1)
        net, inp = torch.split(context, [self.hidden_dim, self.context_dim], dim=1)
        net = torch.tanh(net)
        inp = torch.relu(inp)
        coords0 = self.coords(image1)
        coords1 = coords0
        flows = []
        for _ in range(iters):
            coords1 = coords1.detach()
            corr = self.corr_lookup(pyramid, coords1)
            net, delta = self.update_block(net, inp, corr, coords1 - coords0)
            coords1 = coords1 + delta
            flows.append(self.upsampler(coords1 - coords0, net))
        return flows


#: Sub-modules the tracer keeps opaque: the blocks, the correlation and the update step.
LEAF_MODULES: tuple[type, ...] = (Encoder, CorrPyramid, CorrLookup, CoordinateGrid, UpdateBlock,
                                  ConvexUpsampler, BilinearUpsampler)
