"""Building models from a registered name or a ``module:callable`` reference."""

from __future__ import annotations

import importlib
import sys
from typing import Any

from torch import nn

from .errors import ConfigError


def resolve_callable(ref: str):
    """Import ``module:attr`` (the current directory is importable)."""
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"{ref!r}: expected 'module:callable'")
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{ref!r}: cannot import module {module_name!r} ({exc})") from None
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"{ref!r}: module {module_name!r} has no attribute {attr!r}") from None
    return obj


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
