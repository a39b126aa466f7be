"""Trained parents: a cache under ``$HKT_HOME/parents/``, a user's safetensors file, or a
pretrained parent named by its card.

No pretrained weights can be downloaded, so a parent is trained from scratch by the ``parent``
method, unless its card builds it with local weights (a model source that loaded weights marks the
model with ``hkt_pretrained``, e.g. hkt-zoo's ``weights`` / ``pretrained`` options): such a parent is
used as it is, never trained and never cached (:func:`pretrained_parent`).

Before any child trains, a parent is checked (:func:`check_parent`): a non-finite validation loss
(diverged) or, for class scores, a validation accuracy no better than always predicting the most
frequent class (untrained) is refused in one line naming what to change. A cached parent is judged
by its run's validation numbers, a pretrained one by one evaluation on the pair's validation split
(recorded in the run's summary). ``hkt train --parent-epochs N`` sets the parent's epochs
(``[parent_train] epochs`` of the card; ``--epochs`` is the children's). A cache entry is itself a run folder, ``$HKT_HOME/parents/<parent>-<key>/``, where ``key``
hashes what the trained weights depend on: the parent's architecture (reference, options, every
parameter's name and shape), its data (data set, the options it is trained with: ``[dataset_options]``
updated by ``[parent_dataset_options]``, task) and its training settings. It does
not hash the pair's name, its child, its stages or its alignment: two pairs that share a parent
trained the same way share its cache entry, and ``hkt train --stages N`` reuses the cached parent.
An entry is complete once it has its ``summary.json``; an interrupted parent run is resumed, not
restarted.

The key also holds what hkt does not fix but the weights depend on: the intra-op thread count
(``train.threads``: another count sums in another order), the device type the parent trains on
(``auto`` resolved) and the torch version. A parent is never shared between runs that would have
trained different weights.

Key versions: 3 dropped the pair's name from the key (and names the folder after the parent); 4
added the thread count, the device type and the torch version. An
entry written under an older version is never found by this version: its parent is trained once
more into a new entry, and the old folder stays on disk until the user deletes it.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import nn

from ...config import TrainConfig, unstructure
from ...io import atomic_write
from ...models import build_model
from ...pairs.card import PairCard, hkt_home
from .checkpoint import load_module_state
from .identity import DEFAULTED
from .integrity import sha256_file, verify
from .files import BEST, CONFIG, METRICS, STATE, SUMMARY

KEY_VERSION = 4
#: settings that do not change the trained weights (the device is in the key as its resolved type;
#: a parent trains alone: no frozen parent to fold, no Genetic Attention)
_NOT_IN_KEY = ("device", "num_workers", "compile", "channels_last", "fold_parent_bn", "fused_attention")


def device_type(name: str) -> str:
    """The device type a ``train.device`` setting trains on (``auto``: cuda when available)."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def parent_train_config(card: PairCard) -> TrainConfig:
    """The card's ``[train]`` with its ``[parent_train]`` overrides: how the pair's parent is trained."""
    from ...config import structure

    data = unstructure(card.train)
    data.update(card.parent_train)
    return structure(data, TrainConfig)


def architecture_signature(card: PairCard, manager=None, *, model: nn.Module | None = None) -> list[list]:
    """Every parameter and buffer name with its shape: a model resized under the same name gets
    another cache entry instead of a checkpoint that no longer fits. ``model``: the card's parent
    already built (a :class:`~hkt_core.train.setup.resolved.ResolvedPair`'s), read instead of a second build."""
    if model is None:
        model = build_model(card.parent, manager, **card.parent_options)
    return [[name, list(t.shape)] for name, t in model.state_dict().items()]


def parent_key(card: PairCard, train: TrainConfig, manager=None, *, model: nn.Module | None = None) -> str:
    settings = {k: v for k, v in unstructure(train).items() if k not in _NOT_IN_KEY}
    # the moved KD settings (config.MOVED_SETTINGS) were TrainConfig fields when the keys of existing
    # caches were computed: they keep the card's value, else their last default, in the key
    from ...config import MOVED_DEFAULTS

    for key, default in MOVED_DEFAULTS.items():
        name = key.removeprefix("train.")
        if settings.get(name) is None:
            pinned = getattr(card.train, name, None)
            settings[name] = pinned if pinned is not None else default
    # settings added later (identity.DEFAULTED) leave the keys of existing caches as they were
    # while at their default
    for key, default in DEFAULTED.items():
        name = key.removeprefix("train.")
        if settings.get(name) == default:
            del settings[name]
    material = {"version": KEY_VERSION, "parent": card.parent,
                "architecture": architecture_signature(card, manager, model=model),
                "parent_options": card.parent_options, "dataset": card.dataset,
                "dataset_options": card.parent_data_options(), "task": card.task, "train": settings,
                "threads": train.threads, "device_type": device_type(train.device), "torch": torch.__version__}
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()[:12]


def cache_folder(card: PairCard, train: TrainConfig, manager=None, key: str | None = None, *,
                 model: nn.Module | None = None) -> Path:
    """``$HKT_HOME/parents/<parent>-<key>``: the parent's reference made a folder name, plus the key."""
    slug = re.sub(r"[^A-Za-z0-9_.]+", "-", card.parent).strip("-.") or "parent"
    return hkt_home() / "parents" / f"{slug}-{key or parent_key(card, train, manager, model=model)}"


def is_complete(folder: Path) -> bool:
    return (folder / SUMMARY).is_file() and (folder / BEST).is_file()


@attrs.frozen
class ParentSource:
    """Where a run's parent came from (recorded in config.toml's ``[parent]``)."""

    source: str  # "cache" or "file"
    path: str
    sha256: str
    key: str = ""
    #: digest of the tensors (:func:`weights_sha256`): equal for equal weights, whichever file holds them
    weights_sha256: str = ""

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def weights_sha256(path: str | Path) -> str:
    """SHA-256 of the tensors of a safetensors file (names, dtypes, shapes and bytes, by name),
    not of the file: two trainings that produced the same weights have the same digest even though
    their files' metadata (run id, epoch) differ."""
    from safetensors.torch import load_file

    h = hashlib.sha256()
    for name, tensor in sorted(load_file(str(path)).items()):
        t = tensor.contiguous()
        h.update(f"{name}|{t.dtype}|{list(t.shape)}|".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def build_parent(card: PairCard, manager) -> nn.Module:
    return build_model(card.parent, manager, **card.parent_options)


def load_parent_file(card: PairCard, manager, path: str | Path, *,
                     into: nn.Module | None = None) -> tuple[nn.Module, ParentSource]:
    """The pair's parent architecture with a user's weights; keys and shapes must match exactly.
    ``into``: the parent already built, loaded in place (modules holding it see the weights)."""
    path = Path(path)
    parent = build_parent(card, manager) if into is None else into
    load_module_state(parent, path, what=f"parent {card.parent!r} of pair {card.name!r}")
    return parent, ParentSource("file", str(path.resolve()), sha256_file(path), "", weights_sha256(path))


def cached_parent(card: PairCard, manager, *, train_missing, say=None, device: str | None = None,
                  into: nn.Module | None = None) -> tuple[nn.Module, ParentSource]:
    """The cached parent of ``card``; when absent ``train_missing(folder, train_config)`` trains it
    (on ``device`` when given, else the card's: the device is part of the key). ``into``: the
    parent already built: its architecture signs the key and the weights load into it in place."""
    train = parent_train_config(card)
    if device is not None:
        train = attrs.evolve(train, device=device)
    key = parent_key(card, train, manager, model=into)
    folder = cache_folder(card, train, manager, key)
    if not is_complete(folder):
        (say or _say)(f"no trained parent cached for pair {card.name!r} ({card.parent}); training the parent "
                      f"first ({train.epochs} epochs, {train.threads} thread(s)) into {folder}")
        train_missing(folder, train)
    else:
        (say or _say)(f"using the cached parent {folder}")
    parent = build_parent(card, manager) if into is None else into
    verify(folder / BEST)
    load_module_state(parent, folder / BEST, what=f"parent {card.parent!r} of pair {card.name!r}")
    return parent, ParentSource("cache", str(folder), sha256_file(folder / BEST), key,
                                weights_sha256(folder / BEST))


def publish_parent_run(card: PairCard, train: TrainConfig, run_dir: Path, manager=None) -> Path | None:
    """Copy a finished ``parent`` run into the cache (if its settings' entry is not there yet).

    A run whose settings changed on ``--resume`` (its ``history.jsonl``) is not published: the
    cache key says how the weights were trained, and they were trained under two settings.
    """
    from .identity import read_history

    folder = cache_folder(card, train, manager)
    if is_complete(folder) or folder.resolve() == run_dir.resolve() or read_history(run_dir):
        return None
    folder.mkdir(parents=True, exist_ok=True)
    for name in (CONFIG, METRICS, BEST, SUMMARY, STATE):  # state.json carries the weights' SHA-256
        if (run_dir / name).is_file():
            src = run_dir / name
            atomic_write(folder / name, lambda tmp, src=src: shutil.copyfile(src, tmp))
    return folder


#: ``ParentSource.source`` of a parent whose card built it with its own weights
PRETRAINED = "pretrained"


def _tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """The digest :func:`weights_sha256` computes, of tensors in memory (names, dtypes, shapes, bytes)."""
    h = hashlib.sha256()
    for name, tensor in sorted(tensors.items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{list(t.shape)}|".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def pretrained_parent(card: PairCard, manager, *,
                      model: nn.Module | None = None) -> tuple[nn.Module, ParentSource] | None:
    """The card's parent as built, when its factory loaded weights into it (``model.hkt_pretrained``
    names the local file or folder they came from); None for a parent that needs training.
    ``model``: the card's parent already built (read instead of a second build)."""
    parent = build_parent(card, manager) if model is None else model
    origin = getattr(parent, "hkt_pretrained", None)
    if not origin:
        return None
    path = Path(str(origin))
    files = sorted(path.glob("*.safetensors")) if path.is_dir() else [path]
    h = hashlib.sha256()
    for file in files:
        h.update(sha256_file(file).encode())
    return parent, ParentSource(PRETRAINED, str(path.resolve()), h.hexdigest(), "",
                                _tensors_sha256(dict(parent.state_dict())))


def chance_accuracy(dataset) -> float | None:
    """The accuracy of always predicting ``dataset``'s most frequent class (integer targets), else None."""
    counts: dict[int, int] = {}
    for i in range(len(dataset)):
        target = dataset[i][1]
        if isinstance(target, torch.Tensor):
            if target.numel() != 1 or target.is_floating_point():
                return None
            target = int(target)
        if not isinstance(target, int) or isinstance(target, bool):
            return None
        counts[target] = counts.get(target, 0) + 1
    total = sum(counts.values())
    return max(counts.values()) / total if total else None


def check_parent(card: PairCard, val: dict[str, Any], task: Any, val_split, *, how: str, epochs: int | None) -> None:
    """Refuse a diverged or untrained parent (see the module docstring), in one line naming the fix.

    ``val`` holds the parent's validation loss and metrics, ``how`` says where they come from;
    ``epochs`` is how long it was trained (None: pretrained)."""
    import math

    from ...errors import TrainingDiverged

    pretrained = ("fix: give the parent weights trained on this task (its weights option in [parent_options]) "
                  "or drop them to let hkt train it")
    loss = val.get("loss")
    if not isinstance(loss, (int, float)) or not math.isfinite(loss):
        fix = pretrained if epochs is None else ("fix: lower its learning rate ([parent_train] lr) or clip its "
                                                 "gradients ([parent_train] grad_clip = 1.0)")
        raise TrainingDiverged(f"the parent of pair {card.name!r} ({card.parent}, {how}) has diverged: validation "
                               f"loss {loss}; no child was trained; {fix}")
    fix = pretrained if epochs is None else (f"fix: train it longer (hkt train --parent-epochs N, or [parent_train] "
                                             f"epochs; it trained {epochs}) or tune its [parent_train] lr")
    metric = getattr(task, "primary_metric", None)
    if metric != "accuracy" or not getattr(task, "higher_is_better", False) or val_split is None:
        return
    accuracy, chance = val.get("accuracy"), chance_accuracy(val_split)
    if isinstance(accuracy, (int, float)) and chance is not None and accuracy <= chance:
        from ...errors import ConfigError

        raise ConfigError(f"the parent of pair {card.name!r} ({card.parent}, {how}) is no better than chance: "
                          f"validation accuracy {accuracy:.4f} <= {chance:.4f} (always its most frequent class); "
                          f"no child was trained; {fix}")


def _say(message: str) -> None:
    print(f"hkt: {message}", file=sys.stderr, flush=True)
