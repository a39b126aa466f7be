"""The user's own pair cards (stored with ``hkt pairs add``) join a plugin manager as plugin ``user``.

Cards that fail to load are not dropped silently: they make plugin ``user`` report an error, which
``hkt plugins list`` shows and unknown-pair messages mention.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .registry import PluginInfo

if TYPE_CHECKING:
    from .host import PluginManager


def load_user_cards(manager: PluginManager) -> None:
    """Cards a user stored with `hkt pairs add` join the registry as plugin ``user``."""
    from ..pairs.store import user_cards

    if manager.plugins.get("user") is not None:
        return
    registry = manager.registries["pairs"]
    registered: list[str] = []
    errors: list[str] = []
    for path, card_or_error in user_cards():
        if isinstance(card_or_error, Exception):
            errors.append(f"{path.name}: {card_or_error}")
            continue
        if card_or_error.name in registry:
            errors.append(f"{path.name}: pair {card_or_error.name!r} already registered by plugin "
                          f"{registry.entry(card_or_error.name).plugin!r}")
            continue
        registry.add(card_or_error.name, card_or_error, plugin="user", description=card_or_error.description)
        registered.append(card_or_error.name)
    if registered or errors:
        manager.plugins["user"] = PluginInfo("user", None, None, {"pairs": registered} if registered else {},
                                             error="; ".join(errors) or None)


__all__ = ["load_user_cards"]
