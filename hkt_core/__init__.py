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

__all__ = [
    "Adapter", "AlignmentError", "CheckpointError", "ConfigError", "GenericAdapter", "HKTConfig",
    "HKTError", "PairCard", "RegistryError", "TraceError", "TrainConfig", "__version__",
    "adapter_for", "default_manager", "get_plugin_manager", "hookimpl", "lookup", "registry",
    "reset_default_manager",
]
