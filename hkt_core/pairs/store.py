"""The user's store of pair cards: ``$HKT_HOME/pairs/*.toml``, written by ``hkt pairs add``."""

from __future__ import annotations

from pathlib import Path

import attrs
from typing import TYPE_CHECKING

from ..errors import ConfigError
from .card import PairCard, hkt_home

if TYPE_CHECKING:
    from ..plugins.host import PluginManager


def user_pairs_dir() -> Path:
    return hkt_home() / "pairs"


def user_cards() -> list[tuple[Path, PairCard | Exception]]:
    folder = user_pairs_dir()
    if not folder.is_dir():
        return []
    out: list[tuple[Path, PairCard | Exception]] = []
    for path in sorted(folder.glob("*.toml")):
        try:
            out.append((path, PairCard.from_toml(path, stored=True)))
        except ConfigError as exc:
            out.append((path, exc))
    return out


def add_user_card(path: str | Path, *, known_pairs: set[str] = frozenset(), force: bool = False,
                  check=None, manager: PluginManager | None = None) -> Path:
    """Validate a card and store it in the user's folder atomically; a bad card writes nothing.

    The stored card records the folder it came from (``source_folder``), with the relative paths of
    its options joined to it when ``manager`` names their factories; ``check(card)`` (e.g.
    :func:`hkt_core.train.checks.check_card`) may refuse it before anything is written.
    """
    path = Path(path)
    card = attrs.evolve(PairCard.from_toml(path, manager=manager), source_folder=str(path.resolve().parent))
    if check is not None:
        check(card)
    if card.name in known_pairs and not force:
        raise ConfigError(f"pair {card.name!r} is already registered; pick another name")
    folder = user_pairs_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{card.name}.toml"
    if target.exists() and not force:
        raise ConfigError(f"{target} already exists; remove it first or pass --force")
    from ..io import atomic_write_text

    atomic_write_text(target, card.to_toml())
    return target


def remove_user_card(name: str, manager: PluginManager | None = None) -> Path:
    """Delete the user's stored card of pair ``name`` (added with ``hkt pairs add``); returns its path.
    With ``manager``, a name another plugin registers is reported as that plugin's."""
    found = [path for path, card in user_cards()
             if (card.name if isinstance(card, PairCard) else path.stem) == name]
    if not found:
        registry = manager.registry("pairs") if manager is not None else None
        if registry is not None and name in registry:
            raise ConfigError(f"pair {name!r} comes from plugin {registry.entry(name).plugin!r}, not from "
                              f"`hkt pairs add`; only cards you added can be removed (`hkt pairs list --user`)")
        mine = sorted(card.name if isinstance(card, PairCard) else path.stem for path, card in user_cards())
        raise ConfigError(f"no card named {name!r} was added with `hkt pairs add`; added: "
                          f"{', '.join(mine) or 'none'}")
    for path in found:
        path.unlink()
    return found[0]
