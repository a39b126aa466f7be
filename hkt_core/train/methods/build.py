"""Building a method: the one way the trainer and its pre-flight put a method around a network."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...config import HKTConfig, TrainConfig
from .method import Method, MethodContext


def build_method(method_cls: type[Method], pair: Any, *, network: nn.Module, parent: nn.Module | None,
                 train: TrainConfig, hkt: HKTConfig, task: Any, options: dict[str, Any],
                 device: torch.device | None = None, alignment: Any = None) -> Method:
    """``method_cls`` around ``network`` (the child, or the parent for a ``trains_parent`` method) of
    ``pair`` (a :class:`~hkt_core.train.setup.resolved.ResolvedPair`): the one way the trainer and its
    pre-flight build a method. The example inputs are the pair's (one rule for every command)."""
    device = device if device is not None else torch.device("cpu")
    opts = {**dict(getattr(method_cls, "default_options", {}) or {}), **dict(options)}
    ctx = MethodContext(child=network, task=task, train=train, hkt=hkt, card=pair.card,
                        parent=parent if method_cls.needs_parent else None,
                        example_inputs=pair.examples_on(device), device=device, options=opts,
                        manager=pair.manager, alignment=alignment)
    return method_cls(ctx)
