"""A run folder's layout: its file names and the helpers that read and write them (the bottom of
train/: it imports nothing of train/ but its own layer).

Files (schemas in docs/training.md): ``config.toml`` (the fully resolved configuration),
``metrics.jsonl`` (one JSON object per epoch), ``child.safetensors`` (best on validation; keys
exactly ``child.state_dict()``'s), ``last.safetensors`` (same keys, last epoch), ``optimizer.safetensors``
and ``method.safetensors`` (resume state), ``state.json`` (the committed epoch, RNG states, best
metric), ``summary.json`` (validation and test metrics, parameters, latency), ``curves.png`` and, for
methods that mix (HKT), ``alignment.json`` (the :class:`~hkt_core.Alignment` the run used; a resumed
run reads it back, so it keeps its mixing points).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...errors import CheckpointError, HKTError

CONFIG = "config.toml"
METRICS = "metrics.jsonl"
BEST = "child.safetensors"
LAST = "last.safetensors"
OPTIMIZER = "optimizer.safetensors"
METHOD_STATE = "method.safetensors"
STATE = "state.json"
SUMMARY = "summary.json"
CURVES = "curves.png"
HISTORY = "history.jsonl"
ALIGNMENT = "alignment.json"

#: Every file a run writes; ``--force`` removes exactly these (and staged ``*.next`` copies).
RUN_FILES = (CONFIG, METRICS, BEST, LAST, OPTIMIZER, METHOD_STATE, STATE, SUMMARY, CURVES, ALIGNMENT, HISTORY)


def is_run_folder(path: Path) -> bool:
    return any((path / name).exists() for name in (CONFIG, STATE, SUMMARY))


#: TensorBoard's event files (``--log tensorboard``).
TENSORBOARD = "tensorboard"
#: Folders a run may write (trackers' files); ``--force`` removes them too.
RUN_FOLDERS = (TENSORBOARD,)


def clear_run_folder(path: Path) -> None:
    import shutil
    from ...io import remove_orphaned_temporaries

    for name in RUN_FILES:
        (path / name).unlink(missing_ok=True)
    for name in RUN_FOLDERS:
        if (path / name).is_dir() and not (path / name).is_symlink():
            shutil.rmtree(path / name)
    for staged in path.glob("*.next"):
        staged.unlink(missing_ok=True)
    remove_orphaned_temporaries(path)


def own_files(path: Path) -> list[Path]:
    """The files that make up the run in ``path`` (an export must never overwrite one)."""
    from .lock import LOCK

    return [path / name for name in (*RUN_FILES, LOCK)] + sorted(path.glob("*.next"))


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The per-epoch records; a line cut short by a crash is skipped."""
    file = path / METRICS
    if not file.is_file():
        return []
    out = []
    from .schemas import read_text

    for line in read_text(file, what="a metrics log").splitlines():
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):  # a line cut short by a crash, or not hkt's
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def write_alignment(path: Path, alignment) -> None:
    """``alignment.json``: the alignment a mixing method used (atomically)."""
    from ...io import atomic_write_text

    atomic_write_text(path / ALIGNMENT, alignment.to_json() + "\n", within=path)


def read_alignment(path: Path):
    """The run's recorded :class:`~hkt_core.Alignment`, or None when it has none."""
    from ...align import Alignment
    from .schemas import read_json

    file = path / ALIGNMENT
    if not file.is_file():
        return None
    data = read_json(file, what="an alignment")
    try:
        return Alignment.from_dict(data)
    except HKTError as exc:
        raise CheckpointError(f"{file}: {exc}") from None
    except (TypeError, ValueError) as exc:  # a field of the wrong type, refused by BlockPair's converters
        raise CheckpointError(f"{file} does not fit the alignment schema ({type(exc).__name__}: "
                              f"{' '.join(str(exc).split())[:120]})") from None


def mixing_points_line(alignment) -> str:
    """``2HKT: mixing at parent.pool <-> child.pool; predictions fc <-> fc`` (one line)."""
    points = "; ".join(f"{p.parent} <-> {p.child}" for p in alignment.mixing_pairs) or "none"
    out = alignment.prediction_pair
    return f"{alignment.stages}HKT, mixing at {points} (predictions {out.parent} <-> {out.child})"
