"""Two models for ``wine``: a transformer over measurement tokens (parent) and an MLP (child)."""

from __future__ import annotations

import torch
from torch import nn

from .data import CLASSES, FEATURES


class FeatureTransformer(nn.Module):
    """Each measurement becomes a token (its value times a learned vector plus a learned position),
    then ``depth`` pre-norm attention blocks; the mean token feeds the head."""

    def __init__(self, dim: int = 16, depth: int = 2, heads: int = 2, classes: int = CLASSES,
                 features: int = FEATURES) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim = {dim} must be divisible by heads = {heads}")
        self.heads = heads
        self.value = nn.Parameter(torch.randn(features, dim) * 0.1)
        self.position = nn.Parameter(torch.zeros(features, dim))
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.unsqueeze(-1) * self.value + self.position      # (B, features, dim)
        for block in self.blocks:
            tokens = block(tokens)
        return self.head(self.norm(tokens).mean(1))


class Block(nn.Module):
    """Self-attention and a feed-forward layer, each around a residual."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attended = torch.softmax(q @ k.transpose(-2, -1) * (d // self.heads) ** -0.5, dim=-1) @ v
        x = x + self.out(attended.transpose(1, 2).reshape(b, n, d))
        return x + self.ff(self.norm2(x))


class MLP(nn.Module):
    """Two hidden layers."""

    def __init__(self, hidden: int = 16, classes: int = CLASSES, features: int = FEATURES) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def wine_transformer(**options) -> nn.Module:
    """Transformer over the 13 measurements as tokens (about 5k parameters)."""
    return FeatureTransformer(**options)


def wine_mlp(**options) -> nn.Module:
    """MLP child with two hidden layers of 16 (about 550 parameters)."""
    return MLP(**options)
