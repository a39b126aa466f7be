"""The registered data sets: ``factory(**options) -> DatasetBundle`` for each source.

- ``seg-synthetic``: generated texture mosaics with exact masks (:mod:`hkt_seg.synthetic`).
- ``seg-folder``: a user's PNG image/mask folder (``root/train`` + ``root/test`` if present,
  else one folder split by ``test_fraction``).
- ``seg-lits``: a user's LiTS NIfTI folder, split by case so no patient is in both splits.

Training batches are augmented through the bundle's ``augment`` (flips, quarter turns,
intensity jitter); the test split never is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from hkt_core import DatasetBundle
from hkt_core import ConfigError

from .data import SegAugment, SegmentationArrays, split_indices
from .readers import lits_cases, read_lits_case, read_png_folder
from .synthetic import BACKGROUNDS, CLASS_TEXTURES, make_synthetic


def _augment(augment: bool) -> SegAugment | None:
    return SegAugment() if augment else None


def _info(num_classes: int, class_names: list[str], **extra) -> dict:
    return {"num_classes": num_classes, "class_names": class_names, "task": "seg", **extra}


def synthetic_bundle(*, size: int = 64, n_train: int = 512, n_test: int = 128, num_classes: int = 3,
                     shapes: Sequence[int] = (1, 4), jitter: float = 0.25, seed: int = 0,
                     augment: bool = True) -> DatasetBundle:
    """Texture mosaics of scikit-image's bundled photos with exact masks (generated, seeded)."""
    shapes = tuple(shapes)
    x_train, y_train = make_synthetic(n_train, size=size, num_classes=num_classes, shapes=shapes,
                                      jitter=jitter, seed=seed)
    x_test, y_test = make_synthetic(n_test, size=size, num_classes=num_classes, shapes=shapes,
                                    jitter=jitter, seed=seed + 1_000_003)
    names = ["background"] + list(CLASS_TEXTURES[:num_classes - 1])
    return DatasetBundle(SegmentationArrays(x_train, y_train), SegmentationArrays(x_test, y_test),
                         ((1, size, size),), _info(num_classes, names, backgrounds=list(BACKGROUNDS)),
                         _augment(augment))


def folder_bundle(*, root: str, images: str = "images", masks: str = "masks", channels: int = 1,
                  size: int | Sequence[int] | None = None, mask_values: Mapping | None = None,
                  num_classes: int | None = None, class_names: Sequence[str] | None = None,
                  ignore_index: int | None = 255, test_fraction: float = 0.2, seed: int = 0,
                  augment: bool = True) -> DatasetBundle:
    """PNG image/mask pairs from ``root`` (or ``root/train`` and ``root/test``)."""
    root_path = Path(root).expanduser()
    if mask_values is not None:  # TOML tables have string keys
        mask_values = {int(k): int(v) for k, v in mask_values.items()}
    kwargs = dict(images=images, masks=masks, channels=channels, size=size, mask_values=mask_values,
                  num_classes=num_classes, ignore_index=ignore_index)
    if (root_path / "train").is_dir() and (root_path / "test").is_dir():
        x_train, y_train, _ = read_png_folder(root_path / "train", **kwargs)
        x_test, y_test, _ = read_png_folder(root_path / "test", **kwargs)
        train, test = SegmentationArrays(x_train, y_train), SegmentationArrays(x_test, y_test)
    else:
        x, y, _ = read_png_folder(root_path, **kwargs)
        everything = SegmentationArrays(x, y)
        train_idx, test_idx = split_indices(len(everything), test_fraction, seed)
        train, test = everything.subset(train_idx), everything.subset(test_idx)
    if num_classes is None:
        labels = np.concatenate([train.masks.numpy().ravel(), test.masks.numpy().ravel()])
        labels = labels[labels != ignore_index] if ignore_index is not None else labels
        num_classes = int(labels.max()) + 1 if labels.size else 1
    names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
    if len(names) != num_classes:
        raise ConfigError(f"class_names has {len(names)} entries but num_classes = {num_classes}")
    shape = tuple(train.images.shape[1:])
    return DatasetBundle(train, test, (shape,), _info(num_classes, names, ignore_index=ignore_index),
                         _augment(augment))


def lits_bundle(*, root: str, window: Sequence[float] = (-100.0, 200.0), axis: int = 2,
                size: int | Sequence[int] | None = 128, merge_tumor: bool = True, every: int = 1,
                foreground_only: bool = False, test_cases: Sequence[int] | None = None,
                test_fraction: float = 0.2, seed: int = 0, augment: bool = True) -> DatasetBundle:
    """LiTS CT volumes sliced to 2-D; test cases either listed or drawn by ``test_fraction``."""
    cases = lits_cases(Path(root).expanduser())
    numbers = sorted(cases)
    if test_cases is not None:
        missing = sorted(set(test_cases) - set(numbers))
        if missing:
            raise ConfigError(f"test_cases {missing} are not in {root} (cases found: {numbers[:10]})")
        test_set = set(test_cases)
    else:
        _, test_idx = split_indices(len(numbers), test_fraction, seed)
        test_set = {numbers[i] for i in test_idx}
    if not test_set or test_set == set(numbers):
        raise ConfigError(f"{root}: the split leaves train or test empty ({len(numbers)} case(s)); "
                          f"list test_cases explicitly")
    window_range = tuple(float(v) for v in window)
    if len(window_range) != 2:
        raise ConfigError(f"window = {window!r} is invalid: [low, high] in Hounsfield units")
    parts: dict[bool, tuple[list, list]] = {True: ([], []), False: ([], [])}
    for number in numbers:
        x, y = read_lits_case(*cases[number], window_range=window_range, axis=axis, size=size,
                              merge_tumor=merge_tumor, every=every, foreground_only=foreground_only)
        parts[number in test_set][0].append(x)
        parts[number in test_set][1].append(y)
    splits = []
    for is_test in (False, True):
        xs, ys = parts[is_test]
        shapes = {x.shape[1:] for x in xs if len(x)}
        if len(shapes) > 1:
            raise ConfigError(f"{root}: slices differ in size {sorted(shapes)}; pass size=N to resize them")
        if not shapes:
            raise ConfigError(f"{root}: no slices left for the {'test' if is_test else 'train'} split")
        splits.append(SegmentationArrays(np.concatenate(xs), np.concatenate(ys)))
    names = ["background", "liver"] if merge_tumor else ["background", "liver", "tumour"]
    return DatasetBundle(splits[0], splits[1], (tuple(splits[0].images.shape[1:]),),
                         _info(len(names), names, window=list(window_range), test_cases=sorted(test_set)),
                         _augment(augment))


#: Registered name -> factory.
DATASETS = {
    "seg-synthetic": synthetic_bundle,
    "seg-folder": folder_bundle,
    "seg-lits": lits_bundle,
}
