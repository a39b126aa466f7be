"""CIFAR-10 read from a user's directory: the standard binary batches, or the python batches.

Binary (``cifar-10-batches-bin``): ``data_batch_1.bin`` ... ``data_batch_5.bin`` and
``test_batch.bin``, each a run of 3,073-byte records (one label byte, then 1,024 red, 1,024 green
and 1,024 blue bytes, row-major 32x32), with the class names in ``batches.meta.txt``.

Python (``cifar-10-batches-py``): the same batches as pickled dicts. They are read with a
restricted unpickler that rebuilds only plain containers, bytes, numbers and numpy arrays and
refuses every other global, so a crafted file cannot run code.

Nothing is downloaded: get the data from https://www.cs.toronto.edu/~kriz/cifar.html and pass
its folder as ``root`` (default ``$HKT_HOME/data/cifar10``).
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import torch

from hkt_core import DatasetBundle

from .arrays import ArrayDataset
from .augment import RandomCropFlip
from .errors import DatasetError

TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
RECORD = 1 + 3 * 32 * 32
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
#: per-channel statistics of the 50,000 training images (scaled to [0, 1])
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)

EXPECTED = ("a folder holding cifar-10-batches-bin/ (data_batch_1.bin ... data_batch_5.bin, test_batch.bin) "
            "or cifar-10-batches-py/ (data_batch_1 ... data_batch_5, test_batch), or one of those folders "
            "itself; get 'CIFAR-10 binary version' from https://www.cs.toronto.edu/~kriz/cifar.html and "
            "extract it there")


def default_root() -> Path:
    from hkt_core import hkt_home

    return hkt_home() / "data" / "cifar10"


def locate(root: str | Path) -> tuple[Path, str]:
    """The batch folder under ``root`` and its format, ``"bin"`` or ``"py"``."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"cifar10: data directory {root} does not exist; expected {EXPECTED}")
    for folder in (root / "cifar-10-batches-bin", root):
        if (folder / "data_batch_1.bin").exists() or (folder / "test_batch.bin").exists():
            return folder, "bin"
    for folder in (root / "cifar-10-batches-py", root):
        if (folder / "data_batch_1").exists() or (folder / "test_batch").exists():
            return folder, "py"
    found = sorted(p.name for p in root.iterdir())[:10]
    raise DatasetError(f"cifar10: {root} holds no CIFAR-10 batches (found: {', '.join(found) or 'nothing'}); "
                       f"expected {EXPECTED}")


def read_records(path: Path, record: int, name: str, layout: str, expected: str) -> np.ndarray:
    """The ``(N, record)`` uint8 records of a CIFAR binary file (``name``: the data set, ``layout``:
    what a record holds, both for the messages)."""
    if not path.is_file():
        raise DatasetError(f"{name.lower().replace('-', '')}: missing batch file {path}; expected {expected}")
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % record:
        raise DatasetError(f"{name.lower().replace('-', '')}: {path} has {raw.size} bytes, not a positive multiple of the "
                           f"{record}-byte record ({layout}): not a {name} binary file")
    return raw.reshape(-1, record)


def read_binary_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 3, 32, 32)`` uint8 and labels ``(N,)`` int64 of one binary batch file."""
    records = read_records(path, RECORD, "CIFAR-10", "1 label byte + 3x32x32 pixel bytes", EXPECTED)
    labels = records[:, 0].astype(np.int64)
    _check_labels(labels, path)
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


class RestrictedUnpickler(pickle.Unpickler):
    """Rebuilds plain containers, bytes, numbers and numpy arrays; refuses any other global."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 rebuild bytes
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}: a CIFAR-10 python batch "
                                     f"holds only plain containers, bytes and numpy arrays")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refusing a persistent reference: not a CIFAR-10 python batch")


def restricted_load(data: bytes):
    """Unpickle ``data`` with :class:`RestrictedUnpickler` (bytes keys kept as in the originals)."""
    return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()


def read_python_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 3, 32, 32)`` uint8 and labels ``(N,)`` int64 of one python-format batch file."""
    if not path.is_file():
        raise DatasetError(f"cifar10: missing batch file {path}; expected {EXPECTED}")
    try:
        batch = restricted_load(path.read_bytes())
    except Exception as exc:  # any unpickling failure means the file is not a CIFAR batch
        raise DatasetError(f"cifar10: cannot read {path} as a CIFAR-10 python batch ({exc})") from None
    if not isinstance(batch, dict):
        raise DatasetError(f"cifar10: {path} holds a {type(batch).__name__}, expected a dict with data and labels")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or labels is None:
        raise DatasetError(f"cifar10: {path} lacks 'data' (a uint8 array N x 3072) or 'labels'")
    data = np.asarray(data)
    labels = np.asarray(labels, dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise DatasetError(f"cifar10: {path} has data {data.dtype}{list(data.shape)} and {len(labels)} labels; "
                           f"expected uint8 [N, 3072] with N labels")
    _check_labels(labels, path)
    return data.reshape(-1, 3, 32, 32), labels


def _check_labels(labels: np.ndarray, path: Path) -> None:
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DatasetError(f"cifar10: {path} has labels outside 0..9 (found {labels.min()}..{labels.max()})")


def read_class_names(folder: Path, fmt: str) -> list[str]:
    if fmt == "bin":
        meta = folder / "batches.meta.txt"
        if meta.is_file():
            names = [line.strip() for line in meta.read_text(encoding="utf-8").splitlines() if line.strip()]
            if len(names) == 10:
                return names
    else:
        meta = folder / "batches.meta"
        if meta.is_file():
            try:
                info = restricted_load(meta.read_bytes())
                names = [n.decode() if isinstance(n, bytes) else str(n) for n in info[b"label_names"]]
                if len(names) == 10:
                    return names
            except Exception:
                pass  # the names are cosmetic; the standard ones are used
    return list(CLASS_NAMES)


def read_split(folder: Path, fmt: str, files: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    reader = read_binary_batch if fmt == "bin" else read_python_batch
    suffix = ".bin" if fmt == "bin" else ""
    parts = [reader(folder / f"{name}{suffix}") for name in files]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels)


def cifar10(root: str | None = None, augment: bool = True, padding: int = 4, flip: bool = True) -> DatasetBundle:
    """CIFAR-10 from ``root`` as normalised ``(3, 32, 32)`` images (standard per-channel statistics).

    ``augment`` applies the standard training augmentation of He et al. (2016): random 32x32
    crops of the image padded by ``padding`` pixels, and horizontal flips.
    """
    folder, fmt = locate(root if root is not None else default_root())
    train_x, train_y = read_split(folder, fmt, TRAIN_FILES)
    test_x, test_y = read_split(folder, fmt, (TEST_FILE,))
    return DatasetBundle(
        train=ArrayDataset(train_x, train_y, MEAN, STD), test=ArrayDataset(test_x, test_y, MEAN, STD),
        input_shapes=((3, 32, 32),),
        info={"num_classes": 10, "class_names": read_class_names(folder, fmt), "mean": list(MEAN),
              "std": list(STD), "source": str(folder), "format": fmt},
        augment=RandomCropFlip(padding, flip) if augment else None,
    )
