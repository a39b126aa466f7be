"""The ``zoo`` plugin (entry point ``zoo = "hkt_zoo.plugin"`` in group ``hkt``).

Each source is registered only when its library is installed (an optional dependency).
"""

from __future__ import annotations

import importlib.util

from hkt_core import hookimpl, registers, shipped_cards


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@registers(task="classification")
def hkt_register_models():
    models = []
    if _has("transformers"):
        from .transformers_source import CONTRACT_OPTIONS, transformers_model

        # The contract checks build a tiny BERT from a configuration and run it on token ids.
        models.append(("transformers", transformers_model,
                       {"contract_options": CONTRACT_OPTIONS, "input_shapes": [[2, 8], [2, 8]]}))
    if _has("torchvision"):
        from .vision_sources import TORCHVISION_CONTRACT, torchvision_model

        models.append(("torchvision", torchvision_model,
                       {"contract_options": TORCHVISION_CONTRACT, "input_shapes": [[2, 3, 32, 32]]}))
    if _has("timm"):
        from .vision_sources import TIMM_CONTRACT, timm_model

        models.append(("timm", timm_model, {"contract_options": TIMM_CONTRACT, "input_shapes": [[2, 3, 32, 32]]}))
    return models


@registers(task="classification")
def hkt_register_datasets():
    from .data import token_recall

    return [("token-recall", token_recall, {"contract_options": {"n_train": 64, "n_test": 32}})]


@hookimpl
def hkt_register_pairs(registry):
    """The pair cards shipped in hkt_zoo/pairs: transformers pairs, registered when transformers is installed."""
    if _has("transformers"):
        _shipped(registry)


_shipped = shipped_cards("hkt_zoo")


@registers()
def hkt_register_adapters():
    if not _has("transformers"):
        return {}
    from .transformers_source import TransformersAdapter

    return {"transformers": TransformersAdapter()}
