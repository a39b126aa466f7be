"""Checkpoints: safetensors for tensors, JSON for scalars, committed through a small journal.

Why a journal: a checkpoint is several files (``last.safetensors``, ``optimizer.safetensors``,
``method.safetensors``, sometimes ``child.safetensors``) that must describe the same epoch. Each
file is first written completely as ``NAME.next`` (atomic write), then ``state.json`` is replaced
atomically (the commit point), then every ``NAME.next`` is renamed over ``NAME``. A run killed at
any moment is recovered by :func:`recover`: staged files of the committed epoch are rolled
forward, staged files of an uncommitted epoch are discarded. Nothing goes through pickle.

A write that fails (a full disk, a read-only or failing file system) raises
:class:`~hkt_core.io.StorageError` naming the file, after discarding what this epoch had staged: the
previous commit stays the run's last checkpoint, whole, and frees the space the failed epoch took.
"""

from __future__ import annotations

import base64
import errno
import json
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from ...errors import CheckpointError
from ...io import StorageError, atomic_write, atomic_write_text, storage_error

FORMAT = "hkt-checkpoint"
FORMAT_VERSION = 1
STAGED_SUFFIX = ".next"


# -- tensors files -----------------------------------------------------------------------------

def write_tensors(path: str | Path, tensors: dict[str, torch.Tensor], *, kind: str,
                  metadata: dict[str, Any] | None = None) -> Path:
    """Atomically write ``tensors`` (copied to contiguous CPU tensors) with string metadata."""
    return atomic_write(path, lambda p: save_tensors(p, tensors, kind=kind, metadata=metadata))


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], *, kind: str,
                 metadata: dict[str, Any] | None = None) -> None:
    """Write ``tensors`` into ``path`` as it is (a temporary file an atomic write just created); a failed
    write is an ``OSError`` with the operating system's error number."""
    data = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    meta = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "kind": kind}
    meta.update({k: str(v) for k, v in (metadata or {}).items()})
    try:
        save_file(data, str(path), metadata=meta)
    except SafetensorError as exc:
        raise _os_error(exc) from None


def _os_error(exc: SafetensorError) -> Exception:
    """safetensors reports a failed write as ``I/O error: No space left on device (os error 28)`` (older
    versions: ``IoError(Os { code: 28, ... })``): the ``OSError`` it stands for (any other failure is
    returned unchanged)."""
    text = str(exc)
    found = re.search(r"\(os error (\d+)\)|Os \{ code: (\d+)", text)
    if found:
        code = int(found.group(1) or found.group(2))
        return OSError(code, os.strerror(code))
    if "I/O error" in text or "IoError" in text:
        return OSError(errno.EIO, " ".join(text.split())[:200])
    return exc


def read_tensors(path: str | Path, *, what: str = "checkpoint") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file; a missing or unreadable file is a CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{what} {path} is not a readable safetensors file (corrupt or truncated?): "
                              f"{exc}") from None
    return tensors, meta


def check_state(module: nn.Module, tensors: dict[str, torch.Tensor], *, what: str, source: str) -> None:
    """Refuse a state whose keys or shapes differ from ``module.state_dict()``, naming the differences."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [f"{k}: file {tuple(tensors[k].shape)} vs model {tuple(expected[k].shape)}"
             for k in expected if k in tensors and tuple(tensors[k].shape) != tuple(expected[k].shape)]
    wrong_dtype = [f"{k}: file {str(tensors[k].dtype).removeprefix('torch.')} vs model "
                   f"{str(expected[k].dtype).removeprefix('torch.')}"
                   for k in expected if k in tensors and not _dtype_fits(tensors[k].dtype, expected[k].dtype)]
    if missing or unexpected or wrong or wrong_dtype:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s) (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s) (e.g. {', '.join(unexpected[:3])})")
        if wrong:
            parts.append(f"{len(wrong)} shape mismatch(es) ({'; '.join(wrong[:3])})")
        if wrong_dtype:
            parts.append(f"{len(wrong_dtype)} dtype mismatch(es) ({'; '.join(wrong_dtype[:3])})")
        raise CheckpointError(f"{source} does not fit {what} ({type(module).__name__}): {', '.join(parts)}; "
                              f"it was saved from a different architecture or options")


def _dtype_fits(stored: torch.dtype, expected: torch.dtype) -> bool:
    """A floating tensor may load into another floating precision (an fp16 run read in fp32);
    anything else (bool or integer into floating weights, or the reverse) must match exactly."""
    if stored.is_floating_point and expected.is_floating_point:
        return True
    return stored == expected


def load_module_state(module: nn.Module, path: str | Path, *, what: str = "the model") -> dict[str, str]:
    """Load a safetensors state into ``module`` after checking keys and shapes; returns the metadata."""
    tensors, meta = read_tensors(path, what="weights file")
    check_state(module, tensors, what=what, source=str(path))
    with torch.no_grad():
        current = module.state_dict()
        for k, v in tensors.items():
            current[k].copy_(v.to(current[k].dtype))
    return meta


def module_extra_state(module: nn.Module, *exclude: nn.Module) -> dict[str, torch.Tensor]:
    """``module``'s parameters and buffers that do not belong to any of ``exclude`` (by identity)."""
    taken = {id(t) for m in exclude for t in m.state_dict(keep_vars=True).values()}
    return {k: v for k, v in module.state_dict(keep_vars=True).items() if id(v) not in taken}


# -- optimizer ---------------------------------------------------------------------------------

def optimizer_to_files(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors (``state.<param>.<name>``) and JSON scalars."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in sd["state"].items():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = value
    groups = json.loads(json.dumps(sd["param_groups"], default=_json_default))
    return tensors, {"param_groups": groups, "scalars": scalars}


def optimizer_from_files(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                         info: dict[str, Any], *, source: str) -> None:
    state: dict[int, dict[str, Any]] = {}
    try:
        for key, value in tensors.items():
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
        for index, entry in info.get("scalars", {}).items():
            state.setdefault(int(index), {}).update(entry)
        groups = info["param_groups"]
        current = optimizer.state_dict()["param_groups"]
        if [len(g["params"]) for g in groups] != [len(g["params"]) for g in current]:
            raise ValueError("parameter groups differ from the model's")
        if "betas" in current[0]:
            for g in groups:
                g["betas"] = tuple(g["betas"])
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (KeyError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{source}: optimizer state does not fit this run's optimizer ({exc})") from None


def _json_default(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"cannot store {type(value).__name__} in JSON")


# -- random number generators ------------------------------------------------------------------

def capture_rng() -> dict[str, Any]:
    """Python, NumPy and torch generator states as JSON-ready values."""
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode("ascii"),
    }
    if torch.cuda.is_available():
        state["cuda"] = [base64.b64encode(s.numpy().tobytes()).decode("ascii") for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(_bytes_tensor(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_bytes_tensor(s) for s in state["cuda"]])


def _bytes_tensor(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8).clone()


# -- the journal -------------------------------------------------------------------------------

def stage(path: Path, tensors: dict[str, torch.Tensor], *, kind: str, metadata: dict[str, Any]) -> None:
    try:
        write_tensors(path.with_name(path.name + STAGED_SUFFIX), tensors, kind=kind, metadata=metadata)
    except StorageError:
        discard_staged(path.parent, int(metadata["epoch"]))
        raise


def commit(state_path: Path, state: dict[str, Any]) -> None:
    """Write ``state.json`` (the commit point, with the SHA-256 of every tensor file of the epoch), then
    move every staged file of this epoch into place."""
    from .integrity import FILES_KEY, file_digests

    folder, epoch = state_path.parent, int(state["epoch"])
    try:
        state = {**state, FILES_KEY: file_digests(folder, state)}
        atomic_write_text(state_path, json.dumps(state, indent=1))
    except OSError:
        discard_staged(folder, epoch)  # not committed: the previous state.json and its files stay the run's
        raise
    roll_forward(folder, epoch)


def _staged_epoch(staged: Path) -> int:
    if staged.is_symlink() or not staged.is_file():
        return -1  # hkt stages regular files only: a link is never rolled into place
    try:
        with safe_open(str(staged), framework="pt") as f:
            return int((f.metadata() or {}).get("epoch", -1))
    except (SafetensorError, OSError, ValueError):
        return -1


def roll_forward(folder: Path, epoch: int) -> None:
    for staged in sorted(folder.glob(f"*{STAGED_SUFFIX}")):
        target = staged.with_name(staged.name[: -len(STAGED_SUFFIX)])
        if _staged_epoch(staged) == epoch:
            try:
                os.replace(staged, target)
            except OSError as exc:
                raise storage_error(target, exc) from None
        else:  # written for an epoch that was never committed
            staged.unlink(missing_ok=True)


def discard_staged(folder: Path, epoch: int) -> None:
    """Delete the files staged for ``epoch``, which was not committed (best effort: a failing disk may
    refuse this too; the next ``--resume`` discards them then)."""
    for staged in folder.glob(f"*{STAGED_SUFFIX}"):
        if _staged_epoch(staged) == epoch:
            try:
                staged.unlink(missing_ok=True)
            except OSError:
                pass


def read_state(path: Path) -> dict[str, Any]:
    """``state.json``, read with bounds and checked against its schema (:mod:`.schemas`)."""
    from . import schemas

    if not path.is_file():
        raise CheckpointError(f"{path.parent} has no {path.name}: it holds no resumable checkpoint "
                              f"(start it again with --force)")
    state = schemas.read_json(path, what="a checkpoint state")
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an hkt checkpoint state (format {state.get('format') if isinstance(state, dict) else None!r})")
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {state.get('format_version')!r}; "
                              f"this hkt reads version {FORMAT_VERSION}")
    return schemas.validate_state(state, path)


def recover(folder: Path) -> dict[str, Any]:
    """The committed state of a run folder, after completing or discarding an interrupted commit."""
    state = read_state(folder / "state.json")
    roll_forward(folder, int(state["epoch"]))
    return state


def check_epoch(meta: dict[str, str], epoch: int, run_id: str, source: Path) -> None:
    """A checkpoint file must come from this run and from the committed epoch."""
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{source} was not written by hkt (no hkt checkpoint metadata)")
    if meta.get("run") != run_id:
        raise CheckpointError(f"{source} belongs to another run ({meta.get('run')!r}, expected {run_id!r})")
    if meta.get("epoch") != str(epoch):
        raise CheckpointError(f"{source} is from epoch {meta.get('epoch')} but state.json committed epoch "
                              f"{epoch}; the run folder is inconsistent")
