"""An exclusive lock on a run folder, so two trainings never write the same folder.

The lock is a file ``.hkt-lock`` in the run folder holding the owner's pid, host and start time,
and held with an exclusive ``flock`` for as long as the run lasts. The operating system drops a
``flock`` when its process dies, so the lock of a killed run is stale by construction; taking it
over happens while holding the ``flock``, by rewriting the file in place, so two processes that
both find the same dead owner can never both win (the second sees the first's ``flock``). A lock
file whose recorded owner still runs on this host is respected even when no ``flock`` is held (a
lock written by an older hkt). Rank 0 of a distributed run takes it for all of its ranks.
A folder the lock created and that is still empty when it is released is removed again, so a run
refused or failed before writing anything leaves no folder behind.

The lock file is the one file hkt opens to write in place, so it is opened without following a
link (:func:`hkt_core.io.open_in_place`): a ``.hkt-lock`` that is a symbolic link, a hard link or not
a regular file (a received folder may hold any of them, pointing at a file of yours) is refused in
one line before anything is written, and left as it is.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from ...errors import ConfigError
from ...io import open_in_place, storage_error

LOCK = ".hkt-lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner(fd: int) -> dict:
    try:
        return _parse(os.pread(fd, 4096, 0))
    except OSError:
        return {}


def _parse(data: bytes) -> dict:
    try:
        value = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


class RunLock:
    """``RunLock.acquire(folder)``; :meth:`release` when the run ends (also a context manager)."""

    def __init__(self, folder: Path, created: bool) -> None:
        self.folder = folder
        self.path = folder / LOCK
        self.created = created
        self._fd: int | None = None

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
        for _ in range(40):
            owner = lock._try_take(say)
            if owner is None:
                return lock
            if not owner:  # being written or released this instant: give its writer a moment
                time.sleep(0.05)
                continue
            raise ConfigError(f"run folder {folder} is in use by process {owner.get('pid')} on {owner.get('host')} "
                              f"(since {owner.get('since')}); wait for it to finish, stop it, or choose another --out")
        raise ConfigError(f"run folder {folder} is locked ({lock.path} cannot be read); remove that file if no "
                          f"training uses the folder")

    def _try_take(self, say) -> dict | None:
        """None once the lock is ours; else the owner that holds it ({} when it cannot be read yet)."""
        fd = open_in_place(self.path)  # never through a link: the lock is written in place
        taken = False
        try:
            owner = self._take(fd, say)
            taken = owner is None
            return owner
        except OSError as exc:
            raise storage_error(self.path, exc) from None
        finally:
            if taken:
                self._fd = fd
            else:
                os.close(fd)  # closing drops a flock this call may hold

    def _take(self, fd: int, say) -> dict | None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return _owner(fd)
        try:
            if os.fstat(fd).st_ino != os.lstat(self.path).st_ino:
                return {}  # released and removed between our open and our flock: open the new file
        except FileNotFoundError:
            return {}
        owner = _parse(os.pread(fd, 4096, 0))
        pid, host = owner.get("pid"), owner.get("host")
        if isinstance(pid, int) and pid != os.getpid():
            if host != socket.gethostname() or _alive(pid):
                return owner
            if say is not None:
                say(f"{self.folder} was locked by process {pid}, which no longer runs; taking the lock over")
        text = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                           "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, text, 0)
        return None

    def release(self) -> None:
        if self._fd is not None:
            try:
                self.path.unlink(missing_ok=True)  # while the flock is held: nobody else can own it yet
            finally:
                os.close(self._fd)
                self._fd = None
        if self.created:
            try:
                self.folder.rmdir()  # only if nothing was written
            except OSError:
                pass

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
