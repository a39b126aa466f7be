"""hkt: Hereditary Knowledge Transfer.

A frozen, larger *parent* network hands task-relevant features to a smaller *child* while the
child trains (Extract-Transfer-Mixture operators, Genetic Attention); the child is deployed alone.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .adapters import Adapter, GenericAdapter, adapter_for
from .config import HKTConfig, TrainConfig
from .errors import AlignmentError, CheckpointError, ConfigError, HKTError, RegistryError, TraceError
from .markers import hookimpl
from .pairs import PairCard
from .plugins import default_manager, get_plugin_manager, lookup, registry, reset_default_manager

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
    "check_pair": "hkt_core.preflight",
    "PairReport": "hkt_core.preflight",
    "PairCheckError": "hkt_core.preflight",
    # the extension API: what plugin authors subclass, return or receive
    "Task": "hkt_core.tasks",
    "Metric": "hkt_core.metrics",
    "Mixture": "hkt_core.etm.mixtures",
    "Transfer": "hkt_core.etm.transfers",
    "Method": "hkt_core.train.method",
    "MethodContext": "hkt_core.train.method",
    "StepOutput": "hkt_core.train.method",
    "DatasetBundle": "hkt_core.data",
    "Registrar": "hkt_core.registry",
    "registers": "hkt_core.registration",
    "TrainingDiverged": "hkt_core.errors",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hkt_core' has no attribute {name!r}")


__all__ = [*_LAZY, "Alignment", "BlockPair", "Run", "align", "load_run", "train",
    "Adapter", "AlignmentError", "CheckpointError", "ConfigError", "GenericAdapter", "HKTConfig",
    "HKTError", "PairCard", "RegistryError", "TraceError", "TrainConfig", "__version__",
    "adapter_for", "default_manager", "get_plugin_manager", "hookimpl", "lookup", "registry",
    "reset_default_manager",
]
