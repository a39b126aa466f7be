"""The schemas of a run folder's files, checked when they are read.

A run folder (and a card) may come from someone else, so each file is data to be checked before
any field is used: ``state.json`` (the committed epoch), ``config.toml`` (the configuration the
run ran with), ``alignment.json`` (its mixing points) and ``summary.json``. Every file is read with
a bound on its size and on its nesting depth, then its fields are checked against the schema below.
Every failure is one :class:`~hkt_core.errors.CheckpointError` line that names the file, the field
and what is allowed; nothing is written before the checks pass.

Later configuration fields extend the tables here (:data:`STATE_FIELDS`, :data:`CONFIG_FIELDS`),
so one module says what a run folder may hold.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ...errors import CheckpointError
from ...io import MAX_BYTES, MAX_DEPTH, depth, parse_toml

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class _Invalid(Exception):
    """One field that does not fit its schema: ``field`` (dotted) and what is allowed."""

    def __init__(self, field: str, allowed: str, value: Any) -> None:
        super().__init__(field)
        self.field, self.allowed, self.value = field, allowed, value


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _fail(path: Path, exc: _Invalid) -> CheckpointError:
    return CheckpointError(f"{path}: field {exc.field!r} is {_shown(exc.value)} ({type(exc.value).__name__}); "
                           f"it must be {exc.allowed}")


# -- reading with bounds -------------------------------------------------------------------------

def read_text(path: Path, *, what: str) -> str:
    """The UTF-8 text of a run-folder file, at most :data:`MAX_BYTES`."""
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise CheckpointError(f"{path} is {size:,} bytes: larger than any {what} hkt writes "
                                  f"(at most {MAX_BYTES:,}); it was not written by hkt")
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CheckpointError(f"{path} is not UTF-8 text: {what} is corrupt") from None
    except OSError as exc:
        raise CheckpointError(f"{path} cannot be read ({exc.strerror or exc})") from None


def _bounded(path: Path, value: Any, what: str) -> Any:
    if depth(value) > MAX_DEPTH:
        raise CheckpointError(f"{path} nests lists or tables more than {MAX_DEPTH} deep: not {what} hkt writes")
    return value


def read_json(path: Path, *, what: str) -> Any:
    """A JSON file of a run folder, bounded in size and depth."""
    text = read_text(path, what=what)
    try:
        value = json.loads(text)
    except RecursionError:
        raise CheckpointError(f"{path} nests lists or tables more than {MAX_DEPTH} deep: not {what} hkt "
                              f"writes") from None
    except ValueError as exc:
        raise CheckpointError(f"{path} is corrupt (not valid JSON: {exc})") from None
    return _bounded(path, value, what)


def read_toml(path: Path, *, what: str) -> dict[str, Any]:
    return parse_toml(read_text(path, what=what), str(path), CheckpointError)


# -- field checks ----------------------------------------------------------------------------------

Check = Callable[[Any, str], None]


def _integer(minimum: int = 0) -> Check:
    def check(value: Any, field: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise _Invalid(field, f"an integer >= {minimum}", value)
    return check


def _number(value: Any, field: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Invalid(field, "a number", value)


def _string(value: Any, field: str) -> None:
    if not isinstance(value, str):
        raise _Invalid(field, "a string", value)


def _boolean(value: Any, field: str) -> None:
    if not isinstance(value, bool):
        raise _Invalid(field, "true or false", value)


def _table(fields: Mapping[str, tuple[bool, Check]] | None = None) -> Check:
    """A dict; ``fields``: name -> (required, check) for the keys hkt reads (others are kept)."""
    def check(value: Any, field: str) -> None:
        if not isinstance(value, dict):
            raise _Invalid(field, "a table (JSON object)", value)
        for name, (required, sub) in (fields or {}).items():
            where = f"{field}.{name}" if field else name
            if name not in value:
                if required:
                    raise _Invalid(where, "present", None)
                continue
            sub(value[name], where)
    return check


def _list_of(item: Check, length: int | None = None, *, minimum: int = 0) -> Check:
    def check(value: Any, field: str) -> None:
        if not isinstance(value, list) or (length is not None and len(value) != length) or len(value) < minimum:
            size = f" of {length} items" if length is not None else ""
            raise _Invalid(field, f"a list{size}", value if not isinstance(value, list) else f"<{len(value)} items>")
        for i, v in enumerate(value):
            item(v, f"{field}[{i}]")
    return check


def _optional(check: Check) -> Check:
    def optional(value: Any, field: str) -> None:
        if value is not None:
            check(value, field)
    return optional


def _base64(value: Any, field: str) -> None:
    if not isinstance(value, str):
        raise _Invalid(field, "a base64 string", value)
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _Invalid(field, "a base64 string", value) from None


def _digests(value: Any, field: str) -> None:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) and _SHA256.match(v)
                                              for k, v in value.items()):
        raise _Invalid(field, "a table of file names to SHA-256 hex digests", value)


def _python_rng(value: Any, field: str) -> None:
    _list_of(lambda v, f: None, 3)(value, field)
    _integer()(value[0], f"{field}[0]")
    _list_of(_integer(), 625)(value[1], f"{field}[1]")
    _optional(_number)(value[2], f"{field}[2]")


def _numpy_rng(value: Any, field: str) -> None:
    _list_of(lambda v, f: None, 5)(value, field)
    _string(value[0], f"{field}[0]")
    _list_of(_integer(), 624)(value[1], f"{field}[1]")
    _integer()(value[2], f"{field}[2]")
    _integer()(value[3], f"{field}[3]")
    _number(value[4], f"{field}[4]")


_PARAM_GROUP = _table({"params": (True, _list_of(_integer())), "lr": (False, _number)})

#: ``state.json``: the fields hkt reads, with what each may hold.
STATE_FIELDS: dict[str, tuple[bool, Check]] = {
    "format": (True, _string),
    "format_version": (True, _integer(1)),
    "run": (True, _string),
    "epoch": (True, _integer()),
    "epochs": (False, _integer()),
    "step": (True, _integer()),
    "best": (False, _optional(_table({"epoch": (True, _integer()), "metric": (True, _string),
                                      "value": (True, _number), "higher_is_better": (False, _boolean)}))),
    "sampler": (False, _table({"seed": (False, _integer(-2**63)), "epoch": (False, _integer()),
                               "batches_done": (False, _integer())})),
    "world_size": (False, _integer(1)),
    "optimizer": (True, _table({"param_groups": (True, _list_of(_PARAM_GROUP, minimum=1)),
                                "scalars": (False, _table())})),
    "rng": (True, _table({"python": (True, _python_rng), "numpy": (True, _numpy_rng), "torch": (True, _base64),
                          "cuda": (False, _list_of(_base64))})),
    "files": (False, _digests),
    "scaler": (False, _table()),
}


def validate(value: Any, fields: Mapping[str, tuple[bool, Check]], path: Path) -> Any:
    """``value`` (read from ``path``) is a table fitting ``fields``, else one CheckpointError line."""
    try:
        _table(fields)(value, "")
    except _Invalid as exc:
        raise _fail(path, exc) from None
    return value


def validate_state(state: Any, path: Path) -> dict[str, Any]:
    """``state`` (read from ``path``) fits :data:`STATE_FIELDS`; the format is checked by the caller."""
    return validate(state, STATE_FIELDS, path)


def validate_files_field(state: Mapping[str, Any], path: Path) -> None:
    """Only the ``files`` field: absent (a folder written before checksums) or a table of digests."""
    validate(state, {"files": STATE_FIELDS["files"]}, path)


#: ``config.toml``: the top-level fields and tables hkt reads.
CONFIG_FIELDS: dict[str, tuple[bool, Check]] = {
    "pair": (True, _string),
    "method": (True, _string),
    "run": (False, _string),
    "trains_parent": (False, _boolean),
    "world_size": (False, _integer(1)),
    "train": (False, _table()),
    "hkt": (False, _table()),
    "method_options": (False, _table()),
    "card": (True, _table({"name": (True, _string), "parent": (True, _string), "child": (True, _string),
                           "dataset": (True, _string), "task": (False, _string),
                           "parent_options": (False, _table()), "child_options": (False, _table()),
                           "dataset_options": (False, _table()), "source_folder": (False, _string)})),
}


def validate_config(config: Any, path: Path) -> dict[str, Any]:
    return validate(config, CONFIG_FIELDS, path)


def read_config(path: Path) -> dict[str, Any]:
    """A run folder's ``config.toml``, bounded and checked."""
    return validate_config(read_toml(path, what="a run configuration"), path)


def read_state(path: Path) -> dict[str, Any]:
    """A run folder's ``state.json``, bounded and checked (format and version by the caller)."""
    return read_json(path, what="a checkpoint state")
