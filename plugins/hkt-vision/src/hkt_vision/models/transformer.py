"""Small transformers: patch tokens for images and signals (ViT-style) and feature tokens for tables.

They are the token side of the plugin's heterogeneous pairs (a transformer parent and a CNN or
MLP child, or the reverse). Both put a learned class token in front of the tokens and classify
from it, so their values read as ``tokens`` with a class token (and, for patches, a grid) to the
alignment. Blocks: ``embed`` (the tokens), ``blocks.0`` ... (pre-norm transformer layers),
``norm``, ``head``.
"""

from __future__ import annotations

import torch
from torch import nn


class EncoderBlock(nn.Module):
    """Pre-norm self-attention and a two-layer feed-forward network, both residual."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 2) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class _Encoder(nn.Module):
    """Class token, positions, ``depth`` blocks, a final norm and a linear head on the class token."""

    def __init__(self, tokens: int, dim: int, depth: int, heads: int, num_classes: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim = {dim} must be a multiple of heads = {heads}")
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*[EncoderBlock(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1) + self.pos
        return self.norm(self.blocks(x))[:, 0]


class PatchTransformer(_Encoder):
    """ViT-style: non-overlapping ``patch`` patches of an image (``dim=2``) or a signal (``dim=1``)."""

    def __init__(self, *, input_size: int, patch: int, in_channels: int = 1, spatial_dims: int = 2,
                 dim: int = 32, depth: int = 3, heads: int = 4, num_classes: int = 10) -> None:
        if input_size % patch:
            raise ValueError(f"input_size = {input_size} must be a multiple of patch = {patch}")
        side = input_size // patch
        super().__init__(side ** spatial_dims, dim, depth, heads, num_classes)
        conv = {1: nn.Conv1d, 2: nn.Conv2d}[spatial_dims]
        self.embed = conv(in_channels, dim, patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encode(self.embed(x).flatten(2).transpose(1, 2)))


class FeatureTransformer(_Encoder):
    """Tabular: each of ``in_features`` numbers becomes a token ``x_i * w_i + b_i`` (FT-Transformer)."""

    def __init__(self, *, in_features: int, dim: int = 32, depth: int = 2, heads: int = 4,
                 num_classes: int = 2) -> None:
        super().__init__(in_features, dim, depth, heads, num_classes)
        self.weight = nn.Parameter(torch.randn(in_features, dim) * 0.1)
        self.bias = nn.Parameter(torch.zeros(in_features, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encode(x.unsqueeze(-1) * self.weight + self.bias))


def digits_vit(num_classes: int = 10, dim: int = 32, depth: int = 3, heads: int = 4) -> PatchTransformer:
    """Digits ViT parent: 2x2 patches of the 8x8 image (a 4x4 grid + class token), 3 layers of width 32."""
    return PatchTransformer(input_size=8, patch=2, dim=dim, depth=depth, heads=heads, num_classes=num_classes)


def digits_vit_tiny(num_classes: int = 10, dim: int = 8, depth: int = 2, heads: int = 2) -> PatchTransformer:
    """Small digits ViT child: 2x2 patches, 2 layers of width 8."""
    return PatchTransformer(input_size=8, patch=2, dim=dim, depth=depth, heads=heads, num_classes=num_classes)


def tabular_transformer(num_classes: int = 4, in_features: int = 20, dim: int = 32, depth: int = 2,
                        heads: int = 4) -> FeatureTransformer:
    """Tabular parent: one token per feature, 2 layers of width 32."""
    return FeatureTransformer(in_features=in_features, dim=dim, depth=depth, heads=heads, num_classes=num_classes)
