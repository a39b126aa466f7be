"""The core plugin: registers the built-in operators, tasks, methods and pair cards.

It is discovered through the entry point ``core`` in group ``hkt``, exactly like a third-party
plugin, and uses the same hooks.
"""

from __future__ import annotations

from .plugins.markers import hookimpl
from .plugins.registration import registers


@hookimpl
def hkt_register_adapters(registry):
    from .adapters import GenericAdapter

    registry.add("generic", GenericAdapter(), description="any model no other adapter claims")


@hookimpl
def hkt_register_pairs(registry):
    from .pairs.card import register_cards_from, shipped_cards_folder

    register_cards_from(registry, shipped_cards_folder())


@registers()
def hkt_register_tasks():
    from .tasks.task import builtin_tasks

    return builtin_tasks()


@registers()
def hkt_register_metrics():
    from .tasks.metrics import BUILTIN_METRICS

    return {name: cls() for name, cls in BUILTIN_METRICS.items()}


@registers()
def hkt_register_methods():
    from .train.methods import BUILTIN_METHODS

    return BUILTIN_METHODS


@hookimpl
def hkt_register_transfers(registry):
    from .etm import transfers as t

    registry.add("identity", t.IdentityTransfer)
    registry.add("conv1x1", t.Conv1x1Transfer)
    registry.add("linear", t.LinearTransfer)
    registry.add("auto", t.auto_transfer)
    from .etm.crosskind import CROSS_KIND_TRANSFERS

    for name, cls in CROSS_KIND_TRANSFERS.items():  # chosen by the Family when the two kinds differ
        registry.add(name, cls, description=(cls.__doc__ or "").strip().splitlines()[0])


@registers()
def hkt_register_mixtures():
    from .etm import mixtures as m

    return {"ga": m.GeneticAttentionMixture, "gate": m.GateMixture, "add": m.AddMixture, "mse": m.MSEMixture,
            "none": m.NoMixture, "ga-learned": m.LearnedGateMixture}


@registers()
def hkt_register_extractors():
    from .etm import extractors as e

    return {"identity": e.IdentityExtractor, "concat": e.ConcatExtractor, "pool": e.PoolExtractor}
