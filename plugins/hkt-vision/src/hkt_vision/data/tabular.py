"""A generated tabular classification set (scikit-learn's ``make_classification``), offline.

The bundled tabular sets of scikit-learn have at most 569 rows, too few to measure a difference
between training methods; this one has as many as asked (default 6,000: 4,500 for training,
1,500 for the test set), ``n_features`` numbers per row, standardised on the training split.
"""

from __future__ import annotations

import numpy as np
import torch

from hkt_core import DatasetBundle

from .arrays import ArrayDataset, channel_stats, stratified_split


def tabular(n_samples: int = 6000, n_features: int = 20, n_informative: int = 8, n_classes: int = 4,
            class_sep: float = 0.8, flip_y: float = 0.03, test_fraction: float = 0.25, seed: int = 0) -> DatasetBundle:
    """``make_classification`` rows as ``(n_features,)`` float vectors; a stratified ``test_fraction`` is held out."""
    from sklearn.datasets import make_classification

    if n_samples < 100:
        raise ValueError(f"n_samples = {n_samples} is too small: at least 100 rows")
    x, y = make_classification(n_samples=n_samples, n_features=n_features, n_informative=n_informative,
                               n_redundant=min(4, n_features - n_informative), n_classes=n_classes,
                               n_clusters_per_class=2, class_sep=class_sep, flip_y=flip_y, random_state=seed)
    samples = torch.from_numpy(x.astype(np.float32))
    labels = torch.from_numpy(y.astype(np.int64))
    train_idx, test_idx = stratified_split(y, test_fraction, seed)
    mean, std = channel_stats(samples[train_idx])
    return DatasetBundle(
        train=ArrayDataset(samples[train_idx], labels[train_idx], mean, std),
        test=ArrayDataset(samples[test_idx], labels[test_idx], mean, std),
        input_shapes=((n_features,),),
        info={"num_classes": n_classes, "class_names": [str(i) for i in range(n_classes)],
              "source": "sklearn.datasets.make_classification", "seed": seed},
    )
