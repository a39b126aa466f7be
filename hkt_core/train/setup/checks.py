"""What ``hkt pairs add`` checks before it stores a card, so a stored card never fails later on a name.

:func:`check_card` refuses, in one line, a card whose task, models or data set do not exist (a
registered name, or a ``module:callable`` that resolves under :mod:`hkt_core.trust`, beside the
card included) or whose ``stages`` the two models cannot provide (both are built and traced on the
example inputs of :mod:`hkt_core.train.setup.resolved` and aligned with its ``stages`` and manual pairs). The full
pre-flight with data and a training step is ``hkt pairs check``.
"""

from __future__ import annotations

from ...errors import ConfigError, HKTError, RegistryError
from ...pairs.card import PairCard


def check_card(card: PairCard, manager) -> None:
    """Raise :class:`ConfigError` naming the first name of ``card`` that does not exist, or why its
    ``stages`` cannot be aligned."""
    check_names(card, manager)
    check_stages(card, manager)


def check_names(card: PairCard, manager) -> None:
    """The card's task, models and data set exist (registered, or resolvable under the trust rule)."""
    from ...trust import card_origin, scope

    with scope(card_origin(card)):
        _exists(card, "task", card.task, manager, "tasks")
        _exists(card, "parent", card.parent, manager, "models")
        _exists(card, "child", card.child, manager, "models")
        _exists(card, "dataset", card.dataset, manager, "datasets")


def check_stages(card: PairCard, manager) -> None:
    """The two models can be aligned with the card's ``stages`` and manual pairs."""
    from ...trust import card_origin, scope

    with scope(card_origin(card)):
        _stages_feasible(card, manager)


def _exists(card: PairCard, field: str, name: str, manager, kind: str) -> None:
    from ...trust import resolve_reference

    try:
        if ":" in name and kind != "tasks":
            obj = resolve_reference(name, kind=kind, manager=manager)
            if not callable(obj):
                raise ConfigError(f"{name!r} is a {type(obj).__name__}, not a callable")
        else:
            manager.lookup(kind, name)
    except (ConfigError, RegistryError) as exc:
        raise ConfigError(f"card {card.name!r}: {field} = {name!r} does not exist: {exc}") from None


def _stages_feasible(card: PairCard, manager) -> None:
    from ...align import align
    from .resolved import resolve_pair

    try:
        pair = resolve_pair(card, manager)   # the example inputs `hkt train` and `hkt align` use
        align(pair.parent, pair.child, pair.example_inputs, stages=card.stages, pairs=card.alignment,
              layouts=dict(card.layouts), manager=manager)
    except HKTError as exc:
        raise ConfigError(f"card {card.name!r}: stages = {card.stages} cannot be aligned: {exc}") from None
