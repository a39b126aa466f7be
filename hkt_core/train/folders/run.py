"""The :class:`Run` handle over a run folder (its layout is :mod:`.files`), and the card as a run
trained it (:func:`card_as_run`).

A run's pair is resolved by the layer above (:mod:`hkt_core.train.setup.resolved`), which hands
its resolver to :func:`set_pair_resolver` when it is imported (``hkt_core.train`` always imports
it): folders/ imports nothing above itself.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
from torch import nn

from ...config import unstructure
from ...errors import CheckpointError, ConfigError
from .files import (  # noqa: F401  (the file names, served here as before)
    ALIGNMENT, BEST, CONFIG, CURVES, HISTORY, LAST, METHOD_STATE, METRICS, OPTIMIZER, RUN_FILES, RUN_FOLDERS, STATE, SUMMARY, TENSORBOARD, clear_run_folder, is_run_folder, own_files, read_alignment, read_metrics, write_alignment)
from .parents import parent_train_config

if TYPE_CHECKING:
    from ...config import HKTConfig, TrainConfig
    from ...pairs.card import PairCard


def card_as_run(card: PairCard, train: TrainConfig, hkt: HKTConfig, *, trains_parent: bool = False) -> PairCard:
    """``card`` as a run trains it: its ``[hkt]`` is the run's, and for a child's run its ``[train]``
    is the run's too. The parent's own settings are written out in full in ``[parent_train]``, so
    the parent a run card describes is the parent the card it came from describes."""
    parent_train = unstructure(parent_train_config(card))
    changes: dict[str, Any] = {"hkt": hkt, "parent_train": parent_train}
    if not trains_parent:
        changes["train"] = train
    return attrs.evolve(card, **changes)


#: how :meth:`Run.resolved` resolves a run's pair: ``resolver(card, manager, train, origin)``
_pair_resolver: Callable[..., Any] | None = None


def set_pair_resolver(resolver: Callable[..., Any]) -> None:
    """The setup layer's pair resolver (:class:`~hkt_core.train.setup.resolved.ResolvedPair`)."""
    global _pair_resolver
    _pair_resolver = resolver


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
        child's run, ``[train]``) settings, ``--set`` included (:func:`card_as_run`)."""
        from ...config import HKTConfig, TrainConfig, structure

        card = self.card_as_written
        try:
            train = structure(dict(self.config.get("train", {})), TrainConfig)
            hkt = structure(dict(self.config.get("hkt", {})), HKTConfig)
        except (ConfigError, TypeError, ValueError):  # a run folder from before a setting changed shape
            return card
        return card_as_run(card, train, hkt, trains_parent=bool(self.config.get("trains_parent")))

    def resolved(self):
        """This run's pair resolved (:class:`~hkt_core.train.setup.resolved.ResolvedPair`): the card as the
        run trained it, its models and data, under this run folder's trust rule."""
        if _pair_resolver is None:   # hkt_core.train imports the setup layer, which sets it
            raise ConfigError("no pair resolver: import hkt_core.train (its setup layer resolves pairs)")
        card = self.card
        return _pair_resolver(card=card, manager=self.manager, train=card.train, origin=self.origin())

    @property
    def card_as_written(self):
        """The pair card the run was started from, as its file said (config.toml's ``[card]``)."""
        from ...pairs.card import PairCard

        try:
            return PairCard.from_dict(self.config["card"], source=str(self.path / CONFIG))
        except ConfigError as exc:
            raise CheckpointError(str(exc)) from None

    def origin(self):
        """The trust rule for the code this run folder names (:mod:`hkt_core.trust`)."""
        from ...trust import run_origin

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
        from ...models import build_model
        from ...trust import scope
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
            from ...plugins.host import resolve_manager

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
