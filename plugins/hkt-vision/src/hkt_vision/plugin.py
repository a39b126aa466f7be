"""The ``vision`` plugin (entry point ``vision = "hkt_vision.plugin"`` in group ``hkt``).

It registers through the same hooks any third-party plugin uses: models, adapters, data sets,
pair cards and the ``hkt vision`` command.
"""

from __future__ import annotations

from hkt_core.markers import hookimpl


@hookimpl
def hkt_register_models(registry):
    from .models import MODELS

    for name, factory in MODELS.items():
        registry.add(name, factory, task="classification")


@hookimpl
def hkt_register_adapters(registry):
    from .adapters import ADAPTERS

    for name, adapter in ADAPTERS.items():
        registry.add(name, adapter)


@hookimpl
def hkt_register_datasets(registry):
    from .data import DATASETS

    small = {"mnist1d": {"num_samples": 200, "cache": False}}  # the contract checks run on a small set
    for name, factory in DATASETS.items():
        registry.add(name, factory, task="classification", contract_options=small.get(name))


@hookimpl
def hkt_register_pairs(registry):
    from importlib import resources

    from hkt_core.pairs import register_cards_from

    register_cards_from(registry, resources.files("hkt_vision") / "pairs")


@hookimpl
def hkt_register_commands(registry):
    from .cli import configure

    registry.add("vision", configure, description="classification tools: confusion matrices of trained runs")
