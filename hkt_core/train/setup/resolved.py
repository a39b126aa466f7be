"""One resolved pair: a pair card turned, once, into what every command works on.

:func:`resolve_pair` takes a card (or a registered pair's name) and a plugin manager and returns a
:class:`ResolvedPair`: the card as it will run (overrides applied), the parent and the child (built
on first use, inside the card's trust scope, each exactly once), their adapters, the data splits
(loaded on first use) and the example inputs. The trainer and its pre-flight, ``hkt pairs add``'s
checks, ``hkt align``, the parent cache key and the plugins' commands all take one, so they agree
on the models and on the tensors they trace and align.

**The example-input rule** (:attr:`ResolvedPair.example_inputs`): the first samples of the pair's
training split (as many as the batch of the card's ``input_shapes``, at least 1), in the data's own
dtypes and structure, when the card's data set loads; otherwise the inputs the *child's* adapter
makes for the card's ``input_shapes`` (in its ``input_dtypes``). :attr:`ResolvedPair.example_source` says which one it was.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
import torch
from torch import nn

from ...adapters import Adapter, adapter_for, example_inputs_for
from ...config import TrainConfig
from ...errors import ConfigError
from ...models import build_model
from ...pairs.card import PairCard
from ...trust import card_origin, scope
from ..loop.data import Splits, load_splits, split_batch
from ..loop.seeding import seed_everything
from ..folders.run import card_as_run, set_pair_resolver

if TYPE_CHECKING:
    from ...config import HKTConfig
    from ...plugins.host import PluginManager

ROLES = ("parent", "child")


@attrs.define(eq=False)
class ResolvedPair:
    """A card resolved against a plugin manager; see the module docstring. Build with :func:`resolve_pair`."""

    card: PairCard
    manager: PluginManager
    train: TrainConfig
    _models: dict[str, nn.Module] = attrs.field(factory=dict, repr=False)
    _splits: dict[bool, Splits] = attrs.field(factory=dict, repr=False)
    _seeds: dict[str, int] = attrs.field(factory=dict, repr=False)
    _example: tuple[torch.Tensor, ...] | None = attrs.field(default=None, repr=False)
    #: where the example inputs came from (``data set NAME (train split, N samples)`` or the card's shapes)
    example_source: str = ""
    #: the trust rule its references resolve under (:mod:`hkt_core.trust`; default: the card's own)
    origin: Any = attrs.field(default=None, repr=False)

    def scope(self):
        """The trust scope of this pair's references (a context manager)."""
        return scope(self.origin if self.origin is not None else card_origin(self.card))

    # -- models --------------------------------------------------------------------------------
    def model(self, role: str) -> nn.Module:
        """The ``parent`` or the ``child``, built on first use (seed the RNG before for a given init)."""
        if role not in ROLES:
            raise ConfigError(f"role {role!r} is invalid: one of {', '.join(ROLES)}")
        if role not in self._models:
            ref, options = self.reference(role)
            with self.scope():
                self._models[role] = build_model(ref, self.manager, **options)
            self._seeds.pop(role, None)
        return self._models[role]

    def seeded(self, role: str, seed: int) -> nn.Module:
        """The ``role`` model as built right after :func:`~hkt_core.train.loop.seeding.seed_everything`
        with ``seed`` (the run's initialisation); a model built otherwise before is built again."""
        if self._seeds.get(role, object()) != seed or role not in self._models:
            self._models.pop(role, None)
            seed_everything(seed)
            self.model(role)
            self._seeds[role] = seed
        return self._models[role]

    def reference(self, role: str) -> tuple[str, dict[str, Any]]:
        """The card's model reference and options of ``role``."""
        if role == "parent":
            return self.card.parent, dict(self.card.parent_options)
        return self.card.child, dict(self.card.child_options)

    @property
    def parent(self) -> nn.Module:
        return self.model("parent")

    @property
    def child(self) -> nn.Module:
        return self.model("child")

    def built(self, role: str) -> bool:
        """Whether ``role``'s model has been built yet."""
        return role in self._models

    def network(self, trains_parent: bool) -> nn.Module:
        """The network a method trains: the parent for ``trains_parent`` methods, else the child."""
        return self.model("parent" if trains_parent else "child")

    def adapter(self, role: str) -> Adapter:
        return adapter_for(self.model(role), self.manager)

    @property
    def parent_adapter(self) -> Adapter:
        return self.adapter("parent")

    @property
    def child_adapter(self) -> Adapter:
        return self.adapter("child")

    # -- data ----------------------------------------------------------------------------------
    def splits(self, *, parent: bool = False) -> Splits:
        """The run's splits (``parent=True``: the parent's data), loaded on first use."""
        if parent not in self._splits:
            with self.scope():
                self._splits[parent] = load_splits(self.card, self.train, self.manager, parent=parent)
        return self._splits[parent]

    def has_splits(self, *, parent: bool = False) -> bool:
        return parent in self._splits

    # -- example inputs ------------------------------------------------------------------------
    @property
    def example_inputs(self) -> tuple[torch.Tensor, ...]:
        """The example inputs by the module's rule: a real batch of the data, else the card's shapes."""
        if self._example is None:
            self._example, self.example_source = self._make_examples()
        return self._example

    def _make_examples(self) -> tuple[tuple[torch.Tensor, ...], str]:
        try:
            train = self.splits().train
        except Exception:
            train = None
        if train is not None and len(train) > 0:
            from torch.utils.data import default_collate

            wanted = self.card.input_shapes[0][0] if self.card.input_shapes and self.card.input_shapes[0] else 2
            n = max(1, min(int(wanted), len(train)))
            inputs, _ = split_batch(default_collate([train[i] for i in range(n)]), torch.device("cpu"))
            return tuple(inputs), f"data set {self.card.dataset} (train split, {n} samples)"
        child = self.child
        dtypes = tuple(getattr(self.card, "input_dtypes", ()) or ())
        made = example_inputs_for(child, self.card.input_shapes, dtypes, self.manager)
        stated = f"the card's input_shapes {[list(s) for s in self.card.input_shapes]}"
        return made, stated + (f" in {', '.join(dtypes)}" if dtypes else "") + " (child's adapter)"

    def examples_on(self, device: torch.device | str) -> tuple[torch.Tensor, ...]:
        return tuple(t.to(device) for t in self.example_inputs)


def resolve_pair(card: PairCard | str, manager: PluginManager, *, train: TrainConfig | None = None,
                 hkt: HKTConfig | None = None, trains_parent: bool = False) -> ResolvedPair:
    """A :class:`ResolvedPair` of ``card`` (a card, or a pair name registered in ``manager``); with
    ``train`` / ``hkt``, the card as a run with those settings trains it (:func:`card_as_run`)."""
    if isinstance(card, str):
        card = manager.lookup("pairs", card)
    card = card.with_resolved_paths(manager)   # relative paths of its options: against its folder
    if train is not None or hkt is not None:
        card = card_as_run(card, train if train is not None else card.train, hkt if hkt is not None else card.hkt,
                           trains_parent=trains_parent)
    return ResolvedPair(card=card, manager=manager, train=train if train is not None else card.train)


# -- what `hkt align --method activation` reads from a pair ------------------------------------

def calibration_for_pair(card: Any, manager: PluginManager, samples: int | None = None, seed: int | None = None):
    """``samples`` samples of ``card``'s training split (the split training uses, no augmentation)."""
    from ...align.activation import CALIBRATION_SAMPLES, CALIBRATION_SEED, calibration_from_dataset

    pair = card if isinstance(card, ResolvedPair) else resolve_pair(card, manager)
    splits = pair.splits()
    return calibration_from_dataset(splits.train, CALIBRATION_SAMPLES if samples is None else samples,
                                    CALIBRATION_SEED if seed is None else seed,
                                    source=f"dataset {pair.card.dataset} (train split)")


def trained_parent(card: Any, manager: PluginManager, weights: Any = None) -> nn.Module:
    """``card``'s trained parent: from ``weights`` (a safetensors file) or the parent cache; never
    trains one (``hkt train PAIR --method parent`` does)."""
    from ..folders import parents

    pair = card if isinstance(card, ResolvedPair) else resolve_pair(card, manager)
    if weights is not None:
        return parents.load_parent_file(pair.card, manager, weights)[0]
    pretrained = parents.pretrained_parent(pair.card, manager, model=pair.parent)  # the card's own weights
    if pretrained is not None:
        return pretrained[0]
    name = pair.card.name

    def missing(folder, train) -> None:
        raise ConfigError(f"pair {name!r} has no trained parent cached ({folder}); the activation method "
                          f"compares the trained parent: run `hkt train {name} --method parent` first, or "
                          f"give --parent-weights FILE")

    return parents.cached_parent(pair.card, manager, train_missing=missing, say=lambda message: None)[0]


set_pair_resolver(ResolvedPair)   # Run.resolved() (folders/ imports nothing above it)


__all__ = ["ResolvedPair", "calibration_for_pair", "card_as_run", "resolve_pair", "trained_parent"]

