"""Train a run into a folder, or reuse what the folder already holds: the one rule for reuse.

``hkt compare`` and the benchmarks keep each run in its own folder so that they can be stopped and
started again. What the folder holds decides what happens:

- a finished run (``summary.json``) whose resolved configuration is identical to the one asked
  for is reused, and nothing trains;
- an interrupted run (a committed checkpoint, no summary) with an identical configuration is
  resumed;
- a folder where a run started but committed nothing is started over;
- a finished or interrupted run trained with other settings is never reused, overwritten or
  resumed: :class:`~hkt_core.errors.ConfigError` names each difference, and the folder is kept.

"Identical" compares the whole resolved configuration that ``config.toml`` records (pair, method,
the card, ``train``, ``hkt``, method options) by the rule of :mod:`hkt_core.train.folders.identity` (left
out: the entries that name one run, and the device and loader workers, which never change the
trained weights); with ``parent_weights`` the parent file must also be the one the run used
(same SHA-256).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...config import read_toml
from ...errors import ConfigError
from ..folders import files
from .api import resolve, train
from ..folders.run import Run, is_run_folder

def config_differences(stored: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """``key: run has X, now Y`` for every setting in which two resolved configurations differ
    (the rule of :mod:`hkt_core.train.folders.identity`, shared with ``--resume``)."""
    from ..folders.identity import difference_lines

    return difference_lines(stored, wanted)


def _parent_difference(stored: dict[str, Any], parent_weights: str | Path | None) -> list[str]:
    if parent_weights is None:
        return []
    from ..folders.parents import sha256_file

    path = Path(parent_weights)
    recorded = stored.get("parent", {}).get("sha256")
    if not path.is_file():
        raise ConfigError(f"parent weights {path}: no such file")
    digest = sha256_file(path)
    return [] if recorded == digest else [f"parent: run used sha256 {str(recorded)[:12]}, now {path} ({digest[:12]})"]


def train_or_reuse(pair, method: str, out: str | Path, *, say: Callable[[str], Any] = print,
                   label: str | None = None, **options: Any) -> tuple[Run, bool]:
    """Train ``method`` on ``pair`` into ``out`` or reuse what ``out`` holds (see the module
    docstring); returns the run and whether it was reused. ``options`` are those of
    :func:`hkt_core.train` (``seed=``, ``epochs=``, ``manager=``, ``parent_weights=``, ...); they
    are checked before anything trains. ``say`` reports what happens, naming ``label``."""
    out = Path(out)
    label = label or method
    for key in ("out", "resume", "force"):
        if key in options:
            raise TypeError(f"train_or_reuse decides {key} itself; do not pass it")
    spec = resolve(pair, method, out=out, **options)
    committed = (out / files.SUMMARY).is_file() or (out / files.STATE).is_file()
    if committed:
        stored = read_toml(out / files.CONFIG)
        diffs = config_differences(stored, spec.config()) + _parent_difference(stored, options.get("parent_weights"))
        if diffs:
            raise ConfigError(f"{out} holds a run of {label} trained with other settings ({'; '.join(diffs)}); "
                              f"it is kept as it is: choose another output folder, or remove that one to train anew")
        if (out / files.SUMMARY).is_file():
            say(f"reusing {out}")
            return Run(out, spec.manager), True
        say(f"resuming {label} in {out}")
        return train(pair, method, out=out, resume=True, **options), False
    say(f"training {label} into {out}")
    return train(pair, method, out=out, force=out.exists() and is_run_folder(out), **options), False
