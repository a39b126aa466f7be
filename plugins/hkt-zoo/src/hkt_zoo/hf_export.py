"""``hkt export RUN --format hf``: the child as a transformers ``save_pretrained`` folder.

The folder holds ``config.json``, ``model.safetensors`` (and ``generation_config.json`` for a
causal LM), the tokenizer when the pair has one, and ``hkt_export.json`` (the run, the pair, the
method, the architecture and the difference measured). ``AutoModelForSequenceClassification`` /
``AutoModelForCausalLM`` / ``AutoModelForImageClassification.from_pretrained(folder)`` loads it
as a plain transformers model.

The tokenizer: the ``tokenizer`` folder of the card's ``text-files`` data set, the byte-level
tokenizer when that data set names none (written as a transformers fast tokenizer with the same
ids), else the tokenizer of the parent's (or the child's) ``pretrained`` folder when it has one.

Safety: the folder is written under a temporary name beside the target, loaded back from there
with ``local_files_only`` and ``use_safetensors`` and run on example inputs; its output must equal
the child's within ``atol`` before it is renamed into place. A previous export under the target
name is replaced only then (a folder is replaced only when it is an earlier ``hf`` export, marked
by its ``hkt_export.json``, or empty); a failed export leaves it as it was, and the temporary
folders a killed export left are removed by the next export to the same target.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

import torch

from hkt_core import HKTError, adapter_for, atomic_write_text, example_inputs_for

#: the file that marks a folder as an ``hf`` export of hkt
MARKER = "hkt_export.json"
#: the default target, under ``RUN/export``
DEFAULT_NAME = "child-hf"
TMP_SUFFIX = ".tmp"
#: files that make a folder a tokenizer folder
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "vocab.txt", "tokenizer.model",
                   "spiece.model", "sentencepiece.bpe.model")


class HFExportError(HKTError, RuntimeError):
    """The child cannot be exported as a transformers folder, or the folder does not reproduce it."""


def auto_class_name(architecture: str) -> str | None:
    """The ``transformers`` Auto class that loads ``architecture`` (None when none of the three fits)."""
    from .transformers_source import CAUSAL_LM_ARCHITECTURES

    if architecture in CAUSAL_LM_ARCHITECTURES or architecture.endswith(("ForCausalLM", "LMHeadModel")):
        return "AutoModelForCausalLM"
    if architecture.endswith("ForSequenceClassification"):
        return "AutoModelForSequenceClassification"
    if architecture.endswith("ForImageClassification"):
        return "AutoModelForImageClassification"
    return None


def input_names(model: Any, count: int) -> tuple[str, ...]:
    """The keyword names of the model's first ``count`` positional inputs as hkt feeds them."""
    taken = getattr(type(model), "hkt_text_inputs", None)
    if taken is not None:
        return tuple(taken[:count])
    params = [p for p in list(inspect.signature(type(model).forward).parameters)[1:]]
    return tuple(params[:count])


def _fail(message: str) -> None:
    raise HFExportError(f"export --format hf: {message}")


def _check_target(run: Any, target: Path, default: bool) -> None:
    run_dir = run.path.resolve()
    if default and (run.path / "export").is_symlink():
        _fail(f"{run.path / 'export'} is a symbolic link (to {os.readlink(run.path / 'export')}); a run folder's "
              f"export folder must be a real folder: remove the link or give --out")
    if target.is_symlink():
        _fail(f"--out {target} is a symbolic link; give a folder name that is not a link")
    resolved = target.resolve()
    if resolved == run_dir or run_dir.is_relative_to(resolved):
        _fail(f"--out {target} is the run folder or holds it; give a new folder name (the default is "
              f"{run.path / 'export' / DEFAULT_NAME})")
    if target.exists() and not target.is_dir():
        _fail(f"--out {target} is a file; hf writes a folder: give a folder name, e.g. {target.parent / DEFAULT_NAME}")
    if target.is_dir() and any(target.iterdir()) and not (target / MARKER).is_file():
        _fail(f"--out {target} is a folder that is not an hkt hf export (it has no {MARKER}); give a new folder "
              f"name or empty it first: hkt replaces only its own exports")


def _remove_orphans(target: Path) -> None:
    """Temporary folders of ``target`` that a killed export left behind."""
    for orphan in target.parent.glob(f".{target.name[:40]}.*{TMP_SUFFIX}"):
        if orphan.is_symlink() or orphan.is_file():
            orphan.unlink(missing_ok=True)
        elif orphan.is_dir():
            shutil.rmtree(orphan, ignore_errors=True)


@contextlib.contextmanager
def _quiet_transformers():
    """transformers' progress bars off while the folder is written and read back (then as they were)."""
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            hf_logging.enable_progress_bar()


def _umask_permissions(folder: Path) -> None:
    """The files of ``folder`` with the permissions the user's umask gives a new file (a library may
    have written some through ``tempfile``, as 0600)."""
    mask = os.umask(0o022)
    os.umask(mask)
    for file in folder.iterdir():
        if file.is_file() and not file.is_symlink():
            os.chmod(file, 0o666 & ~mask)


def _tokenizer_folder(folder: Any) -> Path | None:
    if not isinstance(folder, str):
        return None
    path = Path(folder).expanduser()
    if path.is_dir() and any((path / name).is_file() for name in TOKENIZER_FILES):
        return path
    return None


def pair_tokenizer(card: Any) -> tuple[Any, str] | tuple[None, None]:
    """``(tokenizer, where it came from)`` of a pair (module docstring), or ``(None, None)``."""
    if card.dataset == "text-files":
        from .text_data import tokenizer_of

        tok = tokenizer_of(dict(card.dataset_options))
        hf = getattr(tok, "tokenizer", None)
        return (hf if hf is not None else tok), f"data set text-files ({tok.name})"
    if card.dataset == "text-classification-files" and card.dataset_options.get("tokenizer"):
        from .text_classification import load_tokenizer

        folder = card.dataset_options["tokenizer"]
        return load_tokenizer(folder), f"data set text-classification-files ({folder})"
    for role, options in (("parent", card.parent_options), ("child", card.child_options)):
        folder = _tokenizer_folder(options.get("pretrained")) if card_model(card, role) == "transformers" else None
        if folder is not None:
            from transformers import AutoTokenizer

            try:
                tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
            except Exception as exc:
                _fail(f"the tokenizer of the {role}'s pretrained folder {folder} could not be read "
                      f"({type(exc).__name__}: {' '.join(str(exc).split())[:160]})")
            return tok, f"the {role}'s pretrained folder ({folder})"
    return None, None


def card_model(card: Any, role: str) -> str:
    return card.parent if role == "parent" else card.child


def _token_ids(tokenizer: Any) -> dict[str, int]:
    ids = {}
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        value = getattr(tokenizer, name, None)
        if isinstance(value, int):
            ids[name] = value
    if "bos_token_id" not in ids and "eos_token_id" in ids:
        ids["bos_token_id"] = ids["eos_token_id"]
    return ids


def replace_folder(tmp: Path, target: Path) -> None:
    """The finished export ``tmp`` in place of ``target``: an earlier export (or an empty folder)
    there is moved aside first and removed once replaced, or put back when the replacement fails
    (the ``OSError`` is raised). Shared by every format this plugin writes."""
    old = None
    if target.exists():
        old = target.parent / f".{target.name[:40]}.{secrets.token_hex(4)}.old{TMP_SUFFIX}"
        os.replace(target, old)
    try:
        os.replace(tmp, target)
    except OSError:
        if old is not None and not target.exists():
            os.replace(old, target)
            old = None
        raise
    finally:
        if old is not None and old.exists():
            shutil.rmtree(old, ignore_errors=True)


def export_hf(run: Any, out: str | Path | None = None, *, atol: float = 1e-4) -> tuple[Path, float]:
    """Write the run's best child as a ``save_pretrained`` folder (module docstring); returns the
    folder and the largest difference between its output and the child's."""
    try:
        import transformers
        from transformers import PreTrainedModel
    except ImportError:
        _fail("it needs transformers: pip install 'hkt-zoo[transformers]'")
    target = Path(out) if out is not None else run.path / "export" / DEFAULT_NAME
    _check_target(run, target, out is None)
    child = run.child()
    if not isinstance(child, PreTrainedModel):
        ref, _ = run.network_ref()
        _fail(f"it writes transformers models (the zoo's transformers source); this run's network {ref!r} is a "
              f"{type(child).__name__}: use --format safetensors, onnx or pt2"
              f"{f', or {ref}' if ref in ('torchvision', 'timm') else ''}")
    architecture = type(child).__name__
    auto_name = auto_class_name(architecture)
    loader = getattr(transformers, auto_name) if auto_name else getattr(transformers, architecture)
    card = run.card_as_written
    tokenizer, tokenizer_source = pair_tokenizer(card)
    inputs = example_inputs_for(child, [(3, *s[1:]) for s in card.input_shapes], card.input_dtypes, run.manager)
    adapter = adapter_for(child, run.manager)
    with torch.no_grad():
        expected = adapter.prediction(child(*inputs))
    names = input_names(child, len(inputs))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _fail(f"cannot create the folder {target.parent} ({exc.strerror or exc})")
    _remove_orphans(target)
    tmp = target.parent / f".{target.name[:40]}.{secrets.token_hex(4)}{TMP_SUFFIX}"
    try:
        tmp.mkdir()
        config = child.config
        if hasattr(config, "use_cache"):
            config.use_cache = True   # off while training; generation wants it
        if tokenizer is not None and auto_name == "AutoModelForCausalLM":
            for key, value in _token_ids(tokenizer).items():
                setattr(config, key, value)
                if getattr(child, "generation_config", None) is not None:
                    setattr(child.generation_config, key, value)
        with _quiet_transformers():
            child.save_pretrained(str(tmp), safe_serialization=True)
            if tokenizer is not None:
                tokenizer.save_pretrained(str(tmp))
            loaded = loader.from_pretrained(str(tmp), local_files_only=True, use_safetensors=True,
                                            trust_remote_code=False).eval()
        with torch.no_grad():
            got = adapter.prediction(loaded(**dict(zip(names, inputs))))
        diff = float((got.float() - expected.float()).abs().max()) if got.shape == expected.shape else float("inf")
        if not diff <= atol:
            kept = "the previous export is kept" if target.exists() else "nothing was kept"
            _fail(f"the exported folder's output differs from the child's by {diff:.3g} (allowed {atol:g}); {kept}")
        record = {"format": "hf", "pair": run.pair, "method": run.method, "run": run.config.get("run"),
                  "architecture": architecture, "auto_class": auto_name, "tokenizer": tokenizer_source,
                  "max_difference": diff, "transformers": transformers.__version__}
        atomic_write_text(tmp / MARKER, json.dumps(record, indent=2) + "\n")
        _umask_permissions(tmp)
        replace_folder(tmp, target)
    except OSError as exc:
        _fail(f"cannot write {target} ({exc.strerror or exc}); the previous export, if any, is kept")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target, diff


__all__ = ["DEFAULT_NAME", "MARKER", "HFExportError", "auto_class_name", "export_hf", "input_names",
           "pair_tokenizer"]
