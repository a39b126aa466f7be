"""Synthetic flow from real photos, with exact ground truth and occlusion masks.

Each pair is rendered from scikit-image's bundled photos (nothing is downloaded):

- a *background* photo moves by a smooth warp ``T_bg(x) = x + F_bg(x)``: a global affine motion
  (rotation, zoom, translation about the centre) plus a local deformation (a sum of Gaussian
  bumps);
- a *foreground* object (an ellipse cut from another photo) moves on top of it by its own affine
  motion ``T_fg``, so part of the background is covered or uncovered: real occlusions.

Frame 1 samples the photos on the pixel grid; frame 2 samples them at ``T^-1(y)`` for every pixel
``y`` (the affine is inverted in closed form, the background warp by fixed-point iteration, which
converges because the warp's Jacobian stays well below 1). So ``frame2(x + F(x)) = frame1(x)``
holds by construction and the flow ``F`` is exact up to bilinear interpolation of the photos.

A frame-1 pixel is *occluded* when its destination leaves the frame or lands under the object in
frame 2. Training and test pairs come from disjoint photos, so the test split measures
generalisation to unseen textures.
"""

from __future__ import annotations

import functools
from typing import Any

import attrs
import numpy as np
import torch
from scipy import ndimage
from torch.utils.data import Dataset

from hkt_core import ConfigError

from .target import make_target

TRAIN_PHOTOS = ("astronaut", "coffee", "chelsea", "immunohistochemistry", "brick", "grass", "gravel",
                "camera", "moon")
TEST_PHOTOS = ("rocket", "hubble_deep_field", "coins", "clock")


@functools.lru_cache(maxsize=None)
def photo(name: str) -> np.ndarray:
    """A bundled scikit-image photo as float64 ``(H, W, 3)`` in [0, 255] (grey images replicated)."""
    import skimage.data

    image = np.asarray(getattr(skimage.data, name)(), dtype=np.float64)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3])


def _sample(image: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Bilinear samples of an ``(H, W, 3)`` image at float positions (edges clamped)."""
    coords = np.stack([ys.ravel(), xs.ravel()])
    channels = [ndimage.map_coordinates(image[..., c], coords, order=1, mode="nearest")
                for c in range(image.shape[2])]
    return np.stack(channels, axis=-1).reshape(*ys.shape, image.shape[2])


@attrs.frozen
class FlowPair:
    """One rendered pair: frames ``(H, W, 3)`` float32 [0, 255], flow ``(H, W, 2)``, masks ``(H, W)``."""

    image1: np.ndarray
    image2: np.ndarray
    flow: np.ndarray
    occluded: np.ndarray
    foreground: np.ndarray


def _affine(rng: np.random.Generator, max_rotation: float, max_zoom: float) -> np.ndarray:
    angle = np.deg2rad(rng.uniform(-max_rotation, max_rotation))
    zoom = 1 + rng.uniform(-max_zoom, max_zoom)
    c, s = np.cos(angle), np.sin(angle)
    return zoom * np.array([[c, -s], [s, c]])


def render_pair(rng: np.random.Generator, size: tuple[int, int], photos: tuple[str, ...],
                max_motion: float = 6.0, bumps: int = 4) -> FlowPair:
    """Render one pair of ``size = (H, W)`` with motions up to about ``max_motion`` pixels."""
    height, width = size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    centre = np.array([(width - 1) / 2, (height - 1) / 2])
    bg_name, fg_name = rng.choice(len(photos), size=2, replace=len(photos) < 2)
    bg, fg = photo(photos[bg_name]), photo(photos[fg_name])
    margin = 3 * max_motion + 2
    zoom_bg = rng.uniform(0.5, 1.0)  # photo pixels per frame pixel: varied texture scale

    def origin(image: np.ndarray, zoom: float) -> np.ndarray:
        span = np.array([width, height]) * zoom + 2 * margin
        room = np.maximum(np.array([image.shape[1], image.shape[0]]) - span, 0)
        return rng.uniform(0, 1, 2) * room + margin

    bg_origin, fg_origin = origin(bg, zoom_bg), origin(fg, 1.0)
    texture_bg = lambda x, y: _sample(bg, bg_origin[1] + zoom_bg * y, bg_origin[0] + zoom_bg * x)  # noqa: E731
    texture_fg = lambda x, y: _sample(fg, fg_origin[1] + y, fg_origin[0] + x)  # noqa: E731

    # background warp: affine about the centre + Gaussian bumps
    a_bg = _affine(rng, 4.0, 0.05)
    t_bg = rng.uniform(-0.6, 0.6, 2) * max_motion
    bump_centres = rng.uniform(0, 1, (bumps, 2)) * [width, height]
    bump_sigma = rng.uniform(0.2, 0.35, bumps) * min(height, width)
    bump_amp = rng.uniform(-0.25, 0.25, (bumps, 2)) * max_motion

    def bg_flow(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dx, dy = x - centre[0], y - centre[1]
        u = (a_bg[0, 0] - 1) * dx + a_bg[0, 1] * dy + t_bg[0]
        v = a_bg[1, 0] * dx + (a_bg[1, 1] - 1) * dy + t_bg[1]
        for (cx, cy), s, (au, av) in zip(bump_centres, bump_sigma, bump_amp):
            g = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * s * s))
            u, v = u + au * g, v + av * g
        return u, v

    # foreground object: an ellipse moving by its own affine motion
    radii = rng.uniform(0.15, 0.3, 2) * [width, height]
    obj_centre = rng.uniform(0.3, 0.7, 2) * [width - 1, height - 1]
    a_fg = _affine(rng, 8.0, 0.08)
    t_fg = rng.uniform(-1, 1, 2) * max_motion
    a_fg_inv = np.linalg.inv(a_fg)

    def inside(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return ((x - obj_centre[0]) / radii[0]) ** 2 + ((y - obj_centre[1]) / radii[1]) ** 2 <= 1.0

    def fg_forward(x, y):
        dx, dy = x - obj_centre[0], y - obj_centre[1]
        return (a_fg[0, 0] * dx + a_fg[0, 1] * dy + obj_centre[0] + t_fg[0],
                a_fg[1, 0] * dx + a_fg[1, 1] * dy + obj_centre[1] + t_fg[1])

    def fg_inverse(x, y):
        dx, dy = x - obj_centre[0] - t_fg[0], y - obj_centre[1] - t_fg[1]
        return (a_fg_inv[0, 0] * dx + a_fg_inv[0, 1] * dy + obj_centre[0],
                a_fg_inv[1, 0] * dx + a_fg_inv[1, 1] * dy + obj_centre[1])

    # frame 1
    mask1 = inside(xs, ys)
    image1 = np.where(mask1[..., None], texture_fg(xs, ys), texture_bg(xs, ys))
    u_bg, v_bg = bg_flow(xs, ys)
    fx, fy = fg_forward(xs, ys)
    flow = np.stack([np.where(mask1, fx - xs, u_bg), np.where(mask1, fy - ys, v_bg)], axis=-1)

    # frame 2: invert the background warp by fixed-point iteration, the object's affine exactly
    bx, by = xs.copy(), ys.copy()
    for _ in range(50):
        u, v = bg_flow(bx, by)
        nx, ny = xs - u, ys - v
        step = max(np.abs(nx - bx).max(), np.abs(ny - by).max())
        bx, by = nx, ny
        if step < 1e-9:
            break
    ox, oy = fg_inverse(xs, ys)
    mask2 = inside(ox, oy)
    image2 = np.where(mask2[..., None], texture_fg(ox, oy), texture_bg(bx, by))

    # occlusion: destination out of frame, or a background pixel landing under the object
    tx, ty = xs + flow[..., 0], ys + flow[..., 1]
    out_of_frame = (tx < 0) | (tx > width - 1) | (ty < 0) | (ty > height - 1)
    gx, gy = fg_inverse(tx, ty)
    covered = ~mask1 & inside(gx, gy)
    return FlowPair(image1.astype(np.float32), image2.astype(np.float32), flow.astype(np.float32),
                    out_of_frame | covered, mask1)


VALID_MODES = ("all", "visible")


class SyntheticFlow(Dataset):
    """``length`` rendered pairs; sample ``i`` is the same on every call (seeded by ``(seed, i)``).

    Items are ``((image1, image2), target)``: frames ``(3, H, W)`` float32 in [0, 255] and the
    target ``(flow (2, H, W), valid (H, W) bool)`` (:mod:`hkt_flow.target`). ``valid="all"`` marks
    every pixel valid (the flow is exact everywhere, as in FlyingChairs); ``"visible"`` excludes
    occluded pixels. :meth:`pair` returns the full record with the occlusion mask. Rendered
    samples are kept in memory (``cache=True``, about 80 kB per 64x64 pair) because rendering
    costs as much as a training step of the demo models.
    """

    def __init__(self, length: int, *, size: tuple[int, int] = (64, 64), max_motion: float = 6.0,
                 seed: int = 0, photos: tuple[str, ...] = TRAIN_PHOTOS, valid: str = "all",
                 cache: bool = True) -> None:
        size = tuple(int(s) for s in size)
        if length < 1:
            raise ConfigError(f"length = {length!r}: give at least 1 pair")
        if len(size) != 2 or any(s < 16 or s % 8 for s in size):
            raise ConfigError(f"size = {size!r}: give (H, W), both multiples of 8 and at least 16")
        if not max_motion > 0:
            raise ConfigError(f"max_motion = {max_motion!r}: give a positive number of pixels")
        if valid not in VALID_MODES:
            raise ConfigError(f"valid = {valid!r}: one of {', '.join(VALID_MODES)}")
        self.length, self.size, self.max_motion = length, size, float(max_motion)
        self.seed, self.photos, self.valid = seed, tuple(photos), valid
        self._cache: dict[int, Any] | None = {} if cache else None

    def __len__(self) -> int:
        return self.length

    def pair(self, index: int) -> FlowPair:
        if not 0 <= index < self.length:
            raise IndexError(f"pair {index} out of range (0..{self.length - 1})")
        rng = np.random.default_rng([self.seed, index])
        return render_pair(rng, self.size, self.photos, self.max_motion)

    def __getitem__(self, index: int):
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        p = self.pair(index)
        sample = to_sample(p.image1, p.image2, p.flow, None if self.valid == "all" else ~p.occluded)
        if self._cache is not None:
            self._cache[index] = sample
        return sample


def to_sample(image1: np.ndarray, image2: np.ndarray, flow: np.ndarray, valid: np.ndarray | None):
    """``((image1, image2), target)`` tensors from ``(H, W, C)`` arrays."""
    frame = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1), dtype=np.float32))  # noqa: E731
    mask = None if valid is None else torch.from_numpy(np.asarray(valid, bool))
    return (frame(image1), frame(image2)), make_target(frame(flow), mask)


def synthetic_bundle(train_size: int = 512, test_size: int = 64, size: tuple[int, int] | list[int] = (64, 64),
                     max_motion: float = 6.0, seed: int = 0, valid: str = "all",
                     augment: bool = True) -> Any:
    """The ``flow-synthetic`` data set: training pairs from some photos, test pairs from others."""
    from hkt_core import DatasetBundle

    from .augment import FlowAugmentation

    size = tuple(size)
    train = SyntheticFlow(train_size, size=size, max_motion=max_motion, seed=seed, valid=valid)
    test = SyntheticFlow(test_size, size=size, max_motion=max_motion, seed=seed + 1_000_003,
                         photos=TEST_PHOTOS, valid=valid)
    shape = (3, *size)
    info = {"task": "flow", "target": "(flow (2, H, W): u, v in pixels, valid (H, W) bool)",
            "pixel_range": [0, 255], "max_motion": max_motion, "train_photos": list(TRAIN_PHOTOS),
            "test_photos": list(TEST_PHOTOS)}
    return DatasetBundle(train=train, test=test, input_shapes=(shape, shape), info=info,
                         augment=FlowAugmentation() if augment else None)
