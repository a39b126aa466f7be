"""hkt: Hereditary Knowledge Transfer.

A frozen, larger *parent* network hands task-relevant features to a smaller *child* while the
child trains (Extract-Transfer-Mixture operators, Genetic Attention); the child is deployed alone.
"""

from __future__ import annotations

__version__ = "0.1.0"

import importlib as _importlib
import importlib.abc as _abc
import importlib.util as _util
import sys as _sys
import warnings as _warnings

#: Modules that moved in 0.2 (old path -> new path). The old paths keep importing, with a
#: DeprecationWarning, for one release; see CHANGELOG.md.
MOVED_MODULES = {
    "hkt_core.kinds": "hkt_core.trace.kinds",
    "hkt_core.fold": "hkt_core.lockstep.fold",
    "hkt_core.preflight": "hkt_core.train.setup.preflight",
    "hkt_core.card_checks": "hkt_core.train.setup.checks",
    "hkt_core.pairs_new": "hkt_core.pairs.scaffold",
    "hkt_core.user_cards": "hkt_core.plugins.user",
    "hkt_core.hookspecs": "hkt_core.plugins.hookspecs",
    "hkt_core.registry": "hkt_core.plugins.registry",
    "hkt_core.registration": "hkt_core.plugins.registration",
    "hkt_core.markers": "hkt_core.plugins.markers",
    "hkt_core.metrics": "hkt_core.tasks.metrics",
    "hkt_core.losses": "hkt_core.tasks.losses",
    # train/ in layers: folders <- methods <- loop <- setup
    "hkt_core.train.method": "hkt_core.train.methods.method",
    "hkt_core.train.aligned": "hkt_core.train.methods.aligned",
    "hkt_core.train.variants": "hkt_core.train.methods.variants",
    "hkt_core.train.run": "hkt_core.train.folders.run",
    "hkt_core.train.schemas": "hkt_core.train.folders.schemas",
    "hkt_core.train.lock": "hkt_core.train.folders.lock",
    "hkt_core.train.integrity": "hkt_core.train.folders.integrity",
    "hkt_core.train.checkpoint": "hkt_core.train.folders.checkpoint",
    "hkt_core.train.identity": "hkt_core.train.folders.identity",
    "hkt_core.train.tracking": "hkt_core.train.folders.tracking",
    "hkt_core.train.plots": "hkt_core.train.folders.plots",
    "hkt_core.train.parents": "hkt_core.train.folders.parents",
    "hkt_core.train.prepare": "hkt_core.train.folders.prepare",
    "hkt_core.train.export": "hkt_core.train.folders.export",
    "hkt_core.train.trainer": "hkt_core.train.setup.training",
    "hkt_core.train.optim": "hkt_core.train.loop.optim",
    "hkt_core.train.distributed": "hkt_core.train.loop.distributed",
    "hkt_core.train.evaluation": "hkt_core.train.loop.evaluation",
    "hkt_core.train.acceleration": "hkt_core.train.loop.acceleration",
    "hkt_core.train.compiling": "hkt_core.train.loop.compiling",
    "hkt_core.train.precision": "hkt_core.train.loop.precision",
    "hkt_core.train.memory_format": "hkt_core.train.loop.memory_format",
    "hkt_core.train.data": "hkt_core.train.loop.data",
    "hkt_core.train.api": "hkt_core.train.setup.api",
    "hkt_core.train.resolved": "hkt_core.train.setup.resolved",
    "hkt_core.train.preflight": "hkt_core.train.setup.preflight",
    "hkt_core.train.checks": "hkt_core.train.setup.checks",
    "hkt_core.train.reuse": "hkt_core.train.setup.reuse",
    "hkt_core.train.compare": "hkt_core.train.setup.compare",
}


class _MovedModuleFinder(_abc.MetaPathFinder, _abc.Loader):
    """Serves a moved module under its old name: the very module object of the new path."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname in MOVED_MODULES:
            return _util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        new = MOVED_MODULES[spec.name]
        _warnings.warn(f"{spec.name} moved to {new}; the old path goes in the next release",
                       DeprecationWarning, stacklevel=2)
        return _importlib.import_module(new)

    def exec_module(self, module):
        pass  # already executed under its new name


if not any(isinstance(f, _MovedModuleFinder) for f in _sys.meta_path):
    _sys.meta_path.append(_MovedModuleFinder())


from .adapters import Adapter, GenericAdapter, adapter_for
from .config import HKTConfig, TrainConfig
from .errors import AlignmentError, CheckpointError, ConfigError, HKTError, RegistryError, TraceError
from .pairs.card import PairCard
from .plugins.host import default_manager, get_plugin_manager, lookup, registry, reset_default_manager
from .plugins.markers import hookimpl

# The functions `align` and `train` share their names with the sub-packages that define them.
# Importing a sub-package binds its name on this package, so both are imported here, after every
# other name exists, and the functions are bound last: `hkt_core.align(...)` and
# `hkt_core.train(...)` are the functions however the sub-packages were reached.
from .align import Alignment, BlockPair, align
from .train import Run, load_run, train

#: Names served lazily (the engine's modules import on first use).
_LAZY = {
    "genetic_attention": "hkt_core.etm",
    "transfer_between": "hkt_core.etm",
    # named intermediate values of a network as a module (the values align names)
    "features": "hkt_core.lockstep.features",
    "Features": "hkt_core.lockstep.features",
    "Family": "hkt_core.family",
    "HKTOutput": "hkt_core.family",
    "HKTLoss": "hkt_core.family",
    "check_pair": "hkt_core.train.setup.preflight",
    "PairReport": "hkt_core.train.setup.preflight",
    "PairCheckError": "hkt_core.train.setup.preflight",
    # the extension API: what plugin authors subclass, return or receive
    "Task": "hkt_core.tasks.task",
    "Metric": "hkt_core.tasks.metrics",
    "Mixture": "hkt_core.etm.mixtures",
    "Transfer": "hkt_core.etm.transfers",
    "Method": "hkt_core.train.methods.method",
    "MethodContext": "hkt_core.train.methods.method",
    "StepOutput": "hkt_core.train.methods.method",
    # a method in one file: registered where it is defined, its options a typed, frozen record
    "method": "hkt_core.train.methods.registry",
    "defined_methods": "hkt_core.train.methods.registry",
    "option": "hkt_core.train.methods.method",
    "number_option": "hkt_core.train.methods.method",
    # the parent's and the child's values at aligned points, their kinds and the transfers between them
    "AlignedFeatures": "hkt_core.train.methods.aligned",
    "AlignedPoint": "hkt_core.train.methods.aligned",
    "PointValues": "hkt_core.train.methods.aligned",
    "on_positions": "hkt_core.train.methods.aligned",
    "DatasetBundle": "hkt_core.data",
    "Registrar": "hkt_core.plugins.registry",
    "registers": "hkt_core.plugins.registration",
    "TrainingDiverged": "hkt_core.errors",
    "DataError": "hkt_core.errors",
    "closest": "hkt_core.errors",
    "example_inputs_for": "hkt_core.adapters",
    # what plugins build on: models, cards, files, settings
    "build_model": "hkt_core.models",
    "count_parameters": "hkt_core.models",
    "atomic_write": "hkt_core.io",
    "atomic_write_text": "hkt_core.io",
    "hkt_home": "hkt_core.pairs.card",
    "register_cards_from": "hkt_core.pairs.card",
    "shipped_cards": "hkt_core.plugins.registration",
    "parse_value": "hkt_core.config",
    "resolve_manager": "hkt_core.plugins.host",
    "PluginManager": "hkt_core.plugins.host",
    # one resolved pair (the card made into models, adapters, example inputs and data, once)
    "ResolvedPair": "hkt_core.train.setup.resolved",
    "resolve_pair": "hkt_core.train.setup.resolved",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(_importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hkt_core' has no attribute {name!r}")


__all__ = [*_LAZY, "Alignment", "BlockPair", "Run", "align", "load_run", "train",
    "Adapter", "AlignmentError", "CheckpointError", "ConfigError", "GenericAdapter", "HKTConfig",
    "HKTError", "PairCard", "RegistryError", "TraceError", "TrainConfig", "__version__",
    "adapter_for", "default_manager", "get_plugin_manager", "hookimpl", "lookup", "registry",
    "reset_default_manager",
]
