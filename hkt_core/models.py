"""Building models from a registered name or a ``module:callable`` reference."""

from __future__ import annotations

from typing import Any

from torch import nn

from .errors import ConfigError


def resolve_callable(ref: str, kind: str | None = None, manager=None):
    """Import ``module:attr`` under the trust rule in force (:mod:`hkt_core.trust`); ``kind`` and
    ``manager`` say what it must be (a reference into a plugin must name what it registered)."""
    from .trust import resolve_reference

    return resolve_reference(ref, kind=kind, manager=manager)


def build_model(ref: str, manager=None, /, **options: Any) -> nn.Module:
    """A fresh model from a model name registered in ``manager`` or ``module:callable``, with keyword options.

    ``ref`` and ``manager`` are positional, so a model's own options may use any name (a card's
    ``ref`` or ``manager`` option reaches the model). ``manager=`` as a keyword still works when
    no manager is given positionally.
    """
    if manager is None and "manager" in options:
        manager = options.pop("manager")
    name = None if ":" in ref else ref
    if name is None:
        from .trust import resolve_factory

        factory, name = resolve_factory(ref, kind="models", manager=manager)
    else:
        factory = manager.lookup("models", ref)
    try:
        model = factory(**options)
    except TypeError as exc:
        raise ConfigError(f"model {ref!r} rejected options {options}: {exc}") from None
    except MemoryError:
        raise ConfigError(f"model {ref!r} with options {options} does not fit in memory; check its sizes") from None
    except RuntimeError as exc:
        if "allocate" not in str(exc):
            raise
        raise ConfigError(f"model {ref!r} with options {options} does not fit in memory ("
                          f"{' '.join(str(exc).split())[:120]}); check its sizes") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model {ref!r} returned {type(model).__name__}, not an nn.Module")
    if name is not None:
        model.hkt_model_name = name
    return model


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
