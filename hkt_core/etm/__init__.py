"""Extract-Transfer-Mixture operators and Genetic Attention (DESIGN §2).

The built-in operators are registered by the core plugin through the same hooks a third-party
plugin uses (``hkt_register_transfers``, ``hkt_register_mixtures``, ``hkt_register_extractors``).
"""

from __future__ import annotations

from .crosskind import transfer_between
from .attention import TOKEN_LAYOUTS, genetic_attention, resolve_tokens
from .extractors import ConcatExtractor, IdentityExtractor, PoolExtractor
from .mixtures import (AddMixture, GateMixture, GeneticAttentionMixture, Mixture, MixOutput, MSEMixture, NoMixture,
                       split_mix)
from .transfers import Conv1x1Transfer, IdentityTransfer, LinearTransfer, Transfer, auto_transfer

__all__ = [
    "TOKEN_LAYOUTS", "AddMixture", "ConcatExtractor", "Conv1x1Transfer", "GateMixture",
    "GeneticAttentionMixture", "IdentityExtractor", "IdentityTransfer", "LinearTransfer", "MSEMixture", "MixOutput",
    "Mixture", "NoMixture", "PoolExtractor", "Transfer", "auto_transfer", "genetic_attention", "resolve_tokens", "split_mix",
    "transfer_between",
]
