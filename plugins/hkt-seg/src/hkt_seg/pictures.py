"""Pictures of segmentations: masks blended over images, predictions beside the ground truth.

A sheet has one row per sample and three panels: the image, the ground-truth overlay and the
prediction overlay (each class a fixed colour; background left unpainted). Drawn with Pillow only,
so no plotting library is needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: class colours (RGB); class 0 is background and is not painted
PALETTE = np.array([
    (0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60),
], dtype=np.float32)


def to_rgb(image: np.ndarray) -> np.ndarray:
    """(C, H, W) or (H, W) floats -> (H, W, 3) uint8, stretched from min..max to 0..255."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3:
        image = image[0] if image.shape[0] == 1 else image[:3].transpose(1, 2, 0)
    lo, hi = float(image.min()), float(image.max())
    scaled = (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)
    if scaled.ndim == 2:
        scaled = np.repeat(scaled[..., None], 3, axis=2)
    return (scaled * 255).round().astype(np.uint8)


def overlay(image: np.ndarray, mask: np.ndarray, *, alpha: float = 0.5,
            ignore_index: int | None = 255) -> np.ndarray:
    """Blend class colours of ``mask`` (H, W) over ``image``; ignored pixels are shown grey."""
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha = {alpha!r} is invalid: a number in [0, 1]")
    rgb = to_rgb(image).astype(np.float32)
    mask = np.asarray(mask)
    if mask.shape != rgb.shape[:2]:
        raise ValueError(f"mask of shape {mask.shape} does not match image of size {rgb.shape[:2]}")
    out = rgb.copy()
    ignored = (mask == ignore_index) if ignore_index is not None else np.zeros(mask.shape, bool)
    for cls in np.unique(mask[~ignored]):
        if cls == 0:
            continue
        where = mask == cls
        out[where] = (1 - alpha) * rgb[where] + alpha * PALETTE[int(cls) % len(PALETTE) or 1]
    out[ignored] = 0.5 * rgb[ignored] + 0.5 * 128
    return out.round().astype(np.uint8)


def comparison_sheet(images: Sequence[np.ndarray], truths: Sequence[np.ndarray],
                     predictions: Sequence[np.ndarray], *, scale: int = 4, gap: int = 4,
                     ignore_index: int | None = 255) -> np.ndarray:
    """Rows of [image | ground truth | prediction] as one (H, W, 3) uint8 array."""
    if not (len(images) == len(truths) == len(predictions)) or not len(images):
        raise ValueError(f"need the same non-zero number of images, truths and predictions, got "
                         f"{len(images)}, {len(truths)}, {len(predictions)}")
    rows = []
    for image, truth, pred in zip(images, truths, predictions):
        panels = [to_rgb(image), overlay(image, truth, ignore_index=ignore_index),
                  overlay(image, pred, ignore_index=None)]
        panels = [np.kron(p, np.ones((scale, scale, 1), dtype=np.uint8)) for p in panels]
        h = panels[0].shape[0]
        spacer = np.full((h, gap, 3), 255, np.uint8)
        rows.append(np.concatenate([panels[0], spacer, panels[1], spacer, panels[2]], axis=1))
    width = rows[0].shape[1]
    spacer = np.full((gap, width, 3), 255, np.uint8)
    out = []
    for i, row in enumerate(rows):
        out += [row] if i == 0 else [spacer, row]
    return np.concatenate(out, axis=0)


def save_png(array: np.ndarray, path: str | Path) -> Path:
    """Write an (H, W, 3) uint8 array as PNG atomically."""
    from PIL import Image

    from hkt_core import atomic_write

    return atomic_write(path, lambda p: Image.fromarray(array).save(p, format="PNG"))
