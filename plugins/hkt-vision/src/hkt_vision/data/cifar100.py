"""CIFAR-100 read from a user's directory: the standard binary version (``cifar-100-binary``).

``train.bin`` (50,000 images) and ``test.bin`` (10,000), each a run of 3,074-byte records: the
coarse label byte (20 superclasses), the fine label byte (100 classes), then 1,024 red, 1,024
green and 1,024 blue bytes (row-major 32x32); class names in ``fine_label_names.txt`` and
``coarse_label_names.txt``. ``labels = "fine"`` (the 100 classes, the usual benchmark) or
``"coarse"``.

Nothing is downloaded: get "CIFAR-100 binary version" from https://www.cs.toronto.edu/~kriz/cifar.html
and pass its folder as ``root`` (default ``$HKT_HOME/data/cifar100``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from hkt_core import DatasetBundle

from .arrays import ArrayDataset
from .augment import RandomCropFlip
from .cifar10 import read_records
from .errors import DatasetError

RECORD = 2 + 3 * 32 * 32
LABELS = {"coarse": (0, 20), "fine": (1, 100)}  # byte offset in a record, number of classes
#: per-channel statistics of the 50,000 training images (scaled to [0, 1])
MEAN = (0.5071, 0.4865, 0.4409)
STD = (0.2673, 0.2564, 0.2762)
EXPECTED = ("a folder holding cifar-100-binary/ (train.bin, test.bin), or that folder itself; get "
            "'CIFAR-100 binary version' from https://www.cs.toronto.edu/~kriz/cifar.html and extract it there")


def default_root() -> Path:
    from hkt_core import hkt_home

    return hkt_home() / "data" / "cifar100"


def locate(root: str | Path) -> Path:
    """The folder holding ``train.bin`` and ``test.bin`` under ``root``."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"cifar100: data directory {root} does not exist; expected {EXPECTED}")
    for folder in (root / "cifar-100-binary", root):
        if (folder / "train.bin").is_file() or (folder / "test.bin").is_file():
            return folder
    found = sorted(p.name for p in root.iterdir())[:10]
    raise DatasetError(f"cifar100: {root} holds no CIFAR-100 binary files (found: {', '.join(found) or 'nothing'}); "
                       f"expected {EXPECTED}")


def read_binary(path: Path, labels: str = "fine") -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 3, 32, 32)`` uint8 and labels ``(N,)`` int64 of one CIFAR-100 binary file."""
    if labels not in LABELS:
        raise DatasetError(f"cifar100: labels = {labels!r} is invalid: 'fine' (100 classes) or 'coarse' (20)")
    records = read_records(path, RECORD, "CIFAR-100", "coarse and fine label bytes + 3x32x32 pixel bytes", EXPECTED)
    offset, classes = LABELS[labels]
    y = records[:, offset].astype(np.int64)
    if y.max() >= classes:
        raise DatasetError(f"cifar100: {path} has {labels} labels up to {y.max()}; expected 0..{classes - 1}")
    return records[:, 2:].reshape(-1, 3, 32, 32), y


def read_class_names(folder: Path, labels: str) -> list[str]:
    classes = LABELS[labels][1]
    meta = folder / f"{labels}_label_names.txt"
    if meta.is_file():
        names = [line.strip() for line in meta.read_text(encoding="utf-8").splitlines() if line.strip()]
        if len(names) == classes:
            return names
    return [str(i) for i in range(classes)]  # the names are cosmetic


def cifar100(root: str | None = None, augment: bool = True, padding: int = 4, flip: bool = True,
             labels: str = "fine") -> DatasetBundle:
    """CIFAR-100 from ``root`` as normalised ``(3, 32, 32)`` images; ``augment`` applies the standard
    random crops (``padding`` pixels) and horizontal flips."""
    folder = locate(root if root is not None else default_root())
    tensors = []
    for name in ("train.bin", "test.bin"):
        x, y = read_binary(folder / name, labels)
        tensors.append((torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y)))
    (train_x, train_y), (test_x, test_y) = tensors
    classes = LABELS[labels][1]
    return DatasetBundle(
        train=ArrayDataset(train_x, train_y, MEAN, STD), test=ArrayDataset(test_x, test_y, MEAN, STD),
        input_shapes=((3, 32, 32),),
        info={"num_classes": classes, "class_names": read_class_names(folder, labels), "mean": list(MEAN),
              "std": list(STD), "source": str(folder), "format": "bin", "labels": labels},
        augment=RandomCropFlip(padding, flip) if augment else None,
    )
