"""A synthetic texture-segmentation set with exact masks, built from scikit-image's bundled photos.

Each image is a crop of a background texture (grass or gravel) on which random shapes (ellipses,
rectangles, triangles) are pasted, each filled with the texture of its class: brick for class 1,
the cratered moon for class 2 (and further classes from the remaining photos). A shape's pixels
are written to the image and to the mask from the same coordinates, so masks are exact; a later
shape covers an earlier one in both. Per-region brightness and contrast jitter keep grey level
alone from identifying the class: the network has to see texture and shape.

Everything is generated from a seed: nothing is downloaded (the photos ship inside scikit-image).
"""

from __future__ import annotations

import functools

import numpy as np

from hkt_core import ConfigError

BACKGROUNDS = ("grass", "gravel")
#: class index -> bundled photo; class 0 is the background
CLASS_TEXTURES = ("brick", "moon", "camera", "coins")
SHAPES = ("ellipse", "rectangle", "triangle")


@functools.lru_cache(maxsize=None)
def texture(name: str, scale: float = 0.25) -> np.ndarray:
    """A bundled photo as float32 in [0, 1] (robustly stretched), downscaled by ``scale``."""
    import skimage.data
    from skimage.transform import rescale

    photo = getattr(skimage.data, name)().astype(np.float64)
    if photo.ndim == 3:
        photo = photo.mean(axis=2)
    photo = rescale(photo, scale, anti_aliasing=True, preserve_range=True)
    lo, hi = np.percentile(photo, (1, 99))
    return np.clip((photo - lo) / max(hi - lo, 1e-6), 0, 1).astype(np.float32)


def _crop(rng: np.random.Generator, source: np.ndarray, size: int) -> np.ndarray:
    h, w = source.shape
    if h < size or w < size:
        reps = (size // h + 1, size // w + 1)
        source = np.tile(source, reps)
        h, w = source.shape
    r = rng.integers(0, h - size + 1)
    c = rng.integers(0, w - size + 1)
    patch = source[r:r + size, c:c + size]
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    return patch


def _jitter(rng: np.random.Generator, patch: np.ndarray, amount: float) -> np.ndarray:
    gain = 1 + rng.uniform(-amount, amount)
    offset = rng.uniform(-amount, amount) / 2
    return (patch - patch.mean()) * gain + patch.mean() + offset


def _shape_pixels(rng: np.random.Generator, size: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    from skimage.draw import ellipse, polygon

    lo, hi = max(2, size // 10), max(3, size // 4)
    r, c = rng.uniform(size * 0.15, size * 0.85, 2)
    if kind == "ellipse":
        return ellipse(r, c, rng.uniform(lo, hi), rng.uniform(lo, hi), shape=(size, size),
                       rotation=rng.uniform(0, np.pi))
    if kind == "rectangle":
        a, b = rng.uniform(lo, hi, 2)
        angle = rng.uniform(0, np.pi)
        corners = np.array([[-a, -b], [-a, b], [a, b], [a, -b]])
    else:
        radius = rng.uniform(lo, hi) * 1.3
        angles = rng.uniform(0, 2 * np.pi) + np.array([0, 2 * np.pi / 3, 4 * np.pi / 3])
        corners = np.stack([np.cos(angles), np.sin(angles)], axis=1) * radius
        angle = 0.0
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    pts = corners @ rot.T + [r, c]
    return polygon(pts[:, 0], pts[:, 1], shape=(size, size))


def make_synthetic(count: int, *, size: int = 64, num_classes: int = 3, shapes: tuple[int, int] = (1, 4),
                   jitter: float = 0.25, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` images (N, 1, size, size) float32 and exact masks (N, size, size) int64."""
    if not isinstance(count, int) or count < 1:
        raise ConfigError(f"count = {count!r} is invalid: an integer >= 1")
    if not isinstance(size, int) or size < 16:
        raise ConfigError(f"size = {size!r} is invalid: an integer >= 16")
    if not isinstance(num_classes, int) or not 2 <= num_classes <= len(CLASS_TEXTURES) + 1:
        raise ConfigError(f"num_classes = {num_classes!r} is invalid: 2..{len(CLASS_TEXTURES) + 1} "
                          f"(background plus one bundled texture per class)")
    low, high = shapes
    if not (isinstance(low, int) and isinstance(high, int) and 1 <= low <= high):
        raise ConfigError(f"shapes = {shapes!r} is invalid: [min, max] shapes per image with 1 <= min <= max")
    rng = np.random.default_rng(seed)
    backgrounds = [texture(name) for name in BACKGROUNDS]
    fills = [texture(name) for name in CLASS_TEXTURES[:num_classes - 1]]
    images = np.empty((count, 1, size, size), dtype=np.float32)
    masks = np.zeros((count, size, size), dtype=np.int64)
    for n in range(count):
        image = _jitter(rng, _crop(rng, backgrounds[rng.integers(len(backgrounds))], size), jitter)
        mask = masks[n]
        for _ in range(rng.integers(low, high + 1)):
            cls = int(rng.integers(1, num_classes))
            rr, cc = _shape_pixels(rng, size, SHAPES[rng.integers(len(SHAPES))])
            fill = _jitter(rng, _crop(rng, fills[cls - 1], size), jitter)
            image[rr, cc] = fill[rr, cc]
            mask[rr, cc] = cls
        images[n, 0] = image
    return images, masks
