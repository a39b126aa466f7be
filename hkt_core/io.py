"""Writing files safely: atomic writes, files opened in place, folders that stay inside their root;
and bounded reads.

Every file hkt writes goes through this module, so one rule holds for all of them:

* **Atomic.** A file is written to a temporary file in the same folder (created exclusively, so
  never through a link), then renamed over its name: a reader or a kill sees the old file or the
  new one, never half of one, and a link or a hard link at the final name is replaced, not
  followed (the file it pointed to keeps its bytes).
* **Inside its folder.** :func:`check_inside` refuses a path that reaches out of the folder it
  belongs to (a run folder) through a symbolic link on the way (``RUN/export -> ~``).
* **Opened in place only when it is a plain file of its own.** The one file hkt opens to write in
  place (a run folder's lock) is opened with ``O_NOFOLLOW`` by :func:`open_in_place`, and refused
  when it is a link, not a regular file, or a hard link shared with another name.

Files end with the permissions the user's umask gives a new file (``tempfile`` would leave them
0600). A write that fails for want of space or permission raises :class:`StorageError`, one line
naming the file; the temporary file is removed and the previous file, if any, stays intact.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import HKTError, UnsafePathError

#: Suffix of every temporary file; a run folder's leftovers from a kill are ``.*{TMP_SUFFIX}``.
TMP_SUFFIX = ".tmp"
_PREFIX_CHARS = 40  # keeps the temporary name short whatever the target's name


class StorageError(HKTError, OSError):
    """A file could not be written (disk full, no permission, name too long...)."""

    def __str__(self) -> str:
        return str(self.strerror)


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def storage_error(path: Path, exc: OSError) -> StorageError:
    reason = exc.strerror or str(exc)
    return StorageError(exc.errno, f"cannot write {path}: {reason}")


# -- staying inside a folder ---------------------------------------------------------------------

def check_inside(root: str | Path, path: str | Path) -> None:
    """Refuse ``path`` unless every folder between ``root`` and it is a real folder (no symbolic link)
    and its folder resolves inside ``root``. The final name itself is not looked at: an atomic write
    replaces a link there instead of following it; :func:`open_in_place` refuses one."""
    root, path = Path(root), Path(path)
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        raise UnsafePathError(f"{path} is not inside {root}; hkt writes the files of {root} only inside it") from None
    current = root
    for part in parts[:-1]:
        current = current / part
        if part == "..":
            raise UnsafePathError(f"{path} leaves {root} through '..'; hkt writes the files of {root} only inside it")
        if current.is_symlink():
            raise UnsafePathError(f"{current} is a symbolic link (to {os.readlink(current)}): a folder of {root} must "
                                  f"be a real folder, since a link may lead out of it; remove the link and run again")
    real_root, real = os.path.realpath(root), os.path.realpath(path.parent)
    if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
        raise UnsafePathError(f"{path.parent} leads out of {root} (to {real}); hkt writes the files of {root} only "
                              f"inside it: replace what leads out with a real folder")


def open_in_place(path: str | Path, flags: int = os.O_RDWR | os.O_CREAT) -> int:
    """A file descriptor of ``path`` opened (created if missing) without following a link, refused with
    :class:`~hkt_core.errors.UnsafePathError` when ``path`` is a symbolic link, not a regular file, or
    a hard link another name shares (writing would change that other file)."""
    path = Path(path)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise storage_error(path, exc) from None
    if info is not None:
        _refuse_unsafe(path, info)
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # became a link between the look and the open
            raise UnsafePathError(f"{path} is a symbolic link: hkt never writes through a link in a folder it owns; "
                                  f"remove the link and run again") from None
        raise storage_error(path, exc) from None
    try:
        _refuse_unsafe(path, os.fstat(fd))
    except BaseException:
        os.close(fd)
        raise
    return fd


def _refuse_unsafe(path: Path, info: os.stat_result) -> None:
    if stat.S_ISLNK(info.st_mode):
        raise UnsafePathError(f"{path} is a symbolic link (to {os.readlink(path)}): hkt never writes through a link "
                              f"in a folder it owns, since it may lead to a file outside it; remove the link "
                              f"(rm {path}) and run again")
    if not stat.S_ISREG(info.st_mode):
        raise UnsafePathError(f"{path} is not a regular file (a folder, pipe or device): hkt writes only regular "
                              f"files there; remove it and run again")
    if info.st_nlink > 1:
        raise UnsafePathError(f"{path} is a hard link ({info.st_nlink} names share its bytes, some maybe outside the "
                              f"folder): hkt never writes a file another name shares; remove it and run again")


# -- atomic writes -------------------------------------------------------------------------------

def atomic_write(path: str | Path, write: Callable[[Path], None], *, within: str | Path | None = None) -> Path:
    """Call ``write(tmp_path)`` then move the result over ``path`` in one rename (``within``: the folder
    ``path`` must stay inside, :func:`check_inside`)."""
    return _replace(path, lambda fd, tmp: write(tmp), within)


def atomic_write_bytes(path: str | Path, data: bytes, *, within: str | Path | None = None) -> Path:
    """``data`` as the new content of ``path``, written through the temporary file's own descriptor."""
    return _replace(path, lambda fd, tmp: _write_all(fd, data), within)


def atomic_write_text(path: str | Path, text: str, *, within: str | Path | None = None) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), within=within)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _replace(path: str | Path, fill: Callable[[int, Path], None], within: str | Path | None) -> Path:
    path = Path(path)
    if within is not None:
        check_inside(within, path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL: the temporary is a new file of ours, never an existing file or a link's target
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:_PREFIX_CHARS]}.", suffix=TMP_SUFFIX, dir=path.parent)
    except OSError as exc:
        raise storage_error(path, exc) from None
    tmp_path = Path(tmp)
    try:
        try:
            fill(fd, tmp_path)
        finally:
            os.close(fd)
        # by name: a writer given the path (safetensors, matplotlib) may have made a new file there
        if not stat.S_ISREG(os.lstat(tmp_path).st_mode):
            raise UnsafePathError(f"{tmp_path} is no longer the regular file hkt created; nothing was written "
                                  f"to {path}")
        os.chmod(tmp_path, 0o666 & ~current_umask())
        os.replace(tmp_path, path)
    except BaseException as exc:
        tmp_path.unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, HKTError):
            raise storage_error(path, exc) from None
        raise
    return path


# -- temporaries a kill left behind --------------------------------------------------------------

def is_temporary_of(candidate: str, name: str) -> bool:
    """Whether the file name ``candidate`` is a temporary of ``name`` that :func:`atomic_write` made, at any
    nesting (a temporary of a temporary, ``..child.safetensors.1a2b.tmp.x9y8.tmp``, as older exports
    left)."""
    if not candidate.endswith(TMP_SUFFIX):
        return False
    for dots in range(1, _PREFIX_CHARS + 1):  # level k: k dots, then the name cut to 41 - k characters
        cut = name[:_PREFIX_CHARS + 1 - dots]
        head = "." * dots + cut
        if not candidate.startswith("." * dots):
            return False
        if candidate.startswith(head) and (len(cut) < len(name) or candidate[len(head):len(head) + 1] == "."):
            return True
    return False


def remove_orphaned_temporaries(folder: Path, of: str | None = None) -> list[Path]:
    """Delete the temporary files a killed writer left in ``folder`` (call it while owning the folder):
    every ``.*.tmp``, or with ``of``, only the temporaries of that file name, at any nesting."""
    removed = []
    for tmp in Path(folder).glob(f".*{TMP_SUFFIX}"):
        if of is not None and not is_temporary_of(tmp.name, of):
            continue
        if tmp.is_symlink() or tmp.is_file():  # a link is removed itself, never what it points to
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


# -- bounded reads -------------------------------------------------------------------------------

#: The largest file hkt reads as a card or run-folder file (a state.json is a few hundred KiB).
MAX_BYTES = 16 * 1024 * 1024
#: The deepest nesting of lists and tables any hkt file has is 6; beyond this a file was crafted.
MAX_DEPTH = 32


def depth(value: Any) -> int:
    """The nesting depth of lists and dicts in ``value`` (iterative: never recurses)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            items = list(item.values())
        elif isinstance(item, list):
            items = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, level + 1) for child in items)
    return deepest


def parse_toml(text: str, source: str, error: type[Exception]) -> dict[str, Any]:
    """TOML text, bounded in size and nesting depth; a failure is one ``error`` line naming ``source``."""
    if len(text) > MAX_BYTES:
        raise error(f"{source} is {len(text):,} characters: larger than any file hkt reads (at most {MAX_BYTES:,})")
    try:
        value = tomllib.loads(text)
    except RecursionError:
        raise error(f"{source} nests arrays or tables more than {MAX_DEPTH} deep: not a file hkt reads") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{source}: not valid TOML ({exc})") from None
    if depth(value) > MAX_DEPTH:
        raise error(f"{source} nests arrays or tables more than {MAX_DEPTH} deep: not a file hkt reads")
    return value
