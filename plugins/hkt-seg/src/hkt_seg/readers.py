"""Readers for segmentation data on a user's disk: PNG image/mask folders and LiTS NIfTI volumes.

PNG folder layout (images and masks paired by file stem)::

    root/images/case1.png   root/masks/case1.png

Masks hold class indices as pixel values (8- or 16-bit grey, or palette indices); masks saved as
0/255 can be mapped with ``mask_values={0: 0, 255: 1}``.

LiTS layout (Bilic et al. 2023): ``volume-N.nii`` CT volumes in Hounsfield units beside
``segmentation-N.nii`` label volumes (0 background, 1 liver, 2 tumour), ``.nii.gz`` accepted.
Volumes are cut into 2-D slices along an axis after intensity windowing. Reading NIfTI needs the
optional extra ``hkt-seg[nifti]`` (nibabel).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from hkt_core import ConfigError

IMAGE_SUFFIXES = (".png",)


def window(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Clip intensities to ``[low, high]`` and scale them linearly to ``[0, 1]`` (float32)."""
    if not high > low:
        raise ConfigError(f"intensity window ({low}, {high}) is invalid: the upper bound must exceed the lower")
    out = (np.clip(np.asarray(values, dtype=np.float64), low, high) - low) / (high - low)
    return out.astype(np.float32)


def _resize(array: np.ndarray, size: tuple[int, int], *, is_mask: bool) -> np.ndarray:
    from skimage.transform import resize

    if array.shape[-2:] == tuple(size):
        return array
    if is_mask:
        return resize(array, size, order=0, preserve_range=True, anti_aliasing=False).astype(array.dtype)
    return resize(array, (*array.shape[:-2], *size), order=1, preserve_range=True,
                  anti_aliasing=True).astype(np.float32)


def _size(size) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, int):
        size = (size, size)
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise ConfigError(f"size = {size!r} is invalid: a positive integer or [height, width]")
    return (int(size[0]), int(size[1]))


def _map_mask(mask: np.ndarray, mask_values: Mapping[int, int] | None, source: str) -> np.ndarray:
    if mask_values is None:
        return mask.astype(np.int64)
    lookup = {int(k): int(v) for k, v in mask_values.items()}
    present = np.unique(mask)
    unknown = [int(v) for v in present if int(v) not in lookup]
    if unknown:
        raise ConfigError(f"{source}: mask value(s) {unknown[:5]} are not in mask_values "
                          f"(which maps {sorted(lookup)})")
    out = np.zeros(mask.shape, dtype=np.int64)
    for value in present:
        out[mask == value] = lookup[int(value)]
    return out


def _check_classes(mask: np.ndarray, num_classes: int | None, ignore_index: int | None, source: str) -> None:
    if num_classes is None:
        return
    values = {int(v) for v in np.unique(mask)} - ({ignore_index} if ignore_index is not None else set())
    bad = sorted(v for v in values if not 0 <= v < num_classes)
    if bad:
        raise ConfigError(f"{source}: mask holds class value(s) {bad[:5]} but num_classes = {num_classes} "
                          f"(allowed 0..{num_classes - 1}"
                          + (f" and the ignore index {ignore_index})" if ignore_index is not None else ")")
                          + "; map them with mask_values")


def read_png_folder(root: str | Path, *, images: str = "images", masks: str = "masks", channels: int = 1,
                    size: int | Sequence[int] | None = None, mask_values: Mapping[int, int] | None = None,
                    num_classes: int | None = None, ignore_index: int | None = 255,
                    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read paired PNGs: images (N, channels, H, W) in [0, 1], masks (N, H, W) int64, and the stems."""
    from PIL import Image

    root = Path(root)
    image_dir, mask_dir = root / images, root / masks
    for folder in (image_dir, mask_dir):
        if not folder.is_dir():
            raise ConfigError(f"{folder}: no such folder; a PNG segmentation set needs "
                              f"{root}/{images}/*.png and {root}/{masks}/*.png paired by name")
    if channels not in (1, 3):
        raise ConfigError(f"channels = {channels!r} is invalid: 1 (grey) or 3 (RGB)")
    image_files = {p.stem: p for p in sorted(image_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    mask_files = {p.stem: p for p in sorted(mask_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    if not image_files:
        raise ConfigError(f"{image_dir}: no .png images")
    unpaired = sorted(set(image_files) ^ set(mask_files))
    if unpaired:
        raise ConfigError(f"{root}: image(s) and mask(s) must pair by name; unpaired: {', '.join(unpaired[:5])}")
    target = _size(size)
    xs, ys, stems = [], [], []
    for stem in sorted(image_files):
        with Image.open(image_files[stem]) as img:
            if img.mode.startswith("I") and channels == 1:  # 16-bit grey
                pixels = np.asarray(img).astype(np.float32) / 65535.0
            else:
                pixels = np.asarray(img.convert("RGB" if channels == 3 else "L")).astype(np.float32) / 255.0
        pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
        with Image.open(mask_files[stem]) as m:
            if m.mode not in ("L", "P", "I", "I;16", "1"):
                raise ConfigError(f"{mask_files[stem]}: mask mode {m.mode!r} is not a class-index image; "
                                  f"save masks as 8/16-bit grey or palette PNGs")
            mask = np.asarray(m).astype(np.int64)
        if mask.shape != pixels.shape[1:]:
            raise ConfigError(f"{stem}: image is {pixels.shape[1:]} but mask is {mask.shape}")
        mask = _map_mask(mask, mask_values, str(mask_files[stem]))
        _check_classes(mask, num_classes, ignore_index, str(mask_files[stem]))
        if target is not None:
            pixels, mask = _resize(pixels, target, is_mask=False), _resize(mask, target, is_mask=True)
        xs.append(pixels)
        ys.append(mask)
        stems.append(stem)
    shapes = {x.shape for x in xs}
    if len(shapes) > 1:
        raise ConfigError(f"{root}: images differ in size ({', '.join(str(s[1:]) for s in sorted(shapes)[:3])}); "
                          f"pass size=[height, width] to resize them")
    return np.stack(xs), np.stack(ys), stems


_LITS_VOLUME = re.compile(r"^volume-(\d+)\.nii(\.gz)?$")


def lits_cases(root: str | Path) -> dict[int, tuple[Path, Path]]:
    """Case number -> (volume path, segmentation path) for a LiTS-layout folder."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root}: no such folder; a LiTS set holds volume-N.nii and segmentation-N.nii")
    cases = {}
    for path in sorted(root.iterdir()):
        match = _LITS_VOLUME.match(path.name)
        if not match:
            continue
        number = int(match.group(1))
        candidates = [root / f"segmentation-{match.group(1)}.nii{ext}" for ext in ("", ".gz")]
        found = [c for c in candidates if c.exists()]
        if not found:
            raise ConfigError(f"{path}: no matching segmentation-{match.group(1)}.nii(.gz) beside it")
        cases[number] = (path, found[0])
    if not cases:
        raise ConfigError(f"{root}: no volume-N.nii files (LiTS layout: volume-N.nii + segmentation-N.nii)")
    return cases


def _nibabel():
    try:
        import nibabel
    except ImportError:
        raise ConfigError("reading NIfTI volumes needs nibabel: pip install 'hkt-seg[nifti]'") from None
    return nibabel


def read_lits_case(volume_path: Path, segmentation_path: Path, *, window_range: tuple[float, float] = (-100.0, 200.0),
                   axis: int = 2, size: int | Sequence[int] | None = None, merge_tumor: bool = True,
                   every: int = 1, foreground_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """One case as 2-D slices: images (S, 1, H, W) windowed to [0, 1], masks (S, H, W) int64.

    Slices are taken along ``axis`` of the stored array (2 is axial for LiTS), every ``every``-th,
    and transposed so rows run along the volume's second axis. ``merge_tumor`` folds tumour (2)
    into liver (1) for liver segmentation. ``foreground_only`` keeps slices with any label.
    """
    nib = _nibabel()
    if axis not in (0, 1, 2):
        raise ConfigError(f"axis = {axis!r} is invalid: 0, 1 or 2")
    if not isinstance(every, int) or every < 1:
        raise ConfigError(f"every = {every!r} is invalid: an integer >= 1")
    volume = np.asarray(nib.load(str(volume_path)).dataobj, dtype=np.float32)
    labels = np.asarray(nib.load(str(segmentation_path)).dataobj)
    if volume.ndim != 3 or volume.shape != labels.shape:
        raise ConfigError(f"{volume_path.name} has shape {volume.shape} but {segmentation_path.name} has "
                          f"{labels.shape}; both must be the same 3-D grid")
    if not np.allclose(labels, np.round(labels)):
        raise ConfigError(f"{segmentation_path}: labels must be integers (0 background, 1 liver, 2 tumour)")
    labels = np.round(labels).astype(np.int64)
    bad = sorted({int(v) for v in np.unique(labels)} - {0, 1, 2})
    if bad:
        raise ConfigError(f"{segmentation_path}: label value(s) {bad} are not LiTS labels (0, 1, 2)")
    if merge_tumor:
        labels = np.minimum(labels, 1)
    volume = window(volume, *window_range)
    images = np.moveaxis(volume, axis, 0)[::every].transpose(0, 2, 1)
    masks = np.moveaxis(labels, axis, 0)[::every].transpose(0, 2, 1)
    if foreground_only:
        keep = masks.reshape(masks.shape[0], -1).any(axis=1)
        images, masks = images[keep], masks[keep]
    target = _size(size)
    if target is not None and len(images):
        images = np.stack([_resize(s, target, is_mask=False) for s in images])
        masks = np.stack([_resize(s, target, is_mask=True) for s in masks])
    return np.ascontiguousarray(images[:, None]), np.ascontiguousarray(masks)
