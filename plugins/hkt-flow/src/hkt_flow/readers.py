"""Data sets of the optical-flow benchmarks, read from a user's directory (nothing is downloaded).

Expected layouts (the ones the data sets unpack to):

- FlyingChairs: ``ROOT/data/NNNNN_img1.ppm``, ``NNNNN_img2.ppm``, ``NNNNN_flow.flo`` (``data/``
  may be omitted); the split file ``ROOT/FlyingChairs_train_val.txt`` (one line per pair, 1 =
  train, 2 = validation) is used when present.
- MPI-Sintel: ``ROOT/training/{clean,final}/SCENE/frame_NNNN.png`` and
  ``ROOT/training/flow/SCENE/frame_NNNN.flo`` (flow from frame N to N+1); the optional
  ``ROOT/training/invalid/SCENE/frame_NNNN.png`` masks invalid pixels.
- KITTI 2015: ``ROOT/training/image_2/NNNNNN_10.png``, ``NNNNNN_11.png`` and
  ``ROOT/training/flow_occ/NNNNNN_10.png``.
- HD1K: ``ROOT/hd1k_input/image_2/SSSSSS_FFFF.png`` and ``ROOT/hd1k_flow_gt/flow_occ/SSSSSS_FFFF.png``
  (flow FFFF of sequence SSSSSS pairs frames FFFF and the next one).

Items are ``((image1, image2), target)`` as everywhere in this plugin (:mod:`hkt_flow.target`).
``crop=(H, W)`` cuts a centred window (multiples of 8, so RAFT can take it and frames of one
data set batch together); without it the frames keep their size.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from hkt_core import ConfigError

from .flowio import FlowFileError, read_flo, read_image, read_kitti_flow
from .synthetic import to_sample

#: Sintel and FlyingChairs mark unknown flow with huge values; RAFT's threshold.
INVALID_FLOW = 1000.0


class FlowFolder(Dataset):
    """Pairs of frame files and a flow file each; subclasses find them and read the flow."""

    name = "flow folder"

    def __init__(self, samples: list[tuple[Path, Path, Path]], crop: tuple[int, int] | None = None) -> None:
        if crop is not None:
            crop = tuple(int(c) for c in crop)
            if len(crop) != 2 or any(c < 8 or c % 8 for c in crop):
                raise ConfigError(f"crop = {crop!r}: give (H, W), multiples of 8")
        self.samples = samples
        self.crop = crop

    def __len__(self) -> int:
        return len(self.samples)

    def read_flow(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def __getitem__(self, index: int):
        first, second, flow_path = self.samples[index]
        image1, image2 = read_image(first), read_image(second)
        flow, valid = self.read_flow(flow_path)
        if image1.shape != image2.shape or image1.shape[:2] != flow.shape[:2]:
            raise FlowFileError(f"{flow_path}: flow of size {flow.shape[:2]} does not match frames {first.name} "
                                f"{image1.shape[:2]} and {second.name} {image2.shape[:2]}")
        if self.crop is not None:
            h, w = self.crop
            height, width = flow.shape[:2]
            if h > height or w > width:
                raise FlowFileError(f"{first}: frames of {height}x{width} are smaller than crop {h}x{w}")
            y0, x0 = (height - h) // 2, (width - w) // 2
            window = (slice(y0, y0 + h), slice(x0, x0 + w))
            image1, image2, flow, valid = image1[window], image2[window], flow[window], valid[window]
        return to_sample(image1, image2, flow, valid)


def _dense_valid(flow: np.ndarray) -> np.ndarray:
    return np.isfinite(flow).all(axis=-1) & (np.abs(flow) < INVALID_FLOW).all(axis=-1)


def _require(samples: list, what: str, root: Path, layout: str) -> list:
    if not samples:
        raise FlowFileError(f"no {what} pairs under {root}: expected {layout}")
    return samples


class FlyingChairs(FlowFolder):
    """FlyingChairs (.ppm frames + .flo flow). ``split``: train, validation or all."""

    name = "FlyingChairs"

    def __init__(self, root: str | Path, split: str = "train", crop: tuple[int, int] | None = None) -> None:
        root = Path(root)
        data = root / "data" if (root / "data").is_dir() else root
        flows = sorted(data.glob("*_flow.flo"))
        samples = []
        for flow in flows:
            stem = flow.name[: -len("_flow.flo")]
            first, second = data / f"{stem}_img1.ppm", data / f"{stem}_img2.ppm"
            if not first.is_file() or not second.is_file():
                raise FlowFileError(f"{flow}: its frames {first.name} and {second.name} are missing")
            samples.append((first, second, flow))
        _require(samples, "FlyingChairs", root, "ROOT/data/NNNNN_img1.ppm, NNNNN_img2.ppm, NNNNN_flow.flo")
        if split not in ("train", "validation", "all"):
            raise ConfigError(f"split = {split!r}: one of train, validation, all")
        split_file = root / "FlyingChairs_train_val.txt"
        if split != "all" and split_file.is_file():
            labels = split_file.read_text().split()
            if len(labels) != len(samples) or set(labels) - {"1", "2"}:
                raise FlowFileError(f"{split_file}: expected {len(samples)} lines of 1 (train) or 2 "
                                    f"(validation), found {len(labels)} lines")
            keep = "1" if split == "train" else "2"
            samples = [s for s, label in zip(samples, labels) if label == keep]
        super().__init__(samples, crop)

    def read_flow(self, path):
        flow = read_flo(path)
        return flow, _dense_valid(flow)


class Sintel(FlowFolder):
    """MPI-Sintel training pairs of one pass (``clean`` or ``final``)."""

    name = "Sintel"

    def __init__(self, root: str | Path, dstype: str = "clean", crop: tuple[int, int] | None = None) -> None:
        if dstype not in ("clean", "final"):
            raise ConfigError(f"dstype = {dstype!r}: one of clean, final")
        root = Path(root)
        base = root / "training"
        samples = []
        for flow in sorted((base / "flow").glob("*/frame_*.flo")):
            number = int(re.fullmatch(r"frame_(\d+)\.flo", flow.name).group(1))
            scene = base / dstype / flow.parent.name
            first, second = scene / f"frame_{number:04d}.png", scene / f"frame_{number + 1:04d}.png"
            if not first.is_file() or not second.is_file():
                raise FlowFileError(f"{flow}: its frames {first} and {second} are missing")
            samples.append((first, second, flow))
        _require(samples, f"Sintel ({dstype})", root,
                 f"ROOT/training/{dstype}/SCENE/frame_NNNN.png and ROOT/training/flow/SCENE/frame_NNNN.flo")
        self.root = root
        super().__init__(samples, crop)

    def read_flow(self, path):
        flow = read_flo(path)
        valid = _dense_valid(flow)
        invalid = self.root / "training" / "invalid" / path.parent.name / path.with_suffix(".png").name
        if invalid.is_file():
            mask = read_image(invalid)[..., 0] > 127
            if mask.shape != valid.shape:
                raise FlowFileError(f"{invalid}: mask of size {mask.shape} does not match flow {valid.shape}")
            valid &= ~mask
        return flow, valid


class KITTI(FlowFolder):
    """KITTI 2015 training pairs with their sparse 16-bit PNG flow (``flow_occ``)."""

    name = "KITTI 2015"

    def __init__(self, root: str | Path, crop: tuple[int, int] | None = None) -> None:
        root = Path(root)
        base = root / "training"
        samples = []
        for flow in sorted((base / "flow_occ").glob("*_10.png")):
            stem = flow.name[: -len("_10.png")]
            first, second = base / "image_2" / f"{stem}_10.png", base / "image_2" / f"{stem}_11.png"
            if not first.is_file() or not second.is_file():
                raise FlowFileError(f"{flow}: its frames {first} and {second} are missing")
            samples.append((first, second, flow))
        _require(samples, "KITTI", root, "ROOT/training/image_2/NNNNNN_10.png, NNNNNN_11.png and "
                                         "ROOT/training/flow_occ/NNNNNN_10.png")
        super().__init__(samples, crop)

    def read_flow(self, path):
        return read_kitti_flow(path)


class HD1K(FlowFolder):
    """HD1K pairs (KITTI-format flow PNGs), consecutive frames of each sequence."""

    name = "HD1K"

    def __init__(self, root: str | Path, crop: tuple[int, int] | None = None) -> None:
        root = Path(root)
        flows_dir, images_dir = root / "hd1k_flow_gt" / "flow_occ", root / "hd1k_input" / "image_2"
        samples = []
        sequences = sorted({p.name.split("_")[0] for p in flows_dir.glob("*_*.png")})
        for seq in sequences:
            flows = sorted(flows_dir.glob(f"{seq}_*.png"))
            images = sorted(images_dir.glob(f"{seq}_*.png"))
            for i, flow in enumerate(flows[:-1] if len(images) == len(flows) else flows):
                if i + 1 >= len(images):
                    raise FlowFileError(f"{flow}: sequence {seq} has {len(images)} frames in {images_dir}, "
                                        f"too few for {len(flows)} flow files")
                samples.append((images[i], images[i + 1], flow))
        _require(samples, "HD1K", root, "ROOT/hd1k_input/image_2/SSSSSS_FFFF.png and "
                                        "ROOT/hd1k_flow_gt/flow_occ/SSSSSS_FFFF.png")
        super().__init__(samples, crop)

    def read_flow(self, path):
        return read_kitti_flow(path)
