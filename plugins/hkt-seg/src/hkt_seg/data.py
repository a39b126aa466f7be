"""In-memory segmentation samples, train/test splitting and batch augmentation.

Every reader of this plugin produces the same two arrays: images ``(N, C, H, W)`` float32 and
class-index masks ``(N, H, W)`` int64. :class:`SegmentationArrays` serves them as
``(image, mask)`` tensor pairs; :class:`SegAugment` is the bundle's ``augment`` callable.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset


class SegmentationArrays(Dataset):
    """Images (N, C, H, W) float and masks (N, H, W) integer, validated to match."""

    def __init__(self, images: np.ndarray, masks: np.ndarray) -> None:
        images = np.asarray(images)
        masks = np.asarray(masks)
        if images.ndim != 4:
            raise ValueError(f"images must have shape (N, C, H, W), got {images.shape}")
        if masks.ndim != 3 or masks.shape[0] != images.shape[0] or masks.shape[1:] != images.shape[2:]:
            raise ValueError(f"masks must have shape (N, H, W) = {(images.shape[0], *images.shape[2:])} "
                             f"to match the images, got {masks.shape}")
        if not np.issubdtype(masks.dtype, np.integer):
            raise ValueError(f"masks must hold integer class indices, got dtype {masks.dtype}")
        self.images = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
        self.masks = torch.from_numpy(np.ascontiguousarray(masks, dtype=np.int64))

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.masks[index]

    def subset(self, indices: Sequence[int]) -> "SegmentationArrays":
        idx = np.asarray(indices, dtype=np.int64)
        return SegmentationArrays(self.images.numpy()[idx], self.masks.numpy()[idx])


def split_indices(count: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded shuffle cut into (train, test) index arrays; both non-empty."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction = {test_fraction!r} is invalid: a number in (0, 1)")
    if count < 2:
        raise ValueError(f"cannot split {count} sample(s) into train and test: need at least 2")
    order = np.random.default_rng(seed).permutation(count)
    n_test = min(max(1, round(count * test_fraction)), count - 1)
    return np.sort(order[n_test:]), np.sort(order[:n_test])


class SegAugment:
    """Random flips, quarter turns (square images) and intensity jitter, per sample of a batch.

    Geometric changes move image and mask together, so masks stay exact; intensity jitter
    (``x * (1 + c) + b`` with ``c``, ``b`` uniform in ``[-contrast, contrast]``,
    ``[-brightness, brightness]``) touches the image only.
    """

    def __init__(self, flips: bool = True, rotations: bool = True, brightness: float = 0.1,
                 contrast: float = 0.1) -> None:
        self.flips = flips
        self.rotations = rotations
        self.brightness = float(brightness)
        self.contrast = float(contrast)

    def __repr__(self) -> str:
        return (f"SegAugment(flips={self.flips}, rotations={self.rotations}, "
                f"brightness={self.brightness}, contrast={self.contrast})")

    def __call__(self, inputs, target: torch.Tensor, generator: torch.Generator | None = None):
        packed = isinstance(inputs, (tuple, list))
        x = inputs[0] if packed else inputs
        y = target
        n = x.shape[0]

        def coin() -> torch.Tensor:
            return torch.rand(n, generator=generator) < 0.5

        if self.flips:
            for dim in (-1, -2):
                flip = coin().to(x.device)
                x = torch.where(flip.view(-1, 1, 1, 1), x.flip(dim), x)
                y = torch.where(flip.view(-1, 1, 1), y.flip(dim), y)
        if self.rotations and x.shape[-1] == x.shape[-2]:
            turn = coin().to(x.device)
            x = torch.where(turn.view(-1, 1, 1, 1), x.rot90(1, (-2, -1)), x)
            y = torch.where(turn.view(-1, 1, 1), y.rot90(1, (-2, -1)), y)
        if self.contrast or self.brightness:
            c = (torch.rand(n, generator=generator) * 2 - 1) * self.contrast
            b = (torch.rand(n, generator=generator) * 2 - 1) * self.brightness
            x = x * (1 + c.to(x).view(-1, 1, 1, 1)) + b.to(x).view(-1, 1, 1, 1)
        if packed:
            return (x, *inputs[1:]), y
        return x, y
