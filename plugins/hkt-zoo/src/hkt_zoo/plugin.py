"""The ``zoo`` plugin (entry point ``zoo = "hkt_zoo.plugin"`` in group ``hkt``).

Each source is registered only when its library is installed (an optional dependency).
"""

from __future__ import annotations

import importlib.util

from hkt_core import registers


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@registers(task="classification")
def hkt_register_models():
    if not _has("transformers"):
        return {}
    from .transformers_source import CONTRACT_OPTIONS, transformers_model

    # The contract checks build a tiny BERT from a configuration and run it on token ids.
    return [("transformers", transformers_model,
             {"contract_options": CONTRACT_OPTIONS, "input_shapes": [[2, 8], [2, 8]]})]


@registers(task="classification")
def hkt_register_datasets():
    from .data import token_recall

    return [("token-recall", token_recall, {"contract_options": {"n_train": 64, "n_test": 32}})]


@registers()
def hkt_register_adapters():
    if not _has("transformers"):
        return {}
    from .transformers_source import TransformersAdapter

    return {"transformers": TransformersAdapter()}
