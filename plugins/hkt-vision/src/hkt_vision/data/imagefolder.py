"""A user's own images: one sub-folder per class, read with Pillow and held in memory.

Layouts::

    root/train/<class>/*.png   root/test/<class>/*.png     (explicit splits)
    root/<class>/*.png                                      (split here: ``test_fraction`` per class)

Images are converted to RGB (``channels=3``) or grey (``channels=1``) and resized to
``size`` x ``size``. Normalisation uses per-channel statistics of the training images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from hkt_core import DatasetBundle

from .arrays import ArrayDataset, channel_stats, stratified_split
from .augment import RandomCropFlip
from .errors import DatasetError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
EXPECTED = ("one sub-folder per class holding image files (" + ", ".join(EXTENSIONS) + "), either directly "
            "under the root or under root/train and root/test")


def list_classes(folder: Path) -> dict[str, list[Path]]:
    """Class name -> sorted image files, for every sub-folder of ``folder``."""
    classes = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(f for f in sub.iterdir() if f.is_file() and f.suffix.lower() in EXTENSIONS)
        if not files:
            raise DatasetError(f"imagefolder: class folder {sub} holds no images; expected {EXPECTED}")
        classes[sub.name] = files
    if not classes:
        raise DatasetError(f"imagefolder: {folder} has no class sub-folders; expected {EXPECTED}")
    return classes


def read_image(path: Path, size: int, channels: int) -> np.ndarray:
    """One image as ``(channels, size, size)`` uint8."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB" if channels == 3 else "L")
            if im.size != (size, size):
                im = im.resize((size, size), Image.Resampling.BILINEAR)
            array = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as exc:
        raise DatasetError(f"imagefolder: cannot read image {path} ({exc})") from None
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def read_files(files: list[tuple[Path, int]], size: int, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    images = np.stack([read_image(p, size, channels) for p, _ in files])
    labels = np.array([label for _, label in files], dtype=np.int64)
    return torch.from_numpy(images), torch.from_numpy(labels)


def imagefolder(root: str | None = None, size: int = 32, channels: int = 3, test_fraction: float = 0.2,
                seed: int = 0, augment: bool = True, padding: int = 4, flip: bool = True) -> DatasetBundle:
    """Images from ``root`` (see the module docstring for the layout)."""
    if root is None:
        raise DatasetError(f"imagefolder: give the data directory as the 'root' option; expected {EXPECTED}")
    if channels not in (1, 3):
        raise DatasetError(f"imagefolder: channels = {channels!r} is invalid: 1 (grey) or 3 (RGB)")
    if not isinstance(size, int) or size < 1:
        raise DatasetError(f"imagefolder: size = {size!r} is invalid: a positive integer (pixels per side)")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"imagefolder: data directory {root} does not exist; expected {EXPECTED}")
    if (root / "train").is_dir() and (root / "test").is_dir():
        train_classes = list_classes(root / "train")
        test_classes = list_classes(root / "test")
        if set(test_classes) - set(train_classes):
            raise DatasetError(f"imagefolder: {root / 'test'} has classes missing from {root / 'train'}: "
                               f"{', '.join(sorted(set(test_classes) - set(train_classes)))}")
        names = list(train_classes)
        index = {name: i for i, name in enumerate(names)}
        train_files = [(p, index[c]) for c, ps in train_classes.items() for p in ps]
        test_files = [(p, index[c]) for c, ps in test_classes.items() for p in ps]
    else:
        classes = list_classes(root)
        names = list(classes)
        files = [(p, i) for i, ps in enumerate(classes.values()) for p in ps]
        labels = np.array([label for _, label in files])
        too_few = [n for n, ps in classes.items() if len(ps) < 2]
        if too_few:
            raise DatasetError(f"imagefolder: class(es) {', '.join(too_few)} have fewer than 2 images; "
                               f"a train/test split needs at least 2 per class (or use root/train and root/test)")
        try:
            train_idx, test_idx = stratified_split(labels, test_fraction, seed)
        except ValueError as exc:
            raise DatasetError(f"imagefolder: cannot split {len(files)} images of {len(names)} classes with "
                               f"test_fraction={test_fraction!r} ({exc}); each split needs an image of every "
                               f"class: add images, change test_fraction, or use root/train and root/test") from None
        train_files = [files[i] for i in train_idx]
        test_files = [files[i] for i in test_idx]
    train_x, train_y = read_files(train_files, size, channels)
    test_x, test_y = read_files(test_files, size, channels)
    mean, std = channel_stats(train_x)
    return DatasetBundle(
        train=ArrayDataset(train_x, train_y, mean, std), test=ArrayDataset(test_x, test_y, mean, std),
        input_shapes=((channels, size, size),),
        info={"num_classes": len(names), "class_names": names, "mean": mean, "std": std, "source": str(root)},
        augment=RandomCropFlip(padding, flip) if augment else None,
    )
