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

#: Names served lazily so `import hkt_core` stays light (the engine imports on first use).
_LAZY = {
    "Alignment": "hkt_core.align",
    "BlockPair": "hkt_core.align",
    "align": "hkt_core.align",
    "genetic_attention": "hkt_core.etm",
    "Family": "hkt_core.family",
    "HKTOutput": "hkt_core.family",
    "HKTLoss": "hkt_core.family",
    "train": "hkt_core.train",
    "load_run": "hkt_core.train",
    "Run": "hkt_core.train",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hkt_core' has no attribute {name!r}")


__all__ = [*_LAZY,
    "Adapter", "AlignmentError", "CheckpointError", "ConfigError", "GenericAdapter", "HKTConfig",
    "HKTError", "PairCard", "RegistryError", "TraceError", "TrainConfig", "__version__",
    "adapter_for", "default_manager", "get_plugin_manager", "hookimpl", "lookup", "registry",
    "reset_default_manager",
]
