"""An exclusive lock on a run folder, so two trainings never write the same folder.

The lock is a file ``.hkt-lock`` in the run folder, created exclusively (``O_EXCL``) and holding the
owner's pid, host and start time. A lock whose owner is gone (same host, pid not running) is
stale: it is taken over, with a note. Rank 0 of a distributed run takes it for all of its ranks.
A folder the lock created and that is still empty when it is released is removed again, so a run
refused or failed before writing anything leaves no folder behind.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from ..errors import ConfigError
from ..io import storage_error

LOCK = ".hkt-lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class RunLock:
    """``RunLock.acquire(folder)``; :meth:`release` when the run ends (also a context manager)."""

    def __init__(self, folder: Path, created: bool) -> None:
        self.folder = folder
        self.path = folder / LOCK
        self.created = created

    @classmethod
    def acquire(cls, folder: str | Path, say=None) -> RunLock:
        folder = Path(folder)
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"--out {folder} is an existing file; a run folder must be a directory")
        created = not folder.exists()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the run folder {folder}: {exc.strerror or exc}") from None
        lock = cls(folder, created)
        for _ in range(3):
            if lock._try_create():
                return lock
            owner = _owner(lock.path)
            pid, host = owner.get("pid"), owner.get("host")
            if isinstance(pid, int) and host == socket.gethostname() and not _alive(pid):
                if say is not None:
                    say(f"{folder} was locked by process {pid}, which no longer runs; taking the lock over")
                lock.path.unlink(missing_ok=True)
                continue
            if not owner:  # being written this instant, or unreadable: give its writer a moment
                time.sleep(0.05)
                continue
            raise ConfigError(f"run folder {folder} is in use by process {pid} on {host} (since {owner.get('since')}); "
                              f"wait for it to finish, stop it, or choose another --out")
        raise ConfigError(f"run folder {folder} is locked ({lock.path} cannot be read); remove that file if no "
                          f"training uses the folder")

    def _try_create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            return False
        except OSError as exc:
            raise storage_error(self.path, exc) from None
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"pid": os.getpid(), "host": socket.gethostname(),
                       "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, f)
        return True

    def release(self) -> None:
        if _owner(self.path).get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)
        if self.created:
            try:
                self.folder.rmdir()  # only if nothing was written
            except OSError:
                pass

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
