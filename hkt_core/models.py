"""Building models from a registered name or a ``module:callable`` reference."""

from __future__ import annotations

from typing import Any

from torch import nn

from .errors import ConfigError


def resolve_callable(ref: str):
    """Import ``module:attr`` under the trust rule in force (:mod:`hkt_core.trust`)."""
    from .trust import resolve_reference

    return resolve_reference(ref)


def build_model(ref: str, manager, **options: Any) -> nn.Module:
    """A fresh model from a model name registered in ``manager`` or ``module:callable``, with keyword options."""
    if ":" in ref:
        factory = resolve_callable(ref)
    else:
        factory = manager.lookup("models", ref)
    try:
        model = factory(**options)
    except TypeError as exc:
        raise ConfigError(f"model {ref!r} rejected options {options}: {exc}") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model {ref!r} returned {type(model).__name__}, not an nn.Module")
    if ":" not in ref:
        model.hkt_model_name = ref
    return model


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
