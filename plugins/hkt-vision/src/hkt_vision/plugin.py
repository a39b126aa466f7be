"""The ``vision`` plugin (entry point ``vision = "hkt_vision.plugin"`` in group ``hkt``).

It registers through the same hooks any third-party plugin uses: models, adapters, data sets,
pair cards and the ``hkt vision`` command.
"""

from __future__ import annotations

from hkt_core import registers
from hkt_core import shipped_cards
from hkt_core import hookimpl


@registers(task="classification")
def hkt_register_models():
    from .models import MODELS

    return MODELS


@registers()
def hkt_register_adapters():
    from .adapters import ADAPTERS

    return ADAPTERS


@registers(task="classification")
def hkt_register_datasets():
    from .data import DATASETS

    small = {"mnist1d": {"num_samples": 200, "cache": False}}  # the contract checks run on a small set
    return [(name, factory, {"contract_options": small.get(name)}) for name, factory in DATASETS.items()]


hkt_register_pairs = shipped_cards("hkt_vision")


@hookimpl
def hkt_register_commands(registry):
    from .cli import configure

    registry.add("vision", configure, description="classification tools: confusion matrices of trained runs")
