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
    from .text_data import text_files

    sets = [("token-recall", token_recall, {"contract_options": {"n_train": 64, "n_test": 32}}),
            ("text-files", text_files, {"task": "causal-lm",
                                        "contract_options": {"corpus": "python-stdlib", "block_size": 64}})]
    if _has("transformers"):
        from .text_classification import text_classification_files

        # labelled text from local files; its contract needs files and a tokenizer, so it has none
        sets.append(("text-classification-files", text_classification_files,
                     {"description": "labelled text from local CSV / JSON-lines / parquet files or a "
                                     "datasets.save_to_disk folder, through a local tokenizer folder"}))
    return sets


@registers()
def hkt_register_tasks():
    """The causal-LM task (next-token cross-entropy, perplexity, token accuracy) and its variants
    whose distillation loss is the reverse KL or the generalized JSD."""
    from .causal_lm import lm_tasks

    kd = {"causal-lm": "forward KL(teacher || student)", "causal-lm-reverse-kl": "reverse KL(student || teacher)",
          "causal-lm-jsd": "generalized JSD, beta 0.5"}
    return [(name, task, {"description": f"causal LM: next-token cross-entropy, perplexity, token accuracy; "
                                         f"kd: token-level {kd[name]} at T"}) for name, task in lm_tasks().items()]


@registers(task="causal-lm")
def hkt_register_metrics():
    from .causal_lm import Perplexity, TokenAccuracy

    return {"perplexity": Perplexity(), "token_accuracy": TokenAccuracy()}


@registers()
def hkt_register_export_formats():
    """``hkt export RUN --format hf``: a transformers save_pretrained folder (transformers installed);
    ``--format torchvision`` / ``timm``: a safetensors state dict and its constructor (library installed)."""
    formats = []
    if _has("transformers"):
        from .hf_export import export_hf

        formats.append(("hf", export_hf, {"description": "the child as a transformers save_pretrained folder "
                                                         "(config.json, model.safetensors, the tokenizer), checked "
                                                         "against the child"}))
    if _has("torchvision"):
        from .vision_export import export_torchvision

        formats.append(("torchvision", export_torchvision,
                        {"description": "the child as model.safetensors for torchvision.models.get_model(arch, "
                                        "num_classes=...).load_state_dict, its constructor in hkt_export.json, "
                                        "checked against the child"}))
    if _has("timm"):
        from .vision_export import export_timm

        formats.append(("timm", export_timm,
                        {"description": "the child as model.safetensors for timm.create_model(arch, pretrained=True, "
                                        "pretrained_cfg_overlay=dict(file=...)), its constructor in hkt_export.json "
                                        "(and timm's config.json), checked against the child"}))
    return formats


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
