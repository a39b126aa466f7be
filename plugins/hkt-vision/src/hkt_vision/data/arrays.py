"""In-memory classification data: samples stored once, normalised on access.

Images are kept as ``uint8`` (CIFAR-10's 50,000 training images take 150 MB instead of 600 MB
as float32) and normalised per item; generated float signals are stored as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset


class ArrayDataset(Dataset):
    """``(inputs, label)`` pairs from a sample tensor ``(N, C, *S)`` and an int64 label tensor.

    ``uint8`` samples are divided by 255; then ``(x - mean) / std`` with one value per channel.
    """

    def __init__(self, samples: torch.Tensor, labels: torch.Tensor, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None) -> None:
        if len(samples) != len(labels):
            raise ValueError(f"{len(samples)} samples but {len(labels)} labels")
        self.samples = samples
        self.labels = labels.to(torch.int64)
        spatial = samples.dim() - 2
        channels = samples.shape[1]
        self.mean = _per_channel(mean, channels, spatial, 0.0)
        self.std = _per_channel(std, channels, spatial, 1.0)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.normalise(self.samples[index]), self.labels[index]

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.float32) / 255.0 if x.dtype == torch.uint8 else x.to(torch.float32)
        return (x - self.mean) / self.std


def _per_channel(values: Sequence[float] | None, channels: int, spatial: int, default: float) -> torch.Tensor:
    if values is None:
        values = [default] * channels
    values = [float(v) for v in values]
    if len(values) == 1:
        values = values * channels
    if len(values) != channels:
        raise ValueError(f"normalisation has {len(values)} values for {channels} channels")
    return torch.tensor(values, dtype=torch.float32).reshape(channels, *([1] * spatial))


def channel_stats(samples: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of ``(N, C, *S)`` samples (uint8 scaled to [0, 1])."""
    x = samples.to(torch.float64)
    if samples.dtype == torch.uint8:
        x = x / 255.0
    dims = [0, *range(2, x.dim())]
    mean = x.mean(dim=dims)
    std = x.std(dim=dims).clamp_min(1e-6)
    return mean.tolist(), std.tolist()


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a deterministic split that keeps each class's share in both parts."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction = {test_fraction!r} is invalid: a number in (0, 1)")
    from sklearn.model_selection import train_test_split

    index = np.arange(len(labels))
    train, test = train_test_split(index, test_size=test_fraction, random_state=seed, stratify=labels)
    return np.sort(train), np.sort(test)
