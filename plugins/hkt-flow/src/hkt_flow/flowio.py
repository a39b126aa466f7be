"""Reading and writing the file formats of the optical-flow benchmarks.

- Middlebury ``.flo`` (FlyingChairs, Sintel): the float32 tag 202021.25 (bytes ``PIEH``), int32
  width, int32 height, then ``height*width*2`` float32 values (u, v interleaved, row-major), all
  little-endian.
- KITTI flow PNG (KITTI 2012/2015, HD1K): a 16-bit RGB PNG where R and G hold
  ``u*64 + 2**15`` and ``v*64 + 2**15`` and B is 1 where the flow is valid.
- Frames: ``.ppm`` / ``.png`` / ``.jpg`` read with Pillow as ``(H, W, 3)`` float32 in [0, 255].

Pillow cannot hold 16-bit RGB, so 16-bit PNGs go through the small codec below (zlib + the five
PNG row filters). A malformed file raises :class:`FlowFileError` naming the file and the fault.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from hkt_core import HKTError

FLO_TAG = 202021.25
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class FlowFileError(HKTError, ValueError):
    """A flow or image file is missing, truncated or not in the expected format."""


# --------------------------------------------------------------------------------------------
# .flo


def read_flo(path: str | Path) -> np.ndarray:
    """A ``.flo`` file as a float32 array ``(H, W, 2)``."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 12:
        raise FlowFileError(f"{path}: not a .flo file (only {len(data)} bytes; the header alone is 12)")
    tag, = struct.unpack("<f", data[:4])
    if tag != FLO_TAG:
        raise FlowFileError(f"{path}: not a .flo file (tag {data[:4]!r}, expected b'PIEH' = {FLO_TAG})")
    width, height = struct.unpack("<ii", data[4:12])
    if not (0 < width < 100_000 and 0 < height < 100_000):
        raise FlowFileError(f"{path}: invalid .flo size {width}x{height}")
    expected = 12 + 4 * 2 * width * height
    if len(data) != expected:
        raise FlowFileError(f"{path}: a {width}x{height} .flo file has {expected} bytes; this one has "
                            f"{len(data)} (truncated or padded)")
    return np.frombuffer(data, dtype="<f4", offset=12).reshape(height, width, 2).astype(np.float32)


def write_flo(path: str | Path, flow: np.ndarray) -> Path:
    """Write ``(H, W, 2)`` flow as a ``.flo`` file."""
    flow = np.asarray(flow, dtype="<f4")
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow must be (H, W, 2); got {flow.shape}")
    path = Path(path)
    height, width = flow.shape[:2]
    path.write_bytes(struct.pack("<f", FLO_TAG) + struct.pack("<ii", width, height) + flow.tobytes())
    return path


# --------------------------------------------------------------------------------------------
# 16-bit PNG


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _filter_row(kind: int, row: np.ndarray, prev: np.ndarray, bpp: int) -> np.ndarray:
    r = row.astype(np.int32)
    p = prev.astype(np.int32)
    left = np.concatenate([np.zeros(bpp, np.int32), r[:-bpp]])
    upleft = np.concatenate([np.zeros(bpp, np.int32), p[:-bpp]])
    if kind == 0:
        pred = np.zeros_like(r)
    elif kind == 1:
        pred = left
    elif kind == 2:
        pred = p
    elif kind == 3:
        pred = (left + p) // 2
    else:
        pred = np.array([_paeth(a, b, c) for a, b, c in zip(left, p, upleft)], np.int32)
    return ((r - pred) % 256).astype(np.uint8)


def write_png16(path: str | Path, image: np.ndarray, *, filter_type: int = 0) -> Path:
    """Write a uint16 ``(H, W)`` or ``(H, W, 3)`` array as a 16-bit PNG with one row filter.

    ``filter_type`` 0-4 (None, Sub, Up, Average, Paeth) is applied to every row; real files mix
    them, which :func:`read_png16` handles.
    """
    image = np.asarray(image)
    if image.dtype != np.uint16 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"expected a uint16 (H, W) or (H, W, 3) array; got {image.dtype} {image.shape}")
    if filter_type not in range(5):
        raise ValueError(f"filter_type = {filter_type!r}: one of 0 (None), 1 (Sub), 2 (Up), 3 (Average), 4 (Paeth)")
    height, width = image.shape[:2]
    channels = 1 if image.ndim == 2 else 3
    bpp = 2 * channels
    raw = image.astype(">u2").reshape(height, width * bpp // 2).view(np.uint8).reshape(height, width * bpp)
    rows, prev = [], np.zeros(width * bpp, np.uint8)
    for row in raw:
        rows.append(bytes([filter_type]) + _filter_row(filter_type, row, prev, bpp).tobytes())
        prev = row
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 0 if channels == 1 else 2, 0, 0, 0)
    payload = PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"".join(rows))) \
        + _chunk(b"IEND", b"")
    path = Path(path)
    path.write_bytes(payload)
    return path


def _unfilter(kind: int, line: np.ndarray, prev: np.ndarray, bpp: int, path: Path, y: int) -> np.ndarray:
    if kind == 0:
        return line
    if kind == 1:  # Sub: a running sum along each byte position of the pixel, mod 256
        out = line.reshape(-1, bpp).astype(np.int64).cumsum(axis=0) % 256
        return out.astype(np.uint8).reshape(-1)
    if kind == 2:
        return ((line.astype(np.int32) + prev) % 256).astype(np.uint8)
    if kind not in (3, 4):
        raise FlowFileError(f"{path}: row {y} has unknown PNG filter type {kind} (allowed 0-4)")
    out = bytearray(len(line))
    up = prev.tolist()
    for i, byte in enumerate(line.tolist()):
        a = out[i - bpp] if i >= bpp else 0
        if kind == 3:
            pred = (a + up[i]) // 2
        else:
            pred = _paeth(a, up[i], up[i - bpp] if i >= bpp else 0)
        out[i] = (byte + pred) & 0xFF
    return np.frombuffer(bytes(out), np.uint8)


def read_png16(path: str | Path) -> np.ndarray:
    """A 16-bit grey or RGB PNG (non-interlaced) as uint16 ``(H, W)`` or ``(H, W, 3)``."""
    path = Path(path)
    data = _read_bytes(path)
    if not data.startswith(PNG_SIGNATURE):
        raise FlowFileError(f"{path}: not a PNG file (missing the PNG signature)")
    pos, header, idat = 8, None, []
    while pos < len(data):
        if pos + 8 > len(data):
            raise FlowFileError(f"{path}: truncated PNG (chunk header cut at byte {pos})")
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        payload = data[pos + 8:pos + 8 + length]
        if len(payload) != length or pos + 12 + length > len(data):
            raise FlowFileError(f"{path}: truncated PNG ({kind.decode('latin1')} chunk cut short)")
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", payload)
        elif kind == b"IDAT":
            idat.append(payload)
        elif kind == b"IEND":
            break
        pos += 12 + length
    if header is None or not idat:
        raise FlowFileError(f"{path}: PNG without {'IHDR' if header is None else 'IDAT'} chunk")
    width, height, depth, colour, _, _, interlace = header
    if depth != 16 or colour not in (0, 2) or interlace:
        raise FlowFileError(f"{path}: expected a non-interlaced 16-bit grey or RGB PNG; this one has "
                            f"bit depth {depth}, colour type {colour}, interlace {interlace}")
    channels = 1 if colour == 0 else 3
    bpp = 2 * channels
    stride = width * bpp
    try:
        raw = zlib.decompress(b"".join(idat))
    except zlib.error as exc:
        raise FlowFileError(f"{path}: corrupt PNG image data ({exc})") from None
    if len(raw) != height * (stride + 1):
        raise FlowFileError(f"{path}: PNG image data has {len(raw)} bytes, expected {height * (stride + 1)} "
                            f"for {width}x{height}")
    rows = np.frombuffer(raw, np.uint8).reshape(height, stride + 1)
    out = np.empty((height, stride), np.uint8)
    prev = np.zeros(stride, np.uint8)
    for y in range(height):
        prev = out[y] = _unfilter(int(rows[y, 0]), rows[y, 1:], prev, bpp, path, y)
    image = out.view(">u2").astype(np.uint16).reshape(height, width, channels)
    return image[..., 0] if channels == 1 else image


# --------------------------------------------------------------------------------------------
# KITTI flow PNG


def read_kitti_flow(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """A KITTI flow PNG as ``(flow (H, W, 2) float32, valid (H, W) bool)``."""
    path = Path(path)
    image = read_png16(path)
    if image.ndim != 3:
        raise FlowFileError(f"{path}: a KITTI flow PNG is 16-bit RGB (u, v, valid); this one is grey")
    flow = (image[..., :2].astype(np.float32) - 2 ** 15) / 64.0
    valid = image[..., 2] > 0
    flow[~valid] = 0.0
    return flow, valid


def write_kitti_flow(path: str | Path, flow: np.ndarray, valid: np.ndarray | None = None) -> Path:
    """Write flow ``(H, W, 2)`` (and validity) as a KITTI flow PNG (values rounded to 1/64 px)."""
    flow = np.asarray(flow, np.float64)
    if valid is None:
        valid = np.ones(flow.shape[:2], bool)
    encoded = np.clip(np.round(flow * 64.0 + 2 ** 15), 0, 2 ** 16 - 1).astype(np.uint16)
    image = np.dstack([encoded, np.asarray(valid, np.uint16)])
    return write_png16(path, image)


# --------------------------------------------------------------------------------------------
# frames


def read_image(path: str | Path) -> np.ndarray:
    """A frame (``.ppm``, ``.png``, ``.jpg``, ...) as ``(H, W, 3)`` float32 in [0, 255]."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FlowFileError(f"{path}: no such file")
    try:
        with Image.open(path) as im:
            im.load()
            array = np.asarray(im.convert("RGB"), dtype=np.float32)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise FlowFileError(f"{path}: not a readable image ({exc})") from None
    return array


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise FlowFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise FlowFileError(f"{path}: is a directory, not a file") from None
