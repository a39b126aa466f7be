"""Hugging Face transformers models named in a card by configuration, with no wrapper module.

Safe by construction: the options are allow-listed, the architecture is one of
:data:`ARCHITECTURES`, configuration values are plain numbers, strings and booleans, and weights
load only from local ``.safetensors`` files (a file, or a ``from_pretrained`` directory read with
``local_files_only=True``, ``use_safetensors=True`` and ``trust_remote_code=False``). Nothing
downloads and no pickle is ever read.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hkt_core import Adapter
from hkt_core import ConfigError

#: The transformers classes a card may name (classification heads: one prediction per input).
ARCHITECTURES = (
    "BertForSequenceClassification", "DistilBertForSequenceClassification",
    "RobertaForSequenceClassification", "XLMRobertaForSequenceClassification", "AlbertForSequenceClassification",
    "ElectraForSequenceClassification", "DebertaV2ForSequenceClassification", "ModernBertForSequenceClassification",
    "GPT2ForSequenceClassification", "LlamaForSequenceClassification", "MistralForSequenceClassification",
    "Qwen2ForSequenceClassification",
    "ViTForImageClassification", "DeiTForImageClassification", "SwinForImageClassification",
    "ResNetForImageClassification", "ConvNextForImageClassification", "RegNetForImageClassification",
    "EfficientNetForImageClassification",
)
#: A tiny model the registry's contract checks build (nothing downloads).
CONTRACT_OPTIONS = {"architecture": "BertForSequenceClassification",
                    "config": {"vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 2,
                               "num_attention_heads": 2, "intermediate_size": 32,
                               "max_position_embeddings": 32, "num_labels": 3}}
#: The options of the ``transformers`` model source.
OPTIONS = ("architecture", "config", "pretrained", "weights")
#: What hkt feeds a text model, positionally and in this order: a data set's input tensors (a mapping
#: sample's keys are put in this order by ``hkt_core.data.INPUT_ORDER``). A model whose ``forward``
#: takes other parameters between them (GPT-2's ``cache`` after ``input_ids``) binds them by name.
TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@cache
def positional_class(cls: type) -> type:
    """``cls``, or a subclass of the same name whose ``forward`` takes :data:`TEXT_INPUTS` as its
    first positional parameters (those ``cls.forward`` accepts), passing them on by name. Modules,
    parameters and state-dict keys are ``cls``'s own; only the order of the inputs differs."""
    params = list(inspect.signature(cls.forward).parameters)[1:]
    taken = tuple(name for name in TEXT_INPUTS if name in params)
    if tuple(params[:len(taken)]) == taken:
        return cls

    def forward(self, *inputs: Any, **kwargs: Any) -> Any:
        if len(inputs) > len(taken):
            raise TypeError(f"{cls.__name__} takes at most {len(taken)} positional inputs ({', '.join(taken)}), "
                            f"got {len(inputs)}")
        named = {k: v for k, v in zip(taken, inputs)}
        return cls.forward(self, **named, **kwargs)

    forward.__signature__ = inspect.Signature(   # type: ignore[attr-defined]
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        + [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None) for n in taken]
        + [inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)])
    forward.__doc__ = cls.forward.__doc__
    return type(cls.__name__, (cls,), {"forward": forward, "__module__": cls.__module__,
                                       "__qualname__": cls.__qualname__, "hkt_text_inputs": taken})


def _fail(message: str) -> None:
    raise ConfigError(f"model 'transformers': {message}")


def _config_fields(config: Any) -> dict[str, Any]:
    if not isinstance(config, Mapping):
        _fail(f"config must be a table of configuration fields, got {type(config).__name__}")
    for key, value in config.items():
        plain = isinstance(value, (bool, int, float, str)) or (
            isinstance(value, (list, tuple)) and all(isinstance(v, (bool, int, float, str)) for v in value))
        if not plain:
            _fail(f"config field {key!r} must be a number, string, boolean or a list of them, "
                  f"got {type(value).__name__}")
        if key in ("trust_remote_code", "auto_map"):
            _fail(f"config field {key!r} is not allowed (remote code never runs)")
    return dict(config)


def _local_safetensors(path: Any, what: str) -> Path:
    p = Path(str(path)).expanduser()
    if not p.exists():
        _fail(f"{what} {str(path)!r} does not exist (weights load only from local files)")
    return p


def transformers_model(architecture: str = "", config: Mapping[str, Any] | None = None,
                       pretrained: str | None = None, weights: str | None = None, **others: Any) -> nn.Module:
    """A transformers model of ``architecture`` from ``config`` (or a local ``pretrained`` directory),
    with ``weights`` from a local safetensors file when given; ``use_cache`` is off (training)."""
    if others:
        _fail(f"unknown option(s) {', '.join(sorted(others))}; allowed: {', '.join(OPTIONS)}")
    if architecture not in ARCHITECTURES:
        _fail(f"architecture {architecture!r} is not one of {', '.join(ARCHITECTURES)}")
    import transformers

    cls = getattr(transformers, architecture)
    fields = _config_fields(config or {})
    if pretrained is not None:
        directory = _local_safetensors(pretrained, "pretrained directory")
        if not directory.is_dir() or not any(directory.glob("*.safetensors")):
            _fail(f"pretrained {str(pretrained)!r} must be a local directory holding .safetensors weights")
        model = cls.from_pretrained(directory, local_files_only=True, use_safetensors=True,
                                    trust_remote_code=False, **fields)
    else:
        model = cls(cls.config_class(**fields))
    if weights is not None:
        file = _local_safetensors(weights, "weights file")
        if file.suffix != ".safetensors":
            _fail(f"weights must be a .safetensors file, got {file.name!r} (pickled checkpoints are never read)")
        from safetensors.torch import load_file

        missing, unexpected = model.load_state_dict(load_file(str(file)), strict=False)
        if missing or unexpected:
            _fail(f"weights {file.name!r} do not fit {architecture}: missing {list(missing)[:3]}, "
                  f"unexpected {list(unexpected)[:3]}")
    if getattr(model, "main_input_name", None) == "input_ids":
        model.__class__ = positional_class(cls)   # token ids, then the mask, positionally (GPT-2 included)
    if hasattr(model.config, "use_cache"):
        model.config.use_cache = False
    if weights is not None or pretrained is not None:   # a parent with weights is used as it is
        model.hkt_pretrained = str(Path(str(weights if weights is not None else pretrained)).expanduser().resolve())
    return model


class TransformersAdapter(Adapter):
    """transformers models: ``logits`` is the prediction; text models read integer token ids
    (and an attention mask as their second input)."""

    def handles(self, model: nn.Module) -> bool:
        try:
            from transformers import PreTrainedModel
        except ImportError:
            return False
        return isinstance(model, PreTrainedModel)

    def example_inputs(self, model: nn.Module, shapes: Sequence[Sequence[int]]) -> tuple[torch.Tensor, ...]:
        if getattr(model, "main_input_name", None) != "input_ids":
            return super().example_inputs(model, shapes)
        gen = torch.Generator().manual_seed(0)
        vocab = int(getattr(model.config, "vocab_size", 2))
        inputs = [torch.randint(1, max(vocab, 2), tuple(shapes[0]), generator=gen)]
        inputs += [torch.ones(tuple(shape), dtype=torch.long) for shape in shapes[1:]]
        return tuple(inputs)

    def prediction(self, output: Any) -> torch.Tensor:
        logits = output.get("logits") if isinstance(output, Mapping) else getattr(output, "logits", None)
        if isinstance(logits, torch.Tensor):
            return logits
        return super().prediction(output)


__all__ = ["ARCHITECTURES", "CONTRACT_OPTIONS", "OPTIONS", "TEXT_INPUTS", "TransformersAdapter", "positional_class",
           "transformers_model"]
