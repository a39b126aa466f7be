"""scikit-learn's bundled handwritten digits: 1,797 real 8x8 grey images, 10 classes, offline."""

from __future__ import annotations

import numpy as np
import torch

from hkt_core import DatasetBundle

from .arrays import ArrayDataset, channel_stats, stratified_split
from .augment import RandomCropFlip


def digits(test_fraction: float = 0.2, seed: int = 0, augment: bool = False, shift: int = 1) -> DatasetBundle:
    """8x8 digits as ``(1, 8, 8)`` images scaled to [0, 1] then normalised on the training split.

    ``test_fraction`` of each class is held out (stratified, deterministic in ``seed``).
    ``augment`` shifts training batches by up to ``shift`` pixels (no flips: digits are not
    mirror-symmetric).
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy((bunch.images / 16.0).astype(np.float32)).unsqueeze(1)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    train_idx, test_idx = stratified_split(bunch.target, test_fraction, seed)
    mean, std = channel_stats(images[train_idx])
    train = ArrayDataset(images[train_idx], labels[train_idx], mean, std)
    test = ArrayDataset(images[test_idx], labels[test_idx], mean, std)
    return DatasetBundle(
        train=train, test=test, input_shapes=((1, 8, 8),),
        info={"num_classes": 10, "class_names": [str(i) for i in range(10)], "mean": mean, "std": std,
              "source": "sklearn.datasets.load_digits"},
        augment=RandomCropFlip(padding=shift, flip=False) if augment else None,
    )
