"""Atomic file writes (a temporary file in the same folder, then a rename) and bounded reads.

Files end with the permissions the user's umask gives a new file (``tempfile`` would leave them
0600). A write that fails for want of space or permission raises :class:`StorageError`, one line
naming the file; the temporary file is removed and the previous file, if any, stays intact.
"""

from __future__ import annotations

import os
import tempfile
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import HKTError

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


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then move the result over ``path`` in one rename."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:_PREFIX_CHARS]}.", suffix=TMP_SUFFIX, dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise storage_error(path, exc) from None
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.chmod(tmp_path, 0o666 & ~current_umask())
        os.replace(tmp_path, path)
    except BaseException as exc:
        tmp_path.unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, HKTError):
            raise storage_error(path, exc) from None
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def remove_orphaned_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files a killed writer left in ``folder`` (call it while owning the folder)."""
    removed = []
    for tmp in folder.glob(f".*{TMP_SUFFIX}"):
        if tmp.is_file():
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
