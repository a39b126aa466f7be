"""Data sets that misbehave on purpose, for the fault tests (``tests/test_folder_safety.py``).

Each is the tiny pair's data (``test_train_support.make_dataset``) with one fault, and is named by a
card as ``fault_data:<factory>`` so that it reaches the trainer the way a user's data set does.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import torch
from torch.utils.data import Dataset

from hkt_core.data import DatasetBundle
from test_train_support import make_dataset


class _OneOdd(Dataset):
    """The training samples, one of which (``odd``) differs from the others in ``kind``."""

    def __init__(self, base: Dataset, odd: int, kind: str) -> None:
        self.base, self.odd, self.kind = base, odd, kind

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        x, y = self.base[i]
        if i != self.odd:
            return x, y
        if self.kind == "shape":  # one column more than the others
            return torch.zeros(1, 8, 9), y
        if self.kind == "dtype":
            return x.double(), y
        if self.kind == "structure":
            return x, y, y
        raise ValueError(f"unknown kind {self.kind!r}")


def one_odd_sample(odd: int = 150, kind: str = "shape") -> DatasetBundle:
    """The tiny data with training sample ``odd`` unlike the others (its shape, dtype or structure)."""
    bundle = make_dataset()
    return DatasetBundle(_OneOdd(bundle.train, odd, kind), bundle.test, bundle.input_shapes, bundle.info)


class _FailsAfterCommit(Dataset):
    """The training samples; once ``watch`` exists (the run's first commit), the next sample fills the
    disk (``fill``: a file written until the file system says it is full) or fails to read (``eio``)."""

    def __init__(self, base: Dataset, watch: str, fault: str, filler: str, once: str) -> None:
        self.base, self.watch, self.fault, self.filler, self.once = base, Path(watch), fault, Path(filler), Path(once)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        if self.watch.exists() and not self.once.exists():
            self.once.touch()  # one fault per test, so the resume runs clean
            if self.fault == "eio":
                raise OSError(errno.EIO, os.strerror(errno.EIO), f"sample-{i}.png")
            fill_up(self.filler)
        return self.base[i]


def fails_after_commit(watch: str = "", fault: str = "fill", filler: str = "", once: str = "") -> DatasetBundle:
    """The tiny data; after ``watch`` appears, one fault: the disk filled up, or a read error."""
    bundle = make_dataset()
    return DatasetBundle(_FailsAfterCommit(bundle.train, watch, fault, filler, once), bundle.test,
                         bundle.input_shapes, bundle.info)


def fill_up(path: Path) -> int:
    """Write ``path`` until its file system is full; returns the bytes written."""
    written = 0
    chunk = b"\0" * 65536
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                n = f.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                if len(chunk) == 1:
                    return written
                chunk = chunk[: len(chunk) // 2]  # the last pages, byte runs ever shorter
                continue
            written += n
