"""Hugging Face transformers models named in a card by configuration, with no wrapper module.

Safe by construction: the options are allow-listed, the architecture is one of
:data:`ARCHITECTURES`, configuration values are plain numbers, strings and booleans, and weights
load only from local ``.safetensors`` files (a file, or a ``from_pretrained`` directory read with
``local_files_only=True``, ``use_safetensors=True`` and ``trust_remote_code=False``). Nothing
downloads and no pickle is ever read.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager
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
    "T5ForSequenceClassification", "MT5ForSequenceClassification", "BartForSequenceClassification",
    "ViTForImageClassification", "DeiTForImageClassification", "SwinForImageClassification",
    "ResNetForImageClassification", "ConvNextForImageClassification", "RegNetForImageClassification",
    "EfficientNetForImageClassification",
)
#: The causal language models a card may name: the prediction is the per-token logits (B, T, vocab)
#: (task ``causal-lm``). GPT-2's causal LM is ``GPT2LMHeadModel``.
CAUSAL_LM_ARCHITECTURES = (
    "GPT2LMHeadModel", "GPTNeoXForCausalLM", "OPTForCausalLM", "LlamaForCausalLM",
    "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "GemmaForCausalLM", "Gemma2ForCausalLM",
    "PhiForCausalLM", "Phi3ForCausalLM", "StableLmForCausalLM", "OlmoForCausalLM", "Olmo2ForCausalLM",
    "SmolLM3ForCausalLM",
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


@contextmanager
def _no_loading_bars():
    """transformers' progress bars off while a model loads from a local folder (a bar per load on
    every hkt command that builds the model), back as they were afterwards."""
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    if shown:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            hf_logging.enable_progress_bar()


def transformers_model(architecture: str = "", config: Mapping[str, Any] | None = None,
                       pretrained: str | None = None, weights: str | None = None, **others: Any) -> nn.Module:
    """A transformers model of ``architecture`` from ``config`` (or a local ``pretrained`` directory),
    with ``weights`` from a local safetensors file when given; ``use_cache`` is off (training)."""
    if others:
        _fail(f"unknown option(s) {', '.join(sorted(others))}; allowed: {', '.join(OPTIONS)}")
    if architecture not in ARCHITECTURES and architecture not in CAUSAL_LM_ARCHITECTURES:
        _fail(f"architecture {architecture!r} is not one of {', '.join(ARCHITECTURES + CAUSAL_LM_ARCHITECTURES)}")
    import transformers

    cls = getattr(transformers, architecture, None)
    if cls is None:
        _fail(f"architecture {architecture!r} is not in the installed transformers {transformers.__version__}; "
              f"upgrade transformers or pick another")
    fields = _config_fields(config or {})
    if pretrained is not None:
        directory = _local_safetensors(pretrained, "pretrained directory")
        if not directory.is_dir() or not any(directory.glob("*.safetensors")):
            _fail(f"pretrained {str(pretrained)!r} must be a local directory holding .safetensors weights")
        with _no_loading_bars():
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
    for module in model.modules():   # an encoder-decoder's stacks hold copies of the configuration
        if hasattr(getattr(module, "config", None), "use_cache"):
            module.config.use_cache = False
    if weights is not None or pretrained is not None:   # a parent with weights is used as it is
        model.hkt_pretrained = str(Path(str(weights if weights is not None else pretrained)).expanduser().resolve())
    return model


class TransformersAdapter(Adapter):
    """transformers models: ``logits`` is the prediction; text models read integer token ids
    (and an attention mask as their second input); an encoder-decoder's example rows end with its
    end-of-sequence token."""

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
        ids = torch.randint(1, max(vocab, 2), tuple(shapes[0]), generator=gen)
        eos = getattr(model.config, "eos_token_id", None)
        if getattr(model.config, "is_encoder_decoder", False) and isinstance(eos, int) and ids.dim() == 2 and vocab > 2:
            # An encoder-decoder classifier (T5, BART) reads the end-of-sequence token of each row,
            # and every row must hold as many: one, at the end.
            ids = torch.where(ids == eos, (eos + 1) % vocab or 1, ids)
            ids[:, -1] = eos
        inputs = [ids] + [torch.ones(tuple(shape), dtype=torch.long) for shape in shapes[1:]]
        return tuple(inputs)

    def prediction(self, output: Any) -> torch.Tensor:
        logits = output.get("logits") if isinstance(output, Mapping) else getattr(output, "logits", None)
        if isinstance(logits, torch.Tensor):
            return logits
        return super().prediction(output)


__all__ = ["ARCHITECTURES", "CAUSAL_LM_ARCHITECTURES", "CONTRACT_OPTIONS", "OPTIONS", "TEXT_INPUTS", "TransformersAdapter", "positional_class",
           "transformers_model"]
