"""Flow fields as pictures: the Middlebury colour wheel, error maps and side-by-side panels.

Colour coding (Baker et al. 2011): hue is the direction of motion, saturation its length
relative to ``max_flow`` (the largest valid length in the panel, so prediction and ground truth
share one scale). Error maps show the end-point error from black (0) through red and yellow to
white (``max_error`` and above); invalid pixels are dark blue.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hkt_core import atomic_write


def colour_wheel() -> np.ndarray:
    """The 55 colours of the Middlebury wheel, ``(55, 3)`` in [0, 255]."""
    segments = ((15, (255, 0, 0), (255, 255, 0)), (6, (255, 255, 0), (0, 255, 0)),
                (4, (0, 255, 0), (0, 255, 255)), (11, (0, 255, 255), (0, 0, 255)),
                (13, (0, 0, 255), (255, 0, 255)), (6, (255, 0, 255), (255, 0, 0)))
    rows = []
    for n, start, end in segments:
        t = np.arange(n)[:, None] / n
        rows.append((1 - t) * np.array(start) + t * np.array(end))
    return np.concatenate(rows)


def flow_to_colour(flow: np.ndarray, max_flow: float | None = None, valid: np.ndarray | None = None) -> np.ndarray:
    """``(H, W, 2)`` flow to ``(H, W, 3)`` uint8 colours; ``max_flow`` sets full saturation."""
    flow = np.asarray(flow, np.float64)
    u, v = flow[..., 0], flow[..., 1]
    magnitude = np.hypot(u, v)
    if max_flow is None:
        scope = magnitude if valid is None else magnitude[valid.astype(bool)]
        max_flow = float(scope.max()) if scope.size else 1.0
    radius = magnitude / max(max_flow, 1e-9)
    wheel = colour_wheel() / 255.0
    n = len(wheel)
    angle = np.arctan2(-v, -u) / np.pi  # in [-1, 1]
    position = (angle + 1) / 2 * (n - 1)
    k0 = np.floor(position).astype(int)
    k1 = (k0 + 1) % n
    f = (position - k0)[..., None]
    colour = (1 - f) * wheel[k0] + f * wheel[k1]
    r = radius[..., None]
    inside = r <= 1
    colour = np.where(inside, 1 - r * (1 - colour), colour * 0.75)
    image = np.round(255 * colour).astype(np.uint8)
    if valid is not None:
        image[~valid.astype(bool)] = 0
    return image


def error_to_colour(error: np.ndarray, max_error: float = 5.0, valid: np.ndarray | None = None) -> np.ndarray:
    """End-point error ``(H, W)`` to a black-red-yellow-white ramp ``(H, W, 3)`` uint8."""
    t = np.clip(np.asarray(error, np.float64) / max_error, 0, 1)
    anchors = np.array([[0, 0, 0], [200, 0, 0], [255, 200, 0], [255, 255, 255]], np.float64)
    x = t * (len(anchors) - 1)
    i = np.minimum(np.floor(x).astype(int), len(anchors) - 2)
    f = (x - i)[..., None]
    image = np.round((1 - f) * anchors[i] + f * anchors[i + 1]).astype(np.uint8)
    if valid is not None:
        image[~valid.astype(bool)] = (20, 20, 70)
    return image


def comparison_panel(image1: np.ndarray, flow_true: np.ndarray, flow_pred: np.ndarray,
                     valid: np.ndarray | None = None, max_error: float = 5.0) -> np.ndarray:
    """One row ``[frame 1 | ground truth | prediction | error]`` as ``(H, 4W + 6, 3)`` uint8."""
    valid = np.ones(flow_true.shape[:2], bool) if valid is None else valid.astype(bool)
    magnitude = np.hypot(flow_true[..., 0], flow_true[..., 1])
    max_flow = float(magnitude[valid].max()) if valid.any() else 1.0
    error = np.hypot(*(flow_pred - flow_true).transpose(2, 0, 1))
    tiles = [np.clip(image1, 0, 255).astype(np.uint8), flow_to_colour(flow_true, max_flow, valid),
             flow_to_colour(flow_pred, max_flow), error_to_colour(error, max_error, valid)]
    gap = np.full((flow_true.shape[0], 2, 3), 255, np.uint8)
    row = [tiles[0]]
    for tile in tiles[1:]:
        row += [gap, tile]
    return np.concatenate(row, axis=1)


def save_panels(path: str | Path, rows: Sequence[np.ndarray], titles: Sequence[str] = (),
                scale: int = 1) -> Path:
    """Stack panel rows vertically (with a caption line on top) and write a PNG atomically."""
    from PIL import Image, ImageDraw

    width = max(r.shape[1] for r in rows)
    padded = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    grid = np.concatenate(padded, axis=0)
    image = Image.fromarray(grid)
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    if titles:
        caption = Image.new("RGB", (image.width, 14 * len(titles) + 4), (255, 255, 255))
        draw = ImageDraw.Draw(caption)
        for i, line in enumerate(titles):
            draw.text((3, 2 + 14 * i), line, fill=(0, 0, 0))
        canvas = Image.new("RGB", (image.width, image.height + caption.height), (255, 255, 255))
        canvas.paste(caption, (0, 0))
        canvas.paste(image, (0, caption.height))
        image = canvas
    return atomic_write(path, lambda p: image.save(p, format="PNG"))
