"""Taking a run folder for a training: lock it, then start it, start it over, or recover it.

* A new folder, or ``--force`` on an existing one: its run files and any temporary file a killed
  writer left are deleted and the run starts from the beginning.
* ``--resume``: leftover temporaries are deleted, an interrupted commit is completed or discarded
  (:func:`checkpoint.recover`), and the settings are checked against the run's
  (:func:`identity.check_resume`). A run stopped before its first checkpoint (no ``state.json``
  yet, but its ``config.toml``) has nothing to continue: it starts cleanly from the beginning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import CheckpointError, ConfigError
from ...io import remove_orphaned_temporaries
from . import checkpoint as ckpt
from . import files
from .identity import check_resume
from .lock import RunLock


def take_run_folder(out: Path, *, resume: bool, force: bool, config: dict[str, Any], say) -> tuple[RunLock, bool]:
    """Lock ``out`` and make it ready; returns the lock and whether the run resumes."""
    lock = RunLock.acquire(out, say=say)
    try:
        return lock, _ready(out, resume=resume, force=force, config=config, say=say)
    except BaseException:
        lock.release()
        raise


def _ready(out: Path, *, resume: bool, force: bool, config: dict[str, Any], say) -> bool:
    started = files.is_run_folder(out)
    if resume:
        remove_orphaned_temporaries(out)
        if (out / files.STATE).is_file():
            state = ckpt.recover(out)
            check_resume(out, config, int(state["epoch"]), say=say)
            return True
        if not (out / files.CONFIG).is_file():
            raise CheckpointError(f"cannot resume: {out} holds no checkpoint and no started run (no "
                                  f"{files.CONFIG}); start it without --resume")
        say(f"{out} was stopped before its first checkpoint: starting it from the beginning")
        files.clear_run_folder(out)
        return False
    if started and not force:
        raise ConfigError(f"run folder {out} already exists; pass --resume to continue it or "
                          f"--force to start it over (its checkpoints are deleted)")
    files.clear_run_folder(out)
    return False
