"""Texture classification from scikit-image's bundled photos (brick, grass, gravel), offline.

Training crops come from the left half of each photo and test crops from the right half, so no
test pixel is ever seen in training.
"""

from __future__ import annotations

import numpy as np
import torch

from hkt_core import DatasetBundle

from .arrays import ArrayDataset, channel_stats
from .augment import RandomCropFlip
from .errors import DatasetError

TEXTURES = ("brick", "grass", "gravel")


def crops(image: np.ndarray, count: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` random ``size`` x ``size`` crops of a 2-D image."""
    h, w = image.shape
    if size > min(h, w):
        raise DatasetError(f"textures: crop size {size} is larger than the image half ({h}x{w})")
    ys = rng.integers(0, h - size + 1, count)
    xs = rng.integers(0, w - size + 1, count)
    return np.stack([image[y:y + size, x:x + size] for y, x in zip(ys, xs)])


def textures(size: int = 32, train_per_class: int = 300, test_per_class: int = 100, seed: int = 0,
             augment: bool = True) -> DatasetBundle:
    """Grey ``(1, size, size)`` crops of three texture photos; ``augment`` adds shifts and flips."""
    import skimage.data

    for name, value in (("size", size), ("train_per_class", train_per_class), ("test_per_class", test_per_class)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise DatasetError(f"textures: {name} = {value!r} is invalid: a positive integer")
    rng = np.random.default_rng(seed)
    train, test, train_y, test_y = [], [], [], []
    for label, name in enumerate(TEXTURES):
        image = np.asarray(getattr(skimage.data, name)(), dtype=np.uint8)
        half = image.shape[1] // 2
        train.append(crops(image[:, :half], train_per_class, size, rng))
        test.append(crops(image[:, half:], test_per_class, size, rng))
        train_y += [label] * train_per_class
        test_y += [label] * test_per_class
    train_x = torch.from_numpy(np.concatenate(train)).unsqueeze(1)
    test_x = torch.from_numpy(np.concatenate(test)).unsqueeze(1)
    mean, std = channel_stats(train_x)
    return DatasetBundle(
        train=ArrayDataset(train_x, torch.tensor(train_y), mean, std),
        test=ArrayDataset(test_x, torch.tensor(test_y), mean, std),
        input_shapes=((1, size, size),),
        info={"num_classes": len(TEXTURES), "class_names": list(TEXTURES), "mean": mean, "std": std,
              "source": "skimage.data"},
        augment=RandomCropFlip(4, True) if augment else None,
    )
