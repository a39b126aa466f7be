"""The ``wine`` data set: 13 measurements per wine, 3 cultivars (scikit-learn's bundled copy)."""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from hkt_core import DatasetBundle

FEATURES, CLASSES = 13, 3


def wine(test_fraction: float = 0.3, seed: int = 0) -> DatasetBundle:
    """Wines as ``(13,)`` vectors standardised on the training split; a seeded train/test split."""
    from sklearn.datasets import load_wine

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"wine: test_fraction = {test_fraction!r} is invalid: a number in (0, 1)")
    data = load_wine()
    x = torch.tensor(data.data, dtype=torch.float32)
    y = torch.tensor(data.target, dtype=torch.int64)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_test = round(test_fraction * len(y))
    test, train = order[:n_test], order[n_test:]
    mean, std = x[train].mean(0), x[train].std(0)
    x = (x - mean) / std
    return DatasetBundle(TensorDataset(x[train], y[train]), TensorDataset(x[test], y[test]), ((FEATURES,),),
                         {"num_classes": CLASSES, "class_names": list(data.target_names)})
