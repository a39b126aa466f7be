"""The hooks: hkt calls each ``hkt_register_<kind>(registry)`` once and keeps what it adds."""

from __future__ import annotations

from importlib import resources

import hkt_core
from hkt_core import register_cards_from


@hkt_core.hookimpl
def hkt_register_datasets(registry):
    from .data import wine

    registry.add("wine", wine, task="classification")


@hkt_core.hookimpl
def hkt_register_models(registry):
    from .models import wine_mlp, wine_transformer

    registry.add("wine_transformer", wine_transformer, input_shapes=[[1, 13]])
    registry.add("wine_mlp", wine_mlp, input_shapes=[[1, 13]])


@hkt_core.hookimpl
def hkt_register_pairs(registry):
    register_cards_from(registry, resources.files("hkt_tabular") / "pairs")
