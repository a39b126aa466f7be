"""A run folder and the :class:`Run` handle over it.

Files (schemas in docs/training.md): ``config.toml`` (the fully resolved configuration),
``metrics.jsonl`` (one JSON object per epoch), ``child.safetensors`` (best on validation; keys
exactly ``child.state_dict()``'s), ``last.safetensors`` (same keys, last epoch), ``optimizer.safetensors``
and ``method.safetensors`` (resume state), ``state.json`` (the committed epoch, RNG states, best
metric), ``summary.json`` (validation and test metrics, parameters, latency), ``curves.png`` and, for
methods that mix (HKT), ``alignment.json`` (the :class:`~hkt_core.Alignment` the run used; a resumed
run reads it back, so it keeps its mixing points).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import CheckpointError, ConfigError, HKTError

CONFIG = "config.toml"
METRICS = "metrics.jsonl"
BEST = "child.safetensors"
LAST = "last.safetensors"
OPTIMIZER = "optimizer.safetensors"
METHOD_STATE = "method.safetensors"
STATE = "state.json"
SUMMARY = "summary.json"
CURVES = "curves.png"
HISTORY = "history.jsonl"
ALIGNMENT = "alignment.json"

#: Every file a run writes; ``--force`` removes exactly these (and staged ``*.next`` copies).
RUN_FILES = (CONFIG, METRICS, BEST, LAST, OPTIMIZER, METHOD_STATE, STATE, SUMMARY, CURVES, ALIGNMENT, HISTORY)


def is_run_folder(path: Path) -> bool:
    return any((path / name).exists() for name in (CONFIG, STATE, SUMMARY))


#: TensorBoard's event files (``--log tensorboard``).
TENSORBOARD = "tensorboard"
#: Folders a run may write (trackers' files); ``--force`` removes them too.
RUN_FOLDERS = (TENSORBOARD,)


def clear_run_folder(path: Path) -> None:
    import shutil
    from ..io import remove_orphaned_temporaries

    for name in RUN_FILES:
        (path / name).unlink(missing_ok=True)
    for name in RUN_FOLDERS:
        if (path / name).is_dir() and not (path / name).is_symlink():
            shutil.rmtree(path / name)
    for staged in path.glob("*.next"):
        staged.unlink(missing_ok=True)
    remove_orphaned_temporaries(path)


def own_files(path: Path) -> list[Path]:
    """The files that make up the run in ``path`` (an export must never overwrite one)."""
    from .lock import LOCK

    return [path / name for name in (*RUN_FILES, LOCK)] + sorted(path.glob("*.next"))


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The per-epoch records; a line cut short by a crash is skipped."""
    file = path / METRICS
    if not file.is_file():
        return []
    out = []
    from .schemas import read_text

    for line in read_text(file, what="a metrics log").splitlines():
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):  # a line cut short by a crash, or not hkt's
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def write_alignment(path: Path, alignment) -> None:
    """``alignment.json``: the alignment a mixing method used (atomically)."""
    from ..io import atomic_write_text

    atomic_write_text(path / ALIGNMENT, alignment.to_json() + "\n", within=path)


def read_alignment(path: Path):
    """The run's recorded :class:`~hkt_core.Alignment`, or None when it has none."""
    from ..align import Alignment
    from .schemas import read_json

    file = path / ALIGNMENT
    if not file.is_file():
        return None
    data = read_json(file, what="an alignment")
    try:
        return Alignment.from_dict(data)
    except HKTError as exc:
        raise CheckpointError(f"{file}: {exc}") from None
    except (TypeError, ValueError) as exc:  # a field of the wrong type, refused by BlockPair's converters
        raise CheckpointError(f"{file} does not fit the alignment schema ({type(exc).__name__}: "
                              f"{' '.join(str(exc).split())[:120]})") from None


class Run:
    """A finished (or interrupted) run: ``.config``, ``.summary``, ``.metrics``, ``.child()``."""

    def __init__(self, path: str | Path, manager=None, *, trust_code: bool = False) -> None:
        self.path = Path(path)
        if not (self.path / CONFIG).is_file():
            raise ConfigError(f"{self.path} is not a run folder (no {CONFIG})")
        self._manager = manager
        self.trust_code = trust_code
        from .schemas import read_config

        self.config: dict[str, Any] = read_config(self.path / CONFIG)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, pair={self.pair!r}, method={self.method!r})"

    @property
    def pair(self) -> str:
        return self.config.get("pair", "?")

    @property
    def method(self) -> str:
        return self.config.get("method", "?")

    @property
    def summary(self) -> dict[str, Any]:
        """summary.json (empty until the run has finished)."""
        from .schemas import read_json

        file = self.path / SUMMARY
        summary = read_json(file, what="a run summary") if file.is_file() else {}
        if not isinstance(summary, dict):
            raise CheckpointError(f"{file}: must be a JSON object (a table), not {type(summary).__name__}")
        return summary

    @property
    def metrics(self) -> list[dict[str, Any]]:
        """metrics.jsonl as a list of per-epoch records."""
        return read_metrics(self.path)

    @property
    def alignment(self):
        """The :class:`~hkt_core.Alignment` an HKT run used (``alignment.json``), else None."""
        return read_alignment(self.path)

    @property
    def card(self):
        """The card as this run trained it: the stored card with the run's own ``[hkt]`` (and, for a
        child's run, ``[train]``) settings, ``--set`` included (:func:`~hkt_core.train.resolved.card_as_run`)."""
        from ..config import HKTConfig, TrainConfig, structure
        from .resolved import card_as_run

        card = self.card_as_written
        try:
            train = structure(dict(self.config.get("train", {})), TrainConfig)
            hkt = structure(dict(self.config.get("hkt", {})), HKTConfig)
        except (ConfigError, TypeError, ValueError):  # a run folder from before a setting changed shape
            return card
        return card_as_run(card, train, hkt, trains_parent=bool(self.config.get("trains_parent")))

    def resolved(self):
        """This run's pair resolved (:class:`~hkt_core.train.resolved.ResolvedPair`): the card as the
        run trained it, its models and data, under this run folder's trust rule."""
        from .resolved import ResolvedPair

        card = self.card
        return ResolvedPair(card=card, manager=self.manager, train=card.train, origin=self.origin())

    @property
    def card_as_written(self):
        """The pair card the run was started from, as its file said (config.toml's ``[card]``)."""
        from ..pairs.card import PairCard

        try:
            return PairCard.from_dict(self.config["card"], source=str(self.path / CONFIG))
        except ConfigError as exc:
            raise CheckpointError(str(exc)) from None

    def origin(self):
        """The trust rule for the code this run folder names (:mod:`hkt_core.trust`)."""
        from ..trust import run_origin

        pairs = self.manager.registry("pairs")
        trusted = {e.obj.source_folder for e in pairs.entries() if getattr(e.obj, "source_folder", None)}
        return run_origin(self.path, self.card_as_written.source_folder, trusted_folders=trusted, trust_code=self.trust_code)

    def network_ref(self) -> tuple[str, dict[str, Any]]:
        """The registered model (and options) this run trained: the child, or the parent for ``parent``."""
        card = self.card_as_written
        if self.config.get("trains_parent"):
            return card.parent, card.parent_options
        return card.child, card.child_options

    def child(self, which: str = "best", device: str = "cpu") -> nn.Module:
        """The trained child network (``which="best"`` on validation, or ``"last"``), in eval mode."""
        files = {"best": BEST, "last": LAST}
        if which not in files:
            raise ConfigError(f"which = {which!r} is invalid: must be one of best, last")
        file = self.path / files[which]
        if not file.is_file():
            raise CheckpointError(f"{self.path} has no {files[which]} yet (the run saved no checkpoint)")
        from .integrity import verify

        verify(file, run_id=self.config.get("run"))
        return self.network_from_file(file).to(device).eval()

    def network_from_file(self, file: Path) -> nn.Module:
        """This run's network architecture with the weights of ``file`` (keys and shapes checked).

        A method whose deployed network is not the card's child architecture provides the
        classmethod ``deployed_from_state(card, state_dict, manager)`` to rebuild it.
        """
        from ..models import build_model
        from ..trust import scope
        from .checkpoint import load_module_state, read_tensors

        method_cls = self._method_class()
        rebuild = getattr(method_cls, "deployed_from_state", None)
        with scope(self.origin()):
            if rebuild is not None:
                tensors, _ = read_tensors(file, what="weights file")
                return rebuild(self.card, tensors, self.manager)
            ref, options = self.network_ref()
            model = build_model(ref, self.manager, **options)
        load_module_state(model, file, what=f"model {ref!r}")
        return model

    @property
    def manager(self):
        """The plugin manager this run's names are looked up in (the process-wide one unless
        :func:`load_run` was given one), resolved once."""
        if self._manager is None:
            from ..plugins.host import resolve_manager

            self._manager = resolve_manager(None)
        return self._manager

    def _method_class(self):
        registry = self.manager.registry("methods")
        return registry.get(self.method) if self.method in registry else None


def load_run(path: str | Path, manager=None, *, trust_code: bool = False) -> Run:
    """Open a run folder written by :func:`hkt_core.train`.

    The code its configuration names is held to :mod:`hkt_core.trust`'s rule; ``trust_code=True``
    also lets it import modules from the folders the run folder points to.
    """
    return Run(path, manager, trust_code=trust_code)
