"""The core plugin: registers the built-in operators, tasks, methods and pair cards.

It is discovered through the entry point ``core`` in group ``hkt``, exactly like a third-party
plugin, and uses the same hooks.
"""

from __future__ import annotations

from .markers import hookimpl


@hookimpl
def hkt_register_adapters(registry):
    from .adapters import GenericAdapter

    registry.add("generic", GenericAdapter(), description="any model no other adapter claims")


@hookimpl
def hkt_register_pairs(registry):
    from .pairs import register_cards_from, shipped_cards_folder

    register_cards_from(registry, shipped_cards_folder())


@hookimpl
def hkt_register_losses(registry):
    from .tasks import builtin_tasks

    for name, task in builtin_tasks().items():
        registry.add(name, task)


@hookimpl
def hkt_register_metrics(registry):
    from .metrics import BUILTIN_METRICS

    for name, cls in BUILTIN_METRICS.items():
        registry.add(name, cls())


@hookimpl
def hkt_register_methods(registry):
    from .train.methods import BUILTIN_METHODS

    for name, cls in BUILTIN_METHODS.items():
        registry.add(name, cls)


@hookimpl
def hkt_register_transfers(registry):
    from .etm import transfers as t

    registry.add("identity", t.IdentityTransfer)
    registry.add("conv1x1", t.Conv1x1Transfer)
    registry.add("linear", t.LinearTransfer)
    registry.add("auto", t.auto_transfer)


@hookimpl
def hkt_register_mixtures(registry):
    from .etm import mixtures as m

    registry.add("ga", m.GeneticAttentionMixture)
    registry.add("gate", m.GateMixture)
    registry.add("add", m.AddMixture)
    registry.add("mse", m.MSEMixture)
    registry.add("none", m.NoMixture)
    from .train.variants import LearnedGateMixture

    registry.add("ga-learned", LearnedGateMixture)


@hookimpl
def hkt_register_extractors(registry):
    from .etm import extractors as e

    registry.add("identity", e.IdentityExtractor)
    registry.add("concat", e.ConcatExtractor)
    registry.add("pool", e.PoolExtractor)
