"""Decorator-style registration: a plugin's hook returns what it provides, the decorator adds it.

Instead of writing the loop in every hook::

    @hookimpl
    def hkt_register_models(registry):
        from .models import MODELS
        for name, factory in MODELS.items():
            registry.add(name, factory, task="classification")

a plugin writes::

    @registers(task="classification")
    def hkt_register_models():
        from .models import MODELS
        return MODELS

The decorated function's name says the kind (``hkt_register_<kind>``). It returns a mapping of
name to object, or an iterable of ``(name, obj)`` / ``(name, obj, metadata)`` items (``metadata``
is a dict of per-item keywords such as ``description``). ``**metadata`` given to the decorator
applies to every item; an item's own metadata wins. The result is an ordinary hook implementation:
the plugin manager stages its additions and commits them all or none.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .markers import hookimpl
from .registry import KIND_ALIASES, KINDS, Registrar

PREFIX = "hkt_register_"


def _items(provided: Any, where: str) -> Iterable[tuple[str, Any, dict[str, Any]]]:
    if provided is None:
        return
    pairs = provided.items() if isinstance(provided, Mapping) else provided
    for item in pairs:
        if not isinstance(item, tuple) or len(item) not in (2, 3) or (len(item) == 3 and not isinstance(item[2], dict)):
            raise TypeError(f"{where} must return a mapping name -> object or (name, object[, metadata]) "
                            f"items, got item {item!r}")
        yield item[0], item[1], (item[2] if len(item) == 3 else {})


def registers(**metadata: Any) -> Callable[[Callable[[], Any]], Callable[[Registrar], None]]:
    """Turn ``hkt_register_<kind>()`` returning what it provides into the hook (module docstring)."""

    def decorate(fn: Callable[[], Any]) -> Callable[[Registrar], None]:
        name = fn.__name__
        kind = name[len(PREFIX):] if name.startswith(PREFIX) else ""
        if kind not in KINDS and kind not in KIND_ALIASES:
            raise TypeError(f"@registers decorates a function named hkt_register_<kind> with kind one of "
                            f"{', '.join(KINDS)}; got {name!r}")

        def hook(registry: Registrar) -> None:
            for entry, obj, own in _items(fn(), f"{fn.__module__}.{name}"):
                registry.add(entry, obj, **{**metadata, **own})

        # name and docs of the plugin's function, but not __wrapped__: pluggy reads the hook's own
        # signature (``registry``) to know what to pass
        for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
            setattr(hook, attr, getattr(fn, attr))
        return hookimpl(hook)

    return decorate


def shipped_cards(package: str, folder: str = "pairs") -> Callable[[Registrar], None]:
    """The ``hkt_register_pairs`` hook of a plugin that ships its pair cards as ``*.toml`` files in
    ``<package>/<folder>``: ``hkt_register_pairs = shipped_cards("my_plugin")``."""

    def hkt_register_pairs(registry: Registrar) -> None:
        from importlib import resources

        from ..pairs.card import register_cards_from

        register_cards_from(registry, resources.files(package) / folder)

    hkt_register_pairs.__doc__ = f"The pair cards shipped in {package}/{folder}."
    return hookimpl(hkt_register_pairs)


__all__ = ["registers", "shipped_cards"]
