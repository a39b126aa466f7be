"""Registered data set factories (``factory(**options) -> DatasetBundle``).

- ``flow-synthetic``: rendered pairs with exact flow (:mod:`hkt_flow.synthetic`).
- ``flow-motorcycle``: scikit-image's ``stereo_motorcycle`` (Middlebury 2014), a real stereo pair
  with ground-truth disparity, read as horizontal flow from the left to the right view
  (``u = -disparity``, ``v = 0``). One pair, for evaluation: both splits hold it.
- ``flying-chairs``, ``sintel``, ``kitti-2015``, ``hd1k``: the benchmarks from ``root=...``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset, Subset

from hkt_core import DatasetBundle
from hkt_core import ConfigError

from .readers import HD1K, KITTI, FlyingChairs, Sintel
from .synthetic import synthetic_bundle, to_sample


def motorcycle_pair(downscale: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(left, right, flow, valid)`` of ``stereo_motorcycle`` reduced ``downscale`` times.

    Frames are averaged over ``downscale x downscale`` blocks; the flow of a block is its mean
    disparity (divided by ``downscale``), valid only if every pixel of the block has a finite
    disparity. The result is cropped to multiples of 8.
    """
    import skimage.data

    if not (isinstance(downscale, int) and downscale >= 1):
        raise ConfigError(f"downscale = {downscale!r}: give an integer >= 1")
    left, right, disparity = skimage.data.stereo_motorcycle()
    k = downscale
    h, w = (disparity.shape[0] // k) // 8 * 8, (disparity.shape[1] // k) // 8 * 8
    if h < 8 or w < 8:
        raise ConfigError(f"downscale = {downscale} leaves less than 8x8 pixels")

    def blocks(a: np.ndarray) -> np.ndarray:
        a = a[: h * k, : w * k].astype(np.float64)
        return a.reshape(h, k, w, k, *a.shape[2:]).mean(axis=(1, 3))

    finite = np.isfinite(disparity)
    valid = blocks(finite.astype(np.float64)) == 1.0
    disp = blocks(np.where(finite, disparity, 0.0)) / k
    flow = np.stack([np.where(valid, -disp, 0.0), np.zeros_like(disp)], axis=-1)
    return (blocks(left).astype(np.float32), blocks(right).astype(np.float32), flow.astype(np.float32), valid)


class MotorcyclePair(Dataset):
    """The single ``stereo_motorcycle`` pair as ``((left, right), target)``."""

    def __init__(self, downscale: int = 4) -> None:
        self.sample = to_sample(*motorcycle_pair(downscale))

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int):
        if index != 0:
            raise IndexError(f"the motorcycle set has one pair; index {index} is out of range")
        return self.sample


def motorcycle_bundle(downscale: int = 4) -> DatasetBundle:
    pair = MotorcyclePair(downscale)
    shape = tuple(pair.sample[0][0].shape)
    return DatasetBundle(train=pair, test=pair, input_shapes=(shape, shape),
                         info={"task": "flow", "evaluation_only": True, "source": "skimage.data.stereo_motorcycle",
                               "flow": "u = -disparity (left to right view), v = 0"})


def _tail_split(dataset: Dataset, test_fraction: float) -> tuple[Dataset, Dataset]:
    if not 0 < test_fraction < 1:
        raise ConfigError(f"test_fraction = {test_fraction!r}: a fraction in (0, 1)")
    n = len(dataset)
    n_test = max(1, math.ceil(n * test_fraction)) if n > 1 else 0
    if n_test == 0:
        return dataset, dataset
    return Subset(dataset, range(n - n_test)), Subset(dataset, range(n - n_test, n))


def _bundle(train: Dataset, test: Dataset, name: str) -> DatasetBundle:
    (image1, _), _ = test[0]
    shape = tuple(image1.shape)
    return DatasetBundle(train=train, test=test, input_shapes=(shape, shape), info={"task": "flow", "source": name})


def chairs_bundle(root: str, crop: tuple[int, int] | None = None) -> DatasetBundle:
    """FlyingChairs: its own train/validation split (or the last 5% without the split file)."""
    if (Path(root) / "FlyingChairs_train_val.txt").is_file():
        return _bundle(FlyingChairs(root, "train", crop), FlyingChairs(root, "validation", crop), "FlyingChairs")
    return _bundle(*_tail_split(FlyingChairs(root, "all", crop), 0.05), "FlyingChairs")


def sintel_bundle(root: str, dstype: str = "clean", crop: tuple[int, int] | None = (432, 1024),
                  test_fraction: float = 0.15) -> DatasetBundle:
    """MPI-Sintel training pairs, split by scene (the last scenes are the test split)."""
    data = Sintel(root, dstype, crop)
    scenes = sorted({flow.parent.name for _, _, flow in data.samples})
    n_test = max(1, math.ceil(len(scenes) * test_fraction)) if len(scenes) > 1 else 0
    test_scenes = set(scenes[len(scenes) - n_test:])
    train_idx = [i for i, s in enumerate(data.samples) if s[2].parent.name not in test_scenes]
    test_idx = [i for i, s in enumerate(data.samples) if s[2].parent.name in test_scenes]
    if not test_idx:
        return _bundle(data, data, "Sintel")
    return _bundle(Subset(data, train_idx), Subset(data, test_idx), "Sintel")


def kitti_bundle(root: str, crop: tuple[int, int] | None = (368, 1216), test_fraction: float = 0.1) -> DatasetBundle:
    return _bundle(*_tail_split(KITTI(root, crop), test_fraction), "KITTI 2015")


def hd1k_bundle(root: str, crop: tuple[int, int] | None = (1080, 2560), test_fraction: float = 0.1) -> DatasetBundle:
    return _bundle(*_tail_split(HD1K(root, crop), test_fraction), "HD1K")


#: name -> (factory, description), as registered in the ``datasets`` registry.
DATASETS = {
    "flow-synthetic": (synthetic_bundle, "photos warped by random smooth flow, exact ground truth (embedded)"),
    "flow-motorcycle": (motorcycle_bundle, "stereo_motorcycle: a real stereo pair, disparity as flow (embedded)"),
    "flying-chairs": (chairs_bundle, "FlyingChairs from root=DIR (.ppm + .flo)"),
    "sintel": (sintel_bundle, "MPI-Sintel training set from root=DIR (clean/final + .flo)"),
    "kitti-2015": (kitti_bundle, "KITTI 2015 training set from root=DIR (16-bit PNG flow)"),
    "hd1k": (hd1k_bundle, "HD1K from root=DIR (16-bit PNG flow)"),
}
