"""Small models of every kind the alignment engine must handle, as parent/child pairs.

Kept tiny so a test traces and aligns a pair in well under a second.
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


# -- plain chain --------------------------------------------------------------------------------
class PlainCNN(nn.Module):
    """conv stages at 16x16 and 8x8, then pooling and a linear head: a plain chain."""

    def __init__(self, width: int = 8, convs_per_stage: int = 1, classes: int = 5) -> None:
        super().__init__()
        def stage(cin, cout, n, stride):
            layers = [nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.ReLU()]
            for _ in range(n - 1):
                layers += [nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU()]
            return nn.Sequential(*layers)
        self.stage1 = stage(3, width, convs_per_stage, 1)
        self.stage2 = stage(width, 2 * width, convs_per_stage, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x):
        x = self.stage2(self.stage1(x))
        return self.fc(torch.flatten(self.pool(x), 1))


class MLP(nn.Module):
    def __init__(self, width: int = 16, depth: int = 3, inputs: int = 10, classes: int = 4) -> None:
        super().__init__()
        layers, cin = [], inputs
        for _ in range(depth):
            layers += [nn.Linear(cin, width), nn.ReLU()]
            cin = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        return self.head(self.body(x))


# -- residual chain (CIFAR ResNet, He et al.) -----------------------------------------------------
class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 inputs: three stages of n blocks at widths w, 2w, 4w."""

    def __init__(self, depth: int = 20, width: int = 16, classes: int = 10) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError("depth must be 6n+2")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.layer1 = self._stage(width, width, n, 1)
        self.layer2 = self._stage(width, 2 * width, n, 2)
        self.layer3 = self._stage(2 * width, 4 * width, n, 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * width, classes)

    @staticmethod
    def _stage(cin, cout, n, stride):
        blocks = [BasicBlock(cin, cout, stride)] + [BasicBlock(cout, cout) for _ in range(n - 1)]
        return nn.Sequential(*blocks)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# -- dense block ------------------------------------------------------------------------------------
class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(cin)
        self.conv = nn.Conv2d(cin, growth, 3, padding=1)

    def forward(self, x):
        return torch.cat([x, self.conv(F.relu(self.bn(x)))], 1)


class TinyDenseNet(nn.Module):
    def __init__(self, growth: int = 4, layers: int = 3, classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        c = 8
        dense1 = []
        for _ in range(layers):
            dense1.append(DenseLayer(c, growth))
            c += growth
        self.dense1 = nn.Sequential(*dense1)
        self.transition = nn.Sequential(nn.Conv2d(c, c // 2, 1), nn.AvgPool2d(2))
        c //= 2
        dense2 = []
        for _ in range(layers):
            dense2.append(DenseLayer(c, growth))
            c += growth
        self.dense2 = nn.Sequential(*dense2)
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        x = self.dense2(self.transition(self.dense1(self.stem(x))))
        return self.fc(x.mean(dim=(2, 3)))


# -- encoder-decoder with skip connections ------------------------------------------------------------
def _double_conv(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU())


class TinyUNet(nn.Module):
    """Three resolutions (16, 8, 4 on a 16x16 input), skips concatenated in the decoder."""

    def __init__(self, width: int = 4, classes: int = 2) -> None:
        super().__init__()
        w = width
        self.enc1 = _double_conv(1, w)
        self.enc2 = _double_conv(w, 2 * w)
        self.bottleneck = _double_conv(2 * w, 4 * w)
        self.up2 = nn.ConvTranspose2d(4 * w, 2 * w, 2, stride=2)
        self.dec2 = _double_conv(4 * w, 2 * w)
        self.up1 = nn.ConvTranspose2d(2 * w, w, 2, stride=2)
        self.dec1 = _double_conv(2 * w, w)
        self.head = nn.Conv2d(w, classes, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        b = self.bottleneck(F.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([self.up2(b), e2], 1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], 1))
        return self.head(d1)


# -- two inputs, parallel branches (a two-frame flow network) -------------------------------------------
class TwoFrameFlow(nn.Module):
    """Feature encoder shared by both frames, a context encoder on frame 1, a flow head."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.fnet = nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1), nn.ReLU(),
                                  nn.Conv2d(width, width, 3, padding=1))
        self.cnet = nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1), nn.ReLU(),
                                  nn.Conv2d(width, width, 3, padding=1))
        self.update = nn.Sequential(nn.Conv2d(3 * width, width, 3, padding=1), nn.ReLU())
        self.flow_head = nn.Conv2d(width, 2, 3, padding=1)

    def forward(self, frame1, frame2):
        f1, f2 = self.fnet(frame1), self.fnet(frame2)
        ctx = self.cnet(frame1)
        hidden = self.update(torch.cat([f1 - f2, f1 * f2, ctx], 1))
        flow = self.flow_head(hidden)
        return F.interpolate(flow, scale_factor=2, mode="bilinear", align_corners=False)


# -- token model (B, T, D) -----------------------------------------------------------------------------
class TokenBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x):
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        attn = torch.softmax(q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5, dim=-1)
        x = x + self.proj(attn @ v)
        return x + self.mlp(self.norm2(x))


class TinyTransformer(nn.Module):
    """Tokens (B, T, D) through pre-norm attention blocks, mean-pooled into a classifier."""

    def __init__(self, dim: int = 16, depth: int = 2, in_features: int = 6, classes: int = 3) -> None:
        super().__init__()
        self.embed = nn.Linear(in_features, dim)
        self.blocks = nn.Sequential(*[TokenBlock(dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.norm(self.blocks(self.embed(x)))
        return self.head(x.mean(dim=1))


# -- a model only torch.export can trace ---------------------------------------------------------------
class ShapeBranchNet(nn.Module):
    """Python control flow on tensor shapes: symbolic tracing fails, torch.export specialises it."""

    def __init__(self, width: int = 8, refinements: int = 2, classes: int = 4) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.refine = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in range(refinements))
        self.down = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x):
        x = F.relu(self.stem(x))
        if x.shape[-1] > 8:  # large inputs are refined at full resolution first
            for conv in self.refine:
                x = F.relu(conv(x)) + x
        x = F.relu(self.down(x))
        return self.fc(x.mean(dim=(2, 3)))


class MultiOutput(nn.Module):
    """Returns (auxiliary, prediction) with the prediction first: an adapter must name it."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.body = PlainCNN(width)
        self.aux = nn.Linear(3, 2)

    def forward(self, x):
        logits = self.body(x)
        return {"logits": logits, "aux": self.aux(x.mean(dim=(2, 3)))}


#: name -> (parent factory, child factory, example input shapes)
PAIRS = {
    "plain": (lambda: PlainCNN(16, 3), lambda: PlainCNN(8, 1), [(2, 3, 16, 16)]),
    "mlp": (lambda: MLP(32, 4), lambda: MLP(8, 2), [(2, 10)]),
    "resnet": (lambda: CifarResNet(14, 8), lambda: CifarResNet(8, 4), [(2, 3, 32, 32)]),
    "dense": (lambda: TinyDenseNet(6, 4), lambda: TinyDenseNet(4, 2), [(2, 3, 16, 16)]),
    "unet": (lambda: TinyUNet(8), lambda: TinyUNet(4), [(2, 1, 16, 16)]),
    "flow": (lambda: TwoFrameFlow(16), lambda: TwoFrameFlow(8), [(2, 3, 16, 16), (2, 3, 16, 16)]),
    "tokens": (lambda: TinyTransformer(32, 3), lambda: TinyTransformer(16, 1), [(2, 5, 6)]),
    "export": (lambda: ShapeBranchNet(16, 3), lambda: ShapeBranchNet(8, 1), [(2, 3, 16, 16)]),
}


def make_inputs(shapes, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(*s, generator=gen) for s in shapes)
