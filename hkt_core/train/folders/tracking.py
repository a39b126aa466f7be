"""Experiment trackers: epoch callbacks that send a run's records somewhere.

A tracker is an epoch callback, ``callback(epoch, record)``, called on every process after the
epoch's checkpoint is committed (the same hook ``hkt_core.train(..., callbacks=[...])`` takes).
``record`` is the epoch's line of ``metrics.jsonl``: ``epoch``, ``step``, ``lr``, ``seconds``,
``step_seconds`` (mean wall time of a training step), ``train_<name>`` for the loss and every
logged part (``train_l1``, ``train_l2``, ``train_l3`` for HKT) and ``val_<metric>``.

Built in: ``tensorboard`` (``--log tensorboard``; needs the optional extra ``hkt[tensorboard]``),
writing event files to ``<run folder>/tensorboard/``, which must be a real folder inside the run folder
(a link there is refused before training starts and again before the first event is written).
Any other tracker (Weights & Biases, MLflow,
a database) is a function passed in ``callbacks``; see docs/training.md.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...errors import ConfigError
from ...io import check_inside, storage_error
from .files import TENSORBOARD

#: The trackers ``--log`` accepts.
TRACKERS = ("tensorboard",)


def scalar_tags(record: dict[str, Any]) -> dict[str, float]:
    """The record's numbers under tracker tags: ``train/L1``, ``val/accuracy``, ``lr``, ``step_seconds``."""
    tags: dict[str, float] = {}
    for key, value in record.items():
        if key in ("epoch", "step") or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not math.isfinite(float(value)):
            continue
        split, _, name = key.partition("_")
        if split in ("train", "val", "test") and name:
            name = name.upper() if name in ("l1", "l2", "l3") else name
            tags[f"{split}/{name}"] = float(value)
        else:
            tags[key] = float(value)
    return tags


def _is_main_process() -> bool:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


class TensorBoardTracker:
    """Writes each epoch's scalars to TensorBoard event files in ``folder`` (rank 0 only).

    The x axis is the epoch. The writer is opened at the first record and flushed after each one,
    so a killed run keeps every committed epoch; a resumed run appends a new event file, which
    TensorBoard reads together with the earlier ones.
    """

    def __init__(self, folder: str | Path, root: str | Path | None = None) -> None:
        require("tensorboard")
        self.folder = Path(folder)
        #: the run folder the event files must stay inside
        self.root = Path(root) if root is not None else self.folder.parent
        check_inside(self.root, self.folder / "events")
        self._writer = None

    def __call__(self, epoch: int, record: dict[str, Any]) -> None:
        if not _is_main_process():
            return
        try:
            if self._writer is None:
                from torch.utils.tensorboard import SummaryWriter

                check_inside(self.root, self.folder / "events")
                self._writer = SummaryWriter(log_dir=str(self.folder))
            for tag, value in scalar_tags(record).items():
                self._writer.add_scalar(tag, value, global_step=epoch)
            self._writer.flush()
        except OSError as exc:
            raise storage_error(self.folder, exc) from None

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def require(name: str) -> None:
    """Fail before training starts when a tracker's package is missing (one line: what to install)."""
    if name not in TRACKERS:
        raise ConfigError(f"--log {name!r} is invalid: must be one of {', '.join(TRACKERS)} "
                          f"(other trackers are epoch callbacks, see docs/training.md)")
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise ConfigError("--log tensorboard needs the tensorboard package: pip install 'hkt[tensorboard]'") from None


def trackers_for(names: Sequence[str], out: Path) -> list[TensorBoardTracker]:
    """The trackers ``--log`` names, writing into the run folder ``out``; checked before training."""
    trackers = []
    for name in dict.fromkeys(names):
        require(name)
        trackers.append(TensorBoardTracker(out / TENSORBOARD, root=out))
    return trackers
