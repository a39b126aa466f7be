"""Checkpoint integrity: a sane network before a commit, a SHA-256 of each tensor file after it.

Before an epoch's checkpoint is committed, every floating parameter and buffer of the network (and
of the method's own state) must be finite and small enough that its square is finite in float32:
a ``running_var`` of inf or weights near 1e28 are a diverged run, not a "last good checkpoint".

At the commit, ``state.json`` records ``files``: the SHA-256 of each tensor file of the committed
epoch (files not rewritten this epoch, such as an unchanged ``child.safetensors``, keep their
recorded digest). ``eval``, ``export``, ``--resume`` and a cached parent verify a file against that
digest, and its ``run`` metadata against the run id, before using it; a folder written before
digests were recorded loads with a one-line warning.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from ...errors import CheckpointError

FILES_KEY = "files"
STATE = "state.json"
STAGED_SUFFIX = ".next"
#: Largest magnitude kept: beyond it the square overflows float32 (inf in the next variance or norm).
LIMIT = math.sqrt(torch.finfo(torch.float32).max)

_warned: set[str] = set()


def insane_tensors(*states: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of floating tensors holding a NaN, an infinity or a magnitude above :data:`LIMIT`."""
    bad = []
    for state in states:
        for name, tensor in state.items():
            if not torch.is_floating_point(tensor) or tensor.numel() == 0:
                continue
            t = tensor.detach()
            if not bool(torch.isfinite(t).all()) or float(t.abs().max()) > LIMIT:
                bad.append(name)
    return bad


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_digests(folder: Path, state: dict[str, Any]) -> dict[str, str]:
    """The ``files`` entry of the state about to be committed in ``folder``.

    Staged files (``NAME.next``) are this epoch's; a tensor file not restaged keeps the digest the
    previous commit of the same run recorded.
    """
    digests: dict[str, str] = {}
    previous = _read_state(folder / STATE)
    if previous.get("run") == state.get("run"):
        digests.update({k: v for k, v in (previous.get(FILES_KEY) or {}).items() if (folder / k).is_file()})
    for staged in sorted(folder.glob(f"*.safetensors{STAGED_SUFFIX}")):
        digests[staged.name[: -len(STAGED_SUFFIX)]] = sha256_file(staged)
    return digests


def _read_state(path: Path) -> dict[str, Any]:
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    return state if isinstance(state, dict) else {}


def verify(path: str | Path, *, run_id: str | None = None, state: dict[str, Any] | None = None) -> None:
    """Refuse a tensor file whose SHA-256 or run id differs from what its run folder recorded.

    ``state`` defaults to the ``state.json`` beside ``path``; ``run_id`` to that state's run. A
    folder without recorded digests (written before they existed) gives one warning and passes.
    """
    from . import schemas

    path = Path(path)
    folder = path.parent
    if state is None:
        file = folder / STATE
        state = schemas.read_json(file, what="a checkpoint state") if file.is_file() else {}
        if not isinstance(state, dict):
            raise CheckpointError(f"{file}: must be a JSON object (a table), not {type(state).__name__}")
    schemas.validate_files_field(state, folder / STATE)
    run_id = run_id or state.get("run")
    if run_id is not None:
        meta_run = _metadata(path).get("run")
        if meta_run != run_id:
            raise CheckpointError(f"{path} belongs to another run (run id {meta_run!r}, this folder's is {run_id!r}); "
                                  f"it was copied in from elsewhere")
    digests = state.get(FILES_KEY)
    if digests is None:  # written before checksums: the only case verification is skipped
        if str(folder) not in _warned:
            _warned.add(str(folder))
            print(f"hkt: warning: {folder} was written before hkt recorded checksums; its tensor files are not "
                  f"verified", file=sys.stderr, flush=True)
        return
    expected = digests.get(path.name)
    if expected is None:
        raise CheckpointError(f"{path} is not among the files state.json recorded for this run ({', '.join(sorted(digests))})")
    if sha256_file(path) != expected:
        raise CheckpointError(f"{path} does not match the SHA-256 recorded in {folder / STATE}: the file is corrupt "
                              f"or was replaced")


def _metadata(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file (corrupt or truncated?): {exc}") from None
